import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from repro.generative_diffusion import diffusion_tails as dt


def test_student_t_matches_scipy_quantiles():
    x = dt.student_t(200_000, 1, 3.0, torch.Generator().manual_seed(0)).reshape(-1).numpy()
    for p in [0.1, 0.5, 0.9, 0.99]:
        assert np.quantile(x, p) == pytest.approx(sps.t(3.0).ppf(p), abs=0.03)
    g = dt.student_t(200_000, 2, math.inf, torch.Generator().manual_seed(1))
    assert g.shape == (200_000, 2) and float(g.std()) == pytest.approx(1.0, abs=0.01)


def test_exact_tail_ratio():
    assert dt.tail_ratio_exact(math.inf) == pytest.approx(3.2905 / 1.6449, rel=1e-4)
    assert dt.tail_ratio_exact(3.0) == pytest.approx(sps.t(3).ppf(0.9995) / sps.t(3).ppf(0.95))
    assert dt.abs_quantile(0.95, math.inf, scale=2.0) == pytest.approx(2 * 1.959964, rel=1e-6)


def test_empirical_tail_ratio_recovers_exact():
    gen = torch.Generator().manual_seed(2)
    for nu in [3.0, math.inf]:
        x = 5.0 * dt.student_t(400_000, 1, nu, gen) + 2.0   # scale and shift do not matter
        assert dt.tail_ratio(x) == pytest.approx(dt.tail_ratio_exact(nu), rel=0.03)


def test_hill_recovers_pareto_and_student_t_index():
    gen = torch.Generator().manual_seed(3)
    u = torch.rand(200_000, generator=gen, dtype=torch.float64)
    alpha, se = dt.hill(u ** (-1 / 2.5), 5000)          # exact Pareto(2.5)
    assert abs(alpha - 2.5) < 3 * se and se == pytest.approx(alpha / math.sqrt(5000))
    alpha_t, se_t = dt.hill(dt.student_t(400_000, 1, 3.0, gen), 400)
    assert abs(alpha_t - 3.0) < 0.3
    alpha_g, _ = dt.hill(dt.student_t(400_000, 1, math.inf, gen), 400)
    assert alpha_g > 10       # a Gaussian has no finite tail index


def test_lipschitz_on_grid_of_known_maps():
    z = torch.linspace(-3, 3, 3001, dtype=torch.float64)
    assert dt.lipschitz_on_grid(z, 2.0 * z.sin()) == pytest.approx(2.0, rel=1e-5)
    assert dt.lipschitz_on_grid(z.flip(0), -4 * z.flip(0)) == pytest.approx(4.0)


def test_concentration_bound_holds_for_a_lipschitz_map_of_a_gaussian():
    z = dt.student_t(200_000, 1, math.inf, torch.Generator().manual_seed(4)).reshape(-1)
    x = 1.5 * z + torch.sin(z)          # Lipschitz constant 2.5
    t = np.linspace(0, 8, 33)
    assert np.all(dt.empirical_tail(x, t) <= dt.gaussian_concentration_bound(t, 2.5) + 1e-3)
    assert dt.gaussian_concentration_bound(0.0, 1.0) == pytest.approx(2.0)


def test_pushforward_tail_of_linear_and_student_t_maps():
    z = np.linspace(-12, 12, 24001)
    t = np.linspace(0, 20, 11)
    assert dt.pushforward_tail(z, 2 * z + 1, t, center=1.0) == pytest.approx(
        2 * sps.norm.sf(t / 2), rel=1e-6, abs=1e-300)
    g = dt.student_t_map(z, 3.0)
    assert dt.pushforward_tail(z, g, [5.0, 50.0]) == pytest.approx(2 * sps.t(3).sf([5.0, 50.0]),
                                                                   rel=1e-3)


def test_local_tail_index_of_student_t_and_gaussian():
    z = np.linspace(0.5, 9, 8501)
    index_t = dt.local_tail_index(z, dt.student_t_map(z, 3.0))
    assert index_t[-1] == pytest.approx(3.0, rel=0.02)
    index_g = dt.local_tail_index(z, z)
    zi = z[1:-1]
    assert index_g[-1] > zi[-1] ** 2 and index_g[-1] < zi[-1] ** 2 + 2


@pytest.mark.parametrize("call", [
    lambda: dt.student_t(10, 1, 0.0),
    lambda: dt.student_t(0, 1, 3.0),
    lambda: dt.hill(torch.ones(10), 10),
    lambda: dt.tail_ratio(torch.randn(100), high=0.5, low=0.9),
    lambda: dt.abs_quantile(1.0, 3.0),
    lambda: dt.lipschitz_on_grid([0.0, 0.0], [1.0, 2.0]),
    lambda: dt.gaussian_concentration_bound([1.0], 0.0),
    lambda: dt.pushforward_tail([0.0, 1.0, 2.0], [0.0, -1.0, 3.0], [0.5]),
    lambda: dt.pushforward_tail([0.0, 1.0, 2.0], [0.0, 1.0, 3.0], [5.0]),
    lambda: dt.local_tail_index([0.0, 1.0, 2.0], [-1.0, -0.5, 3.0]),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_student_t_map_is_the_exact_transport():
    z = np.array([-3.0, 0.0, 1.0, 10.0])
    assert dt.student_t_map(z, 3.0)[:3] == pytest.approx(sps.t(3).ppf(sps.norm.cdf(z[:3])))
    assert np.isfinite(dt.student_t_map(z, 3.0)[-1])
    assert dt.student_t_map(z, math.inf) == pytest.approx(z)
