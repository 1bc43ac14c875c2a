import math

import pytest
import torch

from repro.normalizing_flows import force_matching, splines
from layer_checks import autograd_log_det, randomize


def _flow(kind, dim=3, seed=0):
    layer = (splines.SmoothRampMixture(dim, components=4) if kind == "smooth"
             else force_matching.IntervalSpline(dim, bins=5))
    return force_matching.UnitIntervalFlow([randomize(layer.double(), scale=0.7, seed=seed)], dim)


def test_interval_spline_inverts_and_log_det_matches_jacobian():
    layer = randomize(force_matching.IntervalSpline(3, bins=6).double())
    x = torch.rand(16, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y, log_det = layer(x)
    assert ((y >= 0) & (y <= 1)).all()
    x_back, log_det_inv = layer.inverse(y)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det_inv, -log_det, atol=1e-9, rtol=0)
    torch.testing.assert_close(log_det[:4], autograd_log_det(layer, x[:4]), atol=1e-9, rtol=0)


def test_interval_spline_starts_at_identity_and_maps_ends():
    layer = force_matching.IntervalSpline(2, bins=4).double()
    x = torch.rand(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y, log_det = layer(x)
    torch.testing.assert_close(y, x, atol=1e-9, rtol=0)     # float32 initial slopes
    ends = randomize(layer)(torch.tensor([[0.0, 1.0]], dtype=torch.float64))[0]
    torch.testing.assert_close(ends, torch.tensor([[0.0, 1.0]], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_flow_density_integrates_to_one_and_samples_match_it(kind):
    flow = _flow(kind)
    grid = torch.linspace(0, 1, 40001, dtype=torch.float64)[:, None].expand(-1, 3).contiguous()
    q = force_matching.marginal_log_probs(flow, grid).exp()
    torch.testing.assert_close(torch.trapezoid(q, grid, dim=0), torch.ones(3, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    total = flow.log_prob(grid[::100])
    torch.testing.assert_close(total, force_matching.marginal_log_probs(flow, grid[::100]).sum(1))
    with torch.no_grad():
        x = flow.sample(20000, torch.Generator().manual_seed(3))
    mean = torch.trapezoid(grid * q, grid, dim=0)
    assert ((x.mean(0) - mean).abs() < 5 * x.std(0) / math.sqrt(20000)).all()


@pytest.mark.parametrize("kind", ["smooth", "spline"])
def test_forces_are_the_gradient_of_log_q(kind):
    flow = _flow(kind)
    x = 0.05 + 0.9 * torch.rand(20, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    h = 1e-6
    log_q = lambda z: force_matching.marginal_log_probs(flow, z)
    fd = (log_q(x + h) - log_q(x - h)) / (2 * h)
    torch.testing.assert_close(force_matching.flow_forces(flow, x), fd, atol=1e-5, rtol=1e-5)


def test_spline_forces_jump_at_knots_and_smooth_forces_do_not():
    spline, smooth = _flow("spline"), _flow("smooth")
    knots = spline.layers[0].knots().detach().T.contiguous()          # (bins - 1, D)
    forces = lambda flow: (lambda x: force_matching.flow_forces(flow, x))
    big, small = (force_matching.force_jump(forces(spline), knots, h).max() for h in (1e-6, 1e-7))
    assert big > 1e-3 and 0.5 < small / big < 2
    big, small = (force_matching.force_jump(forces(smooth), knots, h).max() for h in (1e-6, 1e-7))
    assert 0.05 < small / big < 0.2


def test_force_matching_loss_is_zero_at_the_flow_forces_and_trains():
    flow = _flow("smooth")
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    own = force_matching.flow_forces(flow, x)
    assert force_matching.force_matching_loss(flow, x, own).item() < 1e-20
    loss = force_matching.force_matching_loss(flow, x, torch.zeros_like(x))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in flow.parameters())


def test_double_well_target():
    target = force_matching.IntervalDoubleWell()
    grid = torch.linspace(0, 1, 200001, dtype=torch.float64)
    torch.testing.assert_close(torch.trapezoid(target.log_prob(grid).exp(), grid).item(), 1.0,
                               atol=1e-8, rtol=0)
    x = torch.rand(50, dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(target.energy(x).sum(), x)
    torch.testing.assert_close(target.force(x), -grad)
    samples = target.sample(20000, torch.Generator().manual_seed(6))
    mean = torch.trapezoid(grid * target.log_prob(grid).exp(), grid).item()
    assert abs(samples.mean().item() - mean) < 5 * samples.std().item() / math.sqrt(20000)


def test_bad_input_raises():
    flow = _flow("smooth")
    with pytest.raises(ValueError, match="outside"):
        flow.log_prob(torch.full((2, 3), 1.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="must be"):
        flow.log_prob(torch.rand(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="must match"):
        force_matching.force_matching_loss(flow, torch.rand(2, 3, dtype=torch.float64),
                                           torch.rand(2, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="widen"):
        force_matching.IntervalDoubleWell(half_width=1.0)
    with pytest.raises(ValueError):
        force_matching.force_jump(lambda x: x, torch.zeros(2), gap=0.0)


def test_scale_rows_gives_each_row_its_adam_learning_rate():
    rates = torch.tensor([0.01, 0.1], dtype=torch.float64)
    plain = [randomize(force_matching.IntervalSpline(1, bins=4).double(), seed=s) for s in (0, 0)]
    joint = force_matching.IntervalSpline(2, bins=4).double()
    with torch.no_grad():
        for name, p in joint.named_parameters():
            p.copy_(torch.cat([dict(plain[0].named_parameters())[name]] * 2))
    force_matching.scale_rows(joint, rates)
    x = torch.rand(32, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    opts = [torch.optim.Adam(m.parameters(), lr=r.item(), eps=1e-14) for m, r in zip(plain, rates)]
    joint_opt = torch.optim.Adam(joint.parameters(), lr=1.0, eps=1e-14)   # eps scales with rows
    for _ in range(5):
        for m, o in zip(plain, opts):
            o.zero_grad()
            (-m(x)[1].mean()).backward()
            o.step()
        joint_opt.zero_grad()
        (-joint(x.repeat(1, 2))[1].mean()).backward()
        joint_opt.step()
    for row, m in enumerate(plain):
        torch.testing.assert_close(joint.widths[row], m.widths[0], atol=1e-6, rtol=1e-6)
