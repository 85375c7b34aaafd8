"""Sample models and the embedded default data shipped inside the package.

- :mod:`ann2snn.zoo.mnist` reads MNIST's IDX files (gzip, plain, or split ``.part*`` files)
  and loads the embedded default (10,000 test images, a calibration subset of the training set).
- :mod:`ann2snn.zoo.mnist_cnn` defines the seed CNN and loads its shipped weights.
- :mod:`ann2snn.zoo.mnist_resnet` defines the small residual network of the residual example
  and loads its shipped weights.
- :mod:`ann2snn.zoo.cifar10` defines the CIFAR-10 ResNet-20 and VGG and loads their shipped
  weights (the CIFAR-10 images themselves are not shipped).
"""

from ann2snn.zoo.cifar10 import VGG, ResNet20, load_cifar10_resnet20, load_cifar10_vgg
from ann2snn.zoo.mnist import MnistArrays, load_embedded, read_idx, read_mnist_folder
from ann2snn.zoo.mnist_cnn import MnistCNN, load_mnist_cnn
from ann2snn.zoo.mnist_resnet import MnistResNet, load_mnist_resnet

__all__ = [
    "MnistArrays",
    "MnistCNN",
    "MnistResNet",
    "ResNet20",
    "VGG",
    "load_cifar10_resnet20",
    "load_cifar10_vgg",
    "load_embedded",
    "load_mnist_cnn",
    "load_mnist_resnet",
    "read_idx",
    "read_mnist_folder",
]
