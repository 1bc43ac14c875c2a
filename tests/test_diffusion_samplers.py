import math

import pytest
import torch

from repro.generative_diffusion.mixtures import GaussianMixture
from repro.generative_diffusion.processes import ornstein_uhlenbeck
from repro.generative_diffusion.samplers import euler_maruyama, probability_flow, time_grid

pytestmark = pytest.mark.usefixtures("float64")

DATA = GaussianMixture([[1.5]], scales=[0.5])           # one Gaussian: every law stays Gaussian
OU = ornstein_uhlenbeck(6.0)
T_MIN = 1e-3


def exact_score(x, t):
    return DATA.noised(OU.alpha(t), OU.sigma(t)).score(x)


def target_moments():
    law = DATA.noised(OU.alpha(T_MIN), OU.sigma(T_MIN))
    return law.means[0, 0].item(), law.covariances[0, 0, 0].sqrt().item()


def ode_error(steps, method):
    # the exact flow carries the law at t_max onto the law at t_min, and it is affine here, so
    # the start law's mean and mean + std must land on the target's mean and mean + std
    start = DATA.noised(OU.alpha(OU.t_max), OU.sigma(OU.t_max))
    m, s = start.means[0, 0], start.covariances[0, 0, 0].sqrt()
    x = torch.stack([m, m + s])[:, None]
    out = probability_flow(exact_score, OU, x, time_grid(steps, OU.t_max, T_MIN), method)
    mean, std = target_moments()
    return abs(out[0, 0].item() - mean) + abs((out[1, 0] - out[0, 0]).item() - std)


def test_probability_flow_converges_at_its_order():
    for method, order in (("euler", 1), ("heun", 2)):
        e1, e2 = ode_error(400, method), ode_error(800, method)
        assert abs(math.log2(e1 / e2) - order) < 0.25, (method, e1, e2)


def test_reverse_sde_reaches_the_data_law():
    g = torch.Generator().manual_seed(0)
    x = OU.prior((100_000, 1), generator=g, dtype=torch.float64)
    out = euler_maruyama(exact_score, OU, x, time_grid(400, OU.t_max, T_MIN), generator=g)
    mean, std = target_moments()
    assert abs(out.mean().item() - mean) < 0.02
    assert abs(out.std().item() - std) < 0.02


def test_time_grids():
    u = time_grid(10, 2.0, 0.01)
    e = time_grid(10, 2.0, 0.01, "exponential")
    for grid in (u, e):
        assert grid[0] == 2.0 and abs(grid[-1] - 0.01) < 1e-15 and len(grid) == 11
    ratios = e[1:] / e[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    with pytest.raises(ValueError, match="kind"):
        time_grid(10, 1.0, 0.1, "cosine")
    with pytest.raises(ValueError, match="decreasing"):
        probability_flow(exact_score, OU, torch.zeros(2, 1), torch.tensor([0.1, 0.5]))
