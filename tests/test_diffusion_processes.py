import math

import pytest
import torch

from repro.generative_diffusion.processes import (VarianceExploding, VariancePreserving,
                                                  ornstein_uhlenbeck, standard_normal)

PROCESSES = [VariancePreserving(), ornstein_uhlenbeck(3.0), VariancePreserving(0.5, 5.0),
             VarianceExploding(0.01, 5.0)]


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
def test_coefficients_solve_the_sde_moment_equations(process):
    # for dx = f x dt + g dW: d alpha / dt = f alpha and d sigma^2 / dt = 2 f sigma^2 + g^2
    t = torch.linspace(0.05, 0.95 * process.t_max, 7, dtype=torch.float64)
    h = 1e-6
    d_alpha = (process.alpha(t + h) - process.alpha(t - h)) / (2 * h)
    d_var = (process.sigma(t + h) ** 2 - process.sigma(t - h) ** 2) / (2 * h)
    assert torch.allclose(d_alpha, process.f(t) * process.alpha(t), rtol=1e-6, atol=1e-9)
    assert torch.allclose(d_var, 2 * process.f(t) * process.sigma(t) ** 2 + process.g(t) ** 2,
                          rtol=1e-6, atol=1e-9)


def test_variance_preserving_and_ornstein_uhlenbeck():
    vp = VariancePreserving()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones_like(t))
    ou = ornstein_uhlenbeck(2.0)
    assert torch.allclose(ou.alpha(t), torch.exp(-t))
    assert torch.allclose(ou.g(t), torch.full_like(t, math.sqrt(2)))


def test_perturb_matches_the_marginal_law():
    vp = VariancePreserving()
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 2.0, dtype=torch.float64)
    xt, eps = vp.perturb(x0, 0.3, generator=g)
    assert torch.allclose(xt, vp.alpha(0.3) * x0 + vp.sigma(0.3) * eps)
    assert abs(xt.mean() - 2 * vp.alpha(0.3)) < 0.01
    assert abs(xt.std() - vp.sigma(0.3)) < 0.01
    # one time per row
    t = torch.tensor([0.1, 0.9], dtype=torch.float64)
    xt, eps = vp.perturb(torch.ones(2, 3, dtype=torch.float64), t)
    assert torch.allclose(xt[1], vp.alpha(t[1]) + vp.sigma(t[1]) * eps[1])


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="beta_min"):
        VariancePreserving(beta_min=-1)
    with pytest.raises(ValueError, match="sigma_max"):
        VarianceExploding(1.0, 0.5)


def test_standard_normal_draws_on_the_generator_and_moves_to_like():
    like = torch.zeros(3, dtype=torch.float64)
    drawn = standard_normal((4, 2), like, torch.Generator().manual_seed(7))
    expected = torch.randn((4, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert drawn.dtype == torch.float64 and drawn.device == like.device
    assert torch.equal(drawn, expected)
    assert standard_normal((5,), like.float()).dtype == torch.float32
