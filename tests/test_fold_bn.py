import pytest
import torch
from torch import nn

from converter import fold_batchnorm, fold_bn_weights, trace
from tests.nets import randomize_bn


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_bn2d_folds_within_1e5(bias):
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 6, 3, bias=bias), nn.BatchNorm2d(6, eps=1e-3)))
    folded = fold_batchnorm(trace(model))
    x = torch.randn(4, 3, 9, 9)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(folded(x), model(x), atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_bn1d_folds_within_1e5(bias):
    model = randomize_bn(nn.Sequential(nn.Linear(5, 7, bias=bias), nn.BatchNorm1d(7)))
    folded = fold_batchnorm(trace(model))
    x = torch.randn(8, 5)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())
    assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_fold_formula_by_hand():
    w, b = fold_bn_weights(
        torch.tensor([[2.0]]),
        torch.tensor([1.0]),
        torch.tensor([3.0]),
        torch.tensor([3.0]),
        1.0,
        torch.tensor([4.0]),
        torch.tensor([0.5]),
    )
    # sigma = sqrt(3 + 1) = 2: W' = 2 * 4 / 2 = 4, b' = 4 * (1 - 3) / 2 + 0.5 = -3.5
    assert w.item() == 4.0 and b.item() == -3.5


def test_fold_leaves_original_untouched():
    model = randomize_bn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    before = model[0].weight.clone()
    fold_batchnorm(trace(model))
    assert torch.equal(model[0].weight, before)


def test_bn_without_preceding_layer_is_refused_by_name():
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="BatchNorm '1'"):
        fold_batchnorm(trace(model))


def test_shape_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match=r"\(5,\).*3 output channels"):
        fold_bn_weights(torch.ones(3, 2), None, torch.zeros(5), torch.ones(5), 1e-5, None, None)


@pytest.mark.parametrize("bias", [True, False])
def test_conv1d_bn1d_folds_within_1e5(bias):
    model = randomize_bn(nn.Sequential(nn.Conv1d(3, 5, 3, bias=bias), nn.BatchNorm1d(5), nn.ReLU()))
    folded = fold_batchnorm(trace(model))
    x = torch.randn(4, 3, 11)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert torch.allclose(folded(x), model(x), atol=1e-5)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 4)), (6,)),
        (lambda: nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)), (3, 7, 7)),
        (lambda: nn.Sequential(nn.BatchNorm1d(3), nn.Conv1d(3, 4, 2, bias=False)), (3, 9)),
    ],
)
def test_bn_without_preceding_layer_folds_into_the_next_within_1e5(make, shape):
    model = randomize_bn(make())
    folded = fold_batchnorm(trace(model))
    x = torch.randn(5, *shape)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_bn_before_padded_conv_is_refused_by_name():
    model = randomize_bn(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3, padding=1)))
    with pytest.raises(ValueError, match=r"BatchNorm '1' \(BatchNorm2d\) cannot be folded"):
        fold_batchnorm(trace(model))


def test_fold_into_next_formula_by_hand():
    from converter import fold_bn_into_next

    # a = 4 / sqrt(3 + 1) = 2, c = 0.5 - 3 * 2 = -5.5: W' = [[2 * 2, 1 * 2]], b' = 1 + 2 * -5.5 + 1 * -5.5
    w, b = fold_bn_into_next(
        torch.tensor([[2.0, 1.0]]),
        torch.tensor([1.0]),
        torch.tensor([3.0, 3.0]),
        torch.tensor([3.0, 3.0]),
        1.0,
        torch.tensor([4.0, 4.0]),
        torch.tensor([0.5, 0.5]),
    )
    assert w.tolist() == [[4.0, 2.0]] and b.tolist() == [-15.5]
