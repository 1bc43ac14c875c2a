import math

import numpy as np
import pytest
import torch

from repro.generative_diffusion import ddpm_kl as dk
from repro.generative_diffusion.distances import gaussian_kl
from repro.generative_diffusion.mixtures import GaussianMixture

MU, VAR = 0.5, 0.09                                    # Gaussian data: every law stays Gaussian
DATA = GaussianMixture([[MU]], [[[VAR]]])
GRID = dk.Grid(-6.0, 6.0, 4096)


def target(delta):
    alpha = math.exp(-delta)
    return alpha * MU, alpha ** 2 * VAR - math.expm1(-2 * delta)


def test_schedules_end_points_and_shapes():
    for kind in dk.SCHEDULES:
        t = dk.ou_times(20, 5.0, 1e-3, kind)
        assert t.shape == (21,) and t.dtype == torch.float64
        assert t[0].item() == pytest.approx(5.0) and t[-1].item() == pytest.approx(1e-3)
        assert bool((t[1:] < t[:-1]).all())


def test_exponential_schedule_is_constant_then_geometric():
    t = dk.ou_times(40, 5.0, 1e-4, "exponential")
    h = -(t[1:] - t[:-1])
    top = t[:-1] > 1 + 1e-12
    assert torch.allclose(h[top], h[top][0].expand(int(top.sum())))
    ratios = t[1:][~top] / t[:-1][~top]
    assert torch.allclose(ratios, ratios[0].expand(len(ratios)))
    # steps are split so that the step size is about the same on both sides of t = 1
    assert h[top][0].item() == pytest.approx(h[~top][0].item(), rel=0.3)


@pytest.mark.parametrize("kw, match", [
    (dict(steps=10, t_max=5.0, delta=0.0, kind="uniform"), "delta"),
    (dict(steps=10, t_max=5.0, delta=6.0, kind="uniform"), "delta < t_max"),
    (dict(steps=10, t_max=0.5, delta=0.1, kind="exponential"), "delta < 1 < t_max"),
    (dict(steps=10, t_max=5.0, delta=0.1, kind="cosine"), "kind"),
])
def test_schedule_rejects_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        dk.ou_times(**kw)


def test_closed_form_matches_monte_carlo():
    times = dk.ou_times(12, 5.0, 1e-2, "exponential")
    m, v = dk.gaussian_sampler_law(MU, VAR, times)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    y = dk.exponential_integrator(dk.mixture_score(DATA), x, times, generator=gen)
    assert y.mean().item() == pytest.approx(m, abs=4 * math.sqrt(v / 2e5))
    assert y.var().item() == pytest.approx(v, rel=0.02)


def test_closed_form_converges_to_the_target():
    m_star, v_star = target(1e-2)
    kls = [gaussian_kl([m_star], [[v_star]],
                       *[[c] if i == 0 else [[c]] for i, c in
                         enumerate(dk.gaussian_sampler_law(
                             MU, VAR, dk.ou_times(n, 8.0, 1e-2, "exponential")))])
           for n in (50, 100, 200)]
    assert kls[0] > kls[1] > kls[2] and kls[2] < 1e-3


@pytest.mark.parametrize("steps, delta", [(16, 1e-1), (32, 1e-3)])
def test_grid_law_matches_closed_form(steps, delta):
    times = dk.ou_times(steps, 5.0, delta, "exponential")
    q = dk.sampler_law(dk.mixture_score(DATA), times, GRID)
    p = GRID.density(dk.noised_law(DATA, delta).log_prob)
    m, v = dk.gaussian_sampler_law(MU, VAR, times)
    m_star, v_star = target(delta)
    exact = gaussian_kl([m_star], [[v_star]], [m], [[v]])
    assert dk.kl_on_grid(p, q, GRID.dx) == pytest.approx(exact, rel=0.02)
    assert float((GRID.points * q).sum() * GRID.dx) == pytest.approx(m, abs=1e-4)


def test_grid_law_of_a_mixture_matches_monte_carlo():
    mix = GaussianMixture([[-1.0], [1.2]], torch.zeros(2, 1, 1), [0.3, 0.7])   # two atoms
    times = dk.ou_times(20, 5.0, 1e-2, "exponential")
    q = dk.sampler_law(dk.mixture_score(mix), times, GRID)
    gen = torch.Generator().manual_seed(1)
    n = 100_000
    y = dk.exponential_integrator(dk.mixture_score(mix), torch.randn(n, 1, generator=gen,
                                                                    dtype=torch.float64),
                                  times, generator=gen)[:, 0].sort().values.numpy()
    cdf = np.cumsum(q.numpy()) * GRID.dx
    grid_cdf = np.interp(y, GRID.points.numpy() + GRID.dx / 2, cdf)
    ks = np.max(np.abs(grid_cdf - np.arange(1, n + 1) / n))
    assert ks < 1.95 / math.sqrt(n) + 2e-3                # KS at level 0.001, plus grid error


def test_grid_step_keeps_mass_and_moves_the_mean():
    d = GRID.density(lambda x: -0.5 * x[:, 0] ** 2)
    out = GRID.step(d, 0.5 * GRID.points + 1.0, 0.3)
    assert float(out.sum() * GRID.dx) == pytest.approx(1.0)
    assert float((GRID.points * out).sum() * GRID.dx) == pytest.approx(1.0, abs=1e-6)
    var = float((GRID.points ** 2 * out).sum() * GRID.dx) - 1.0
    assert var == pytest.approx(0.25 + 0.3, abs=1e-4)


def test_kl_on_grid_matches_gaussian_kl():
    p = GRID.density(lambda x: -0.5 * (x[:, 0] - 0.3) ** 2 / 0.5)
    q = GRID.density(lambda x: -0.5 * x[:, 0] ** 2 / 1.5)
    assert dk.kl_on_grid(p, q, GRID.dx) == pytest.approx(
        gaussian_kl([0.3], [[0.5]], [0.0], [[1.5]]), rel=1e-5)  # tails past 6


def test_bad_input_raises():
    with pytest.raises(ValueError, match="decreasing"):
        dk.sampler_law(dk.mixture_score(DATA), [0.1, 1.0], GRID)
    with pytest.raises(ValueError, match="one grid"):
        dk.kl_on_grid(torch.ones(3), torch.ones(4), 0.1)
    with pytest.raises(ValueError, match="var"):
        dk.gaussian_sampler_law(0.0, -1.0, [1.0, 0.1])
    with pytest.raises(ValueError, match="low < high"):
        dk.Grid(1.0, 0.0, 100)
    with pytest.raises(ValueError, match="down in time"):
        dk.step_coefficients(0.1, 0.2)
