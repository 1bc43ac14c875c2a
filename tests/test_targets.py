import math

import pytest
import torch
from scipy import integrate, stats

from repro.normalizing_flows import potentials
from repro.normalizing_flows.targets import DoubleWell, GaussianMixture, StudentT


def _mixture():
    """Two diagonal components with unnormalized weights, all mass well inside [-6, 6]^2."""
    return GaussianMixture(means=[[-1.5, 0.5], [1.0, -1.0]], scales=[[0.6, 1.0], [0.8, 0.5]],
                           weights=[0.5, 1.5])


@pytest.mark.parametrize("target", [
    _mixture(),
    GaussianMixture(means=[[0.0, 0.0], [2.0, 1.0], [-1.0, 1.5]], scales=[0.7, 0.5, 0.8]),
    DoubleWell(dim=2),
    DoubleWell(a=0.5, b=2.0, c=-0.5, dim=2),
], ids=["mixture-diag", "mixture-iso", "double-well", "double-well-tilted"])
def test_log_z_matches_the_2d_midpoint_rule(target):
    grid = potentials.log_normalizer(target.energy, lim=6.0, n=1200)
    assert target.log_z == pytest.approx(grid, abs=1e-6)


def test_double_well_log_z_in_1d_and_3d_matches_quadrature():
    first = DoubleWell(a=1.0, b=6.0, c=1.0, dim=1)
    value, _ = integrate.quad(lambda t: math.exp(-(t ** 4 - 6 * t ** 2 + t)), -math.inf, math.inf)
    assert first.log_z == pytest.approx(math.log(value), abs=1e-8)
    x = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    assert DoubleWell(dim=3).energy(x).item() == pytest.approx(0.3 ** 4 - 6 * 0.09 + 0.3 + 2.5)


def test_mixture_samples_have_the_closed_form_mean_and_covariance():
    target, n = _mixture(), 200_000
    x = target.sample(n, torch.Generator().manual_seed(0))
    w = target.weights / target.weights.sum()
    mean = (w[:, None] * target.means).sum(0)
    second = (w[:, None, None] * (torch.diag_embed(target.scales ** 2)
                                  + target.means[:, :, None] * target.means[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    se = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * se).all()
    assert torch.allclose(torch.cov(x.T), cov, atol=0.02)


def test_student_t_density_matches_scipy():
    target = StudentT(df=[3.0, 7.5], loc=[0.5, -1.0], scale=[2.0, 0.3])
    x = torch.tensor([[0.0, 0.0], [10.0, -1.2], [-30.0, 4.0]], dtype=torch.float64)
    expected = stats.t.logpdf(x.numpy(), df=[3.0, 7.5], loc=[0.5, -1.0], scale=[2.0, 0.3]).sum(1)
    torch.testing.assert_close(-target.energy(x) - target.log_z, torch.from_numpy(expected))


def test_student_t_log_z_matches_quadrature():
    target = StudentT(df=2.5, scale=1.7, dim=1)

    def density(t):
        return math.exp(-target.energy(torch.tensor([[t]])).item())
    value, _ = integrate.quad(density, -math.inf, math.inf)
    assert target.log_z == pytest.approx(math.log(value), abs=1e-7)


def test_student_t_samples_have_the_closed_form_moments_and_tails():
    n = 200_000
    target = StudentT(df=[10.0, 3.0], loc=[1.0, 0.0], scale=[0.5, 1.0])
    x = target.sample(n, torch.Generator().manual_seed(1))
    var = 0.25 * 10 / 8
    assert abs(x[:, 0].mean().item() - 1.0) < 4 * math.sqrt(var / n)
    assert abs(x[:, 0].var().item() - var) < 0.02 * var
    tail = 2 * stats.t.sf(4.0, df=3.0)                               # P(|x| > 4) when df = 3
    assert abs((x[:, 1].abs() > 4).double().mean().item() - tail) < 4 * math.sqrt(tail / n)


def test_samples_follow_the_generator():
    a = StudentT(df=4.0, dim=3).sample(5, torch.Generator().manual_seed(3))
    b = StudentT(df=4.0, dim=3).sample(5, torch.Generator().manual_seed(3))
    assert a.shape == (5, 3) and torch.equal(a, b)
    assert torch.equal(_mixture().sample(4, torch.Generator().manual_seed(2)),
                       _mixture().sample(4, torch.Generator().manual_seed(2)))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="must be \\(N, 2\\)"):
        _mixture().energy(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="scales"):
        GaussianMixture(means=[[0.0, 0.0]], scales=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(means=[[0.0], [1.0]], scales=[1.0, 1.0], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="df"):
        StudentT(df=[1.0, 0.0])
    with pytest.raises(ValueError, match="one length"):
        StudentT(df=[3.0, 4.0], loc=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="a =="):
        DoubleWell(a=0.0)
    with pytest.raises(ValueError, match="n =="):
        StudentT(df=3.0).sample(0)
