import math

import pytest
import torch
from torch import nn

from repro.generative_diffusion import idempotent as ign


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_l1_distance_and_shape_check():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert float(ign.l1_distance(a, b)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="same shape"):
        ign.l1_distance(a, b.T)


def test_smooth_clamp_is_identity_when_small_and_bounded_by_a_scale():
    scale = torch.tensor(2.0)
    small = torch.tensor(-1e-4)
    assert float(ign.smooth_clamp(small, scale, a=1.5)) == pytest.approx(-1e-4, rel=1e-6)
    big = torch.tensor(-1e6)
    assert float(ign.smooth_clamp(big, scale, a=1.5)) == pytest.approx(-3.0)
    # a * s * tanh(t / (a s)) by hand
    t = torch.tensor(-2.0)
    assert float(ign.smooth_clamp(t, scale, a=1.5)) == pytest.approx(3.0 * math.tanh(-2.0 / 3.0))
    with pytest.raises(ValueError, match="a =="):
        ign.smooth_clamp(t, scale, a=0.0)


def test_clamp_scale_takes_no_gradient():
    s = torch.tensor(2.0, requires_grad=True)
    t = torch.tensor(-1.0, requires_grad=True)
    ign.smooth_clamp(t, s).backward()
    assert s.grad is None
    assert float(t.grad) == pytest.approx(1 - math.tanh(-1.0 / 3.0) ** 2)


def test_idempotence_gradient_flows_through_the_inner_application_only():
    f = _net()
    frozen = ign.frozen_copy(f)
    x, z = torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    terms = ign.ign_terms(f, frozen, x, z, a=None)
    g_idem = _grads(f, terms["idem"])
    # reference: D(f(sg f(z)) ... ) with the outer copy as a plain function of a leaf input
    fz = f(z)
    inner_only = ign.l1_distance(frozen(fz), fz)
    assert torch.allclose(g_idem, _grads(f, inner_only))
    # the full-gradient version (through both applications) differs
    fz = f(z)
    both = ign.l1_distance(f(fz), fz)
    assert not torch.allclose(g_idem, _grads(f, both))
    assert all(p.grad is None for p in frozen.parameters())


def test_tightness_gradient_flows_through_the_outer_application_only():
    f = _net(1)
    frozen = ign.frozen_copy(f)
    x, z = torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    g_tight = _grads(f, ign.ign_terms(f, frozen, x, z, a=None)["tight"])
    with torch.no_grad():
        fz = f(z)                                     # a constant input: no inner path
    assert torch.allclose(g_tight, _grads(f, -ign.l1_distance(f(fz), fz)))
    # the inner path alone contributes nothing: freeze the outer application
    fz = f(z)
    assert not torch.allclose(g_tight, _grads(f, -ign.l1_distance(frozen(fz), fz)))


def test_identity_network_has_zero_rec_and_idem_terms():
    f = nn.Identity()
    x, z = torch.randn(8, 2), torch.randn(8, 2)
    terms = ign.ign_terms(f, nn.Identity(), x, z, a=None)
    assert float(terms["rec"]) == 0 and float(terms["idem"]) == 0 and float(terms["tight"]) == 0


def test_loss_weights_and_frozen_copy_refresh():
    f = _net(2)
    gen = torch.Generator().manual_seed(0)
    loss = ign.IGNLoss(f, lambda n: torch.randn(n, 2, generator=gen, dtype=torch.float64))
    x = torch.randn(32, 2, dtype=torch.float64)
    total = loss(f, (x,))
    expected = 20 * loss.last["rec"] + 20 * loss.last["idem"] + 2.5 * loss.last["tight"]
    assert float(total.detach()) == pytest.approx(expected, rel=1e-10)
    with torch.no_grad():
        f[0].weight.add_(1.0)
    loss(f, (x,))
    assert torch.equal(loss.frozen[0].weight, f[0].weight)
    with pytest.raises(ValueError, match="lambda_tight"):
        ign.IGNLoss(f, lambda n: torch.randn(n, 2), lambda_tight=-1.0)


def test_terms_reject_mismatched_shapes_and_apply_repeatedly():
    f = _net()
    with pytest.raises(ValueError, match="same shape per sample"):
        ign.ign_terms(f, ign.frozen_copy(f), torch.randn(4, 2).double(), torch.randn(4, 3).double())
    seq = ign.apply_repeatedly(lambda v: 0.5 * v, torch.ones(3, 2), 2)
    assert len(seq) == 3 and torch.allclose(seq[2], 0.25 * torch.ones(3, 2))
    with pytest.raises(ValueError, match="times"):
        ign.apply_repeatedly(f, torch.ones(3, 2), 0)
