import numpy as np
import pytest
import torch

from converter.statistics import RELATIVE_ERROR, ActivationStats


def _relu_sample(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, generator=g) * 2.0 + 0.3) ** 1.5


def test_percentile_matches_numpy_beyond_torch_quantile_limit():
    x = _relu_sample(18_000_000, 0)  # > 2**24 values: torch.quantile refuses this many
    stats = ActivationStats.empty(track_histogram=True)
    for chunk in x.split(1_000_000):
        stats.update(chunk)
    values = x.double().numpy()
    assert RELATIVE_ERROR < 1e-4
    for p in (50.0, 99.0, 99.9, 99.99):
        expected = np.percentile(values, p)
        assert abs(stats.percentile(p) - expected) <= RELATIVE_ERROR * expected + 1e-12, p


def test_max_and_100_percent_are_exact():
    x = _relu_sample(100_000, 1)
    stats = ActivationStats.empty(track_histogram=True)
    stats.update(x)
    assert stats.max == x.max().item() == stats.percentile(100)


def test_merge_of_halves_equals_one_pass():
    x = _relu_sample(200_000, 2)
    whole, a, b = (ActivationStats.empty(True) for _ in range(3))
    whole.update(x)
    a.update(x[:70_000])
    b.update(x[70_000:])
    merged = a.merge(b)
    assert (merged.count, merged.zeros, merged.max) == (whole.count, whole.zeros, whole.max)
    assert torch.equal(merged.histogram, whole.histogram)
    assert merged.percentile(99.9) == whole.percentile(99.9)


def test_percentile_errors():
    with pytest.raises(ValueError, match="no activations"):
        ActivationStats.empty(True).percentile(50)
    stats = ActivationStats.empty(False)
    stats.update(torch.ones(3))
    with pytest.raises(ValueError, match="histogram"):
        stats.percentile(99.9)
    with pytest.raises(ValueError, match="101"):
        stats.percentile(101)
