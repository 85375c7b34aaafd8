"""Deprecated alias of :mod:`ann2snn.zoo.mnist_cnn` (the seed MNIST CNN):
importing it gives that module itself and warns; the alias goes in the next release."""

from converter.zoo import alias_module

alias_module(__name__, "ann2snn.zoo.mnist_cnn")
