import math

import numpy as np
import pytest
import torch
from scipy import stats

from repro.generative_diffusion import distances as dist


def test_wasserstein_1d_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=300), rng.normal(1.0, 2.0, size=300)
    assert dist.wasserstein_1d(x, y) == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12)
    # unequal sizes: quantile grid, close to scipy's exact value
    z = rng.normal(size=500)
    assert dist.wasserstein_1d(x, z) == pytest.approx(stats.wasserstein_distance(x, z), abs=5e-3)


def test_assignment_and_sliced_agree_with_1d_in_one_dimension():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 1)), rng.exponential(size=(200, 1))
    exact = dist.wasserstein_1d(x, y, p=2)
    assert dist.wasserstein_assignment(x, y, p=2) == pytest.approx(exact, rel=1e-10)
    assert dist.sliced_wasserstein(x, y, projections=4, p=2) == pytest.approx(exact, rel=1e-10)


def test_gaussian_w2_closed_forms():
    assert dist.gaussian_w2([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(math.sqrt(1 + 1))
    # commuting covariances: sum of squared differences of the square roots
    w = dist.gaussian_w2([0, 0], np.diag([4.0, 9.0]), [0, 0], np.diag([1.0, 1.0]))
    assert w == pytest.approx(math.sqrt(1 + 4))
    a = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert dist.gaussian_w2([1, 2], a, [1, 2], a) == pytest.approx(0.0, abs=1e-7)


def test_gaussian_kl_matches_torch():
    m1, m2 = torch.tensor([0.0, 1.0]), torch.tensor([1.0, -1.0])
    s1 = torch.tensor([[2.0, 0.3], [0.3, 1.0]])
    s2 = torch.tensor([[1.0, -0.2], [-0.2, 0.5]])
    mvn = torch.distributions.MultivariateNormal
    expected = torch.distributions.kl_divergence(mvn(m1, s1), mvn(m2, s2)).item()
    assert dist.gaussian_kl(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-6)


def test_mmd2_matches_the_gaussian_closed_form():
    # x ~ N(0, 1), y ~ N(mu, 1), kernel bandwidth h: E k = h / sqrt(h^2 + 2) exp(-d^2 / (2 (h^2 + 2)))
    h, mu = 1.0, 1.0
    c = h / math.sqrt(h * h + 2)
    expected = 2 * c - 2 * c * math.exp(-mu * mu / (2 * (h * h + 2)))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 1, generator=g, dtype=torch.float64)
    y = mu + torch.randn(3000, 1, generator=g, dtype=torch.float64)
    # the estimate's standard error at n = 3000 is about 0.01
    assert dist.mmd2(x, y, bandwidth=h) == pytest.approx(expected, abs=0.03)
    same = torch.randn(3000, 1, generator=g, dtype=torch.float64)
    assert abs(dist.mmd2(x, same, bandwidth=h)) < 0.005


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        dist.wasserstein_assignment(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="dimensions"):
        dist.mmd2(np.zeros((3, 2)), np.zeros((3, 1)))
