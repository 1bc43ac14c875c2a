"""Tests of repro.normalizing_flows.diffeomorphisms: known diffeomorphisms, error measures."""
import math

import pytest
import torch

from layer_checks import autograd_log_det
from repro.normalizing_flows import coupling, diffeomorphisms as dm

pytestmark = pytest.mark.usefixtures("float64")  # every test in float64


def test_twist_is_invertible():
    f = dm.Twist(strength=2.5, width=0.7)
    x = 2 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    y, ld = f(x)
    back, ld_inv = f.inverse(y)
    torch.testing.assert_close(back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_inv, -ld)


def test_twist_log_det_matches_autograd():
    f = dm.Twist(strength=2.5, width=0.7)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(autograd_log_det(f, x), f(x)[1], atol=1e-10, rtol=0)
    torch.testing.assert_close(autograd_log_det(f.inverse, x), f.inverse(x)[1], atol=1e-10, rtol=0)


def test_twist_is_the_time_one_flow_of_its_vector_field():
    """RK4 integration of dx/dt = v(x) from t = 0 to 1 lands on f(x)."""
    f = dm.Twist(strength=2.0, width=0.8)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(2))
    z, h = x.clone(), 1 / 400
    for _ in range(400):
        k1 = f.vector_field(z)
        k2 = f.vector_field(z + h / 2 * k1)
        k3 = f.vector_field(z + h / 2 * k2)
        k4 = f.vector_field(z + h * k3)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(z, f(x)[0], atol=1e-9, rtol=0)


def test_pushforward_density_integrates_to_one():
    f = dm.Twist(strength=2.0, width=0.8)
    pts = dm.grid(-4, 4, 401)
    cell = (8 / 400) ** 2
    mass = f.log_prob_pushforward(pts, [0.8, 0.0], 0.5).exp().sum().item() * cell
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_pushforward_density_is_change_of_variables():
    f = dm.Twist(strength=2.0, width=0.8)
    z = torch.randn(30, 2, generator=torch.Generator().manual_seed(3))
    y, ld = f(z)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(f.log_prob_pushforward(y, [0.0, 0.0], 1.0), base - ld)


def test_best_affine_recovers_an_affine_map_and_is_l2_best():
    x = dm.grid(-2, 2, 11)
    a = torch.tensor([[1.0, 0.5], [-0.3, 2.0]])
    y = x @ a + torch.tensor([0.2, -1.0])
    assert dm.lp_error(dm.best_affine(x, y), y) < 1e-12
    f = dm.Twist()
    fy = f(x)[0]
    best = dm.lp_error(dm.best_affine(x, fy), fy)
    assert best <= dm.lp_error(x, fy) and best <= dm.lp_error(0.9 * x, fy)


def test_errors():
    pred, target = torch.zeros(4, 2), torch.tensor([[3.0, 4.0], [0, 0], [0, 0], [0, 0]])
    assert dm.sup_error(pred, target) == 5.0
    assert dm.lp_error(pred, target, p=1) == 1.25
    assert dm.lp_error(pred, target, p=2) == pytest.approx(math.sqrt(25 / 4))


def test_compose_sums_log_dets():
    layers = [coupling.AffineCoupling(2, mask=[1, 0], hidden=8),
              coupling.AffineCoupling(2, mask=[0, 1], hidden=8)]
    x = torch.randn(5, 2)
    y, ld = dm.compose(layers, x)
    y1, ld1 = layers[0](x)
    y2, ld2 = layers[1](y1)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(ld, ld1 + ld2)


@pytest.mark.parametrize("call, match", [
    (lambda: dm.Twist(width=0.0), "width"),
    (lambda: dm.Twist(strength=float("nan")), "strength"),
    (lambda: dm.Twist()(torch.zeros(3, 3)), r"must be \(N, 2\)"),
    (lambda: dm.grid(1, 0, 5), "low < high"),
    (lambda: dm.lp_error(torch.zeros(2, 2), torch.zeros(2, 2), p=0.5), "p == 0.5"),
    (lambda: dm.Twist().log_prob_pushforward(torch.zeros(2, 2), [0, 0], -1.0), "std"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
