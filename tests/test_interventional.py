import math

import pytest
import torch
from torch.autograd.functional import jacobian

from repro.normalizing_flows import interventional as inf
from layer_checks import randomize

CONDITIONAL = [lambda: inf.ConditionalAffine(2, 3, hidden=8),
               lambda: inf.ConditionalSpline(2, 3, bins=5, hidden=8, bound=2.0)]


def _pair(n=12, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(n, 2, generator=gen, dtype=torch.float64),
            torch.randn(n, 3, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("make", CONDITIONAL)
def test_conditional_layer_inverts_and_log_det_matches_jacobian(make):
    layer = randomize(make().double(), scale=0.5)
    y, c = _pair()
    u, log_det = layer(y, c)
    y_back, log_det_inv = layer.inverse(u, c)
    torch.testing.assert_close(y_back, y, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det_inv, -log_det, atol=1e-9, rtol=0)
    for i in range(4):
        jac = jacobian(lambda v: layer(v[None], c[i:i + 1])[0][0], y[i])
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1], atol=1e-9, rtol=0)


@pytest.mark.parametrize("make", CONDITIONAL)
def test_conditional_layer_starts_at_identity(make):
    y, c = _pair()
    u, log_det = make().double()(y, c)
    torch.testing.assert_close(u, y, atol=1e-8, rtol=0)          # softplus round trip
    torch.testing.assert_close(log_det, torch.zeros(12, dtype=torch.float64), atol=1e-8, rtol=0)


def test_independent_flows_invert_and_log_det_matches_derivative():
    flows = randomize(inf.IndependentFlows(3, bins=6, bound=2.0).double(), scale=0.5)
    y = 2 * torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u, log_det = flows(y)
    y_back, log_det_inv = flows.inverse(u)
    torch.testing.assert_close(y_back, y, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det_inv, -log_det, atol=1e-9, rtol=0)
    y.requires_grad_(True)
    deriv = torch.autograd.grad(flows(y)[0].sum(), y)[0]       # columns are independent
    torch.testing.assert_close(log_det, deriv.log().detach(), atol=1e-9, rtol=0)


def test_flow_densities_integrate_to_one():
    torch.manual_seed(0)
    grid = torch.linspace(-12, 12, 6001, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    flows = randomize(inf.IndependentFlows(2, bins=6).double(), scale=0.5)
    mass = flows.log_prob(grid[:, None].expand(-1, 2).contiguous()).exp().sum(0) * step
    torch.testing.assert_close(mass, torch.ones(2, dtype=torch.float64), atol=1e-3, rtol=0)
    nuis = randomize(inf.NuisanceFlow(1, hidden=4, bins=4).double(), scale=0.3)
    x = torch.randn(3, 1, dtype=torch.float64)
    cond = inf.conditional_density_grid(nuis, x, 1, grid)
    torch.testing.assert_close(cond.sum(0) * step, torch.ones(3, dtype=torch.float64),
                               atol=1e-3, rtol=0)


def test_true_interventional_density_is_the_adjusted_mixture():
    gen = torch.Generator().manual_seed(0)
    x, a, y, truth = inf.confounded_gaussians(200_000, 1.5, (0.0, 1.5), (1.0, -1.5), generator=gen)
    # the propensity is logistic: P(A = 1 | x) = sigmoid(s^2 / 2 - s x)
    near = (x[:, 0] - 0.75).abs() < 0.05
    assert abs(a[near].double().mean().item() - 0.5) < 0.03
    # p(y^1) has mean 1 + (-1.5) * E[X] = 1 - 1.5 * 0.75
    mix = truth[1]
    mean = (mix.means[:, 0] * mix.weights / mix.weights.sum()).sum().item()
    assert mean == pytest.approx(1 - 1.5 * 0.75)
    grid = torch.linspace(-15, 15, 3001, dtype=torch.float64)[:, None]
    mass = inf.mixture_log_prob(mix, grid).exp().sum() * (grid[1, 0] - grid[0, 0])
    assert mass.item() == pytest.approx(1.0, abs=1e-6)


def test_bias_corrected_loss_with_true_propensity_is_unbiased_for_any_outcome_model():
    """Double robustness: with the true propensity, the correction makes the expected weights
    those of p(y^a) even when the outcome model ignores x."""
    gen = torch.Generator().manual_seed(3)
    x, a, y, truth = inf.confounded_gaussians(100_000, 1.5, (0.0, 1.5), (1.0, -1.5), generator=gen)
    prop1 = torch.sigmoid(1.5 ** 2 / 2 - 1.5 * x[:, 0])
    grid = torch.linspace(-8, 8, 161, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    wrong = torch.distributions.Normal(0.0, 1.0).log_prob(grid).exp()[:, None].expand(-1, len(a))
    c, d = inf.bias_corrected_weights(wrong, a, prop1, 1, step, clip=0.0)
    # sum_k c_k f(y_k) + sum_i d_i f(Y_i) estimates E[f(Y^1)] for f = y and f = y^2
    mix = truth[1]
    m = mix.means[:, 0]
    v = mix.scales[:, 0] ** 2
    for f, exact in [(lambda t: t, m.mean()), (lambda t: t ** 2, (v + m ** 2).mean())]:
        est = (c * f(grid)).sum() + (d * f(y[:, 0])).sum()
        assert est.item() == pytest.approx(exact.item(), abs=0.1)
    c0, d0 = inf.bias_corrected_weights(wrong, a, prop1, 1, step, correct=False)
    assert torch.all(d0 == 0) and (c0 * grid).sum().item() == pytest.approx(0.0, abs=1e-6)


def test_grid_kl_is_zero_for_equal_densities_and_matches_gaussians():
    grid = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    p = torch.distributions.Normal(0.0, 1.0).log_prob(grid)
    q = torch.distributions.Normal(1.0, 1.0).log_prob(grid)
    assert inf.grid_kl(p, p, step) == pytest.approx(0.0, abs=1e-12)
    assert inf.grid_kl(p, q, step) == pytest.approx(0.5, abs=1e-6)


def test_bad_input_raises_value_error():
    layer = inf.ConditionalAffine(1, 2)
    with pytest.raises(ValueError, match="context has shape"):
        layer(torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="must be \\(P, 2\\)"):
        inf.IndependentFlows(2)(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="grid has shape"):
        inf.conditional_density_grid(inf.NuisanceFlow(1), torch.zeros(2, 1), 1, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="must both be"):
        inf.bias_corrected_weights(torch.ones(4, 3), torch.zeros(2), torch.ones(3), 1, 0.1)
    with pytest.raises(ValueError):
        inf.confounded_gaussians(1, 1.0, (0, 1), (0, 1))
    assert math.isfinite(inf.grid_kl(torch.zeros(2), torch.zeros(2), 1.0))
