import math

import pytest
import torch

from repro.core.models import MLP, SmallCNN
from repro.normalization.online_norm import OnlineNorm, online_norm


def _norm(c, **kw):
    kw = {"affine": False, "guard": None, "eps": 0.0} | kw
    return OnlineNorm(c, **kw).double()


def test_forward_matches_hand_computed_sequence():
    # one feature, alpha_f = 1/2, starting from mu_0 = 0, sigma^2_0 = 1, on the stream 1, 3, 0:
    # y_1 = 1; mu_1 = 1/2, s2_1 = 1/2 + 1/4 = 3/4; y_2 = 5/2 / sqrt(3/4); mu_2 = 7/4,
    # s2_2 = 3/8 + (1/4)(5/2)^2 = 31/16; y_3 = -7/4 / sqrt(31/16); mu_3 = 7/8,
    # s2_3 = 31/32 + (1/4)(7/4)^2 = 111/64
    norm = _norm(1, alpha_f=0.5)
    x = torch.tensor([[1.0], [3.0], [0.0]], dtype=torch.double)
    y = norm(x)
    expected = [1.0, 2.5 / math.sqrt(0.75), -1.75 / math.sqrt(31 / 16)]
    assert y.squeeze(1).tolist() == pytest.approx(expected, rel=1e-12)
    assert norm.m.item() == pytest.approx(7 / 8) and norm.var.item() == pytest.approx(111 / 64)


def test_forward_batch_equals_one_sample_at_a_time():
    # a batch is a stream: one call on 5 samples equals 5 calls on one sample each
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, 4, dtype=torch.double) * 2 + 1
    a, b = _norm(3, alpha_f=0.9), _norm(3, alpha_f=0.9)
    whole = a(x)
    single = torch.cat([b(x[t:t + 1]) for t in range(5)])
    assert torch.allclose(whole, single, atol=1e-12)
    assert torch.allclose(a.m, b.m) and torch.allclose(a.var, b.var)


def _reference(x, g, alpha_f, alpha_b, eps=0.0):
    """The equations, one sample and one feature at a time, in plain Python floats: per-sample
    component mean/variance, forward estimates, and the control-process backward."""
    n, c = x.shape[:2]
    xs = x.reshape(n, c, -1).tolist()
    gs = g.reshape(n, c, -1).tolist()
    ys, grads = [], []
    for f in range(c):
        m, var, u, v = 0.0, 1.0, 0.0, 0.0
        yf, gf = [], []
        for t in range(n):
            comp = xs[t][f]
            mu = sum(comp) / len(comp)
            s2 = sum((z - mu) ** 2 for z in comp) / len(comp)
            scale = math.sqrt(var + eps)
            y = [(z - m) / scale for z in comp]
            var = alpha_f * var + (1 - alpha_f) * s2 + alpha_f * (1 - alpha_f) * (mu - m) ** 2
            m = alpha_f * m + (1 - alpha_f) * mu
            gt = [gz - (1 - alpha_b) * v * yz for gz, yz in zip(gs[t][f], y)]
            v += sum(a * b for a, b in zip(gt, y)) / len(y)
            xt = [gz / scale - (1 - alpha_b) * u for gz in gt]
            u += sum(xt) / len(xt)
            yf.append(y)
            gf.append(xt)
        ys.append(yf)
        grads.append(gf)
    to = lambda rows: torch.tensor(rows, dtype=torch.double).permute(1, 0, 2).reshape(x.shape)
    return to(ys), to(grads)


@pytest.mark.parametrize("shape", [(6, 3), (6, 2, 3, 3)])
def test_forward_and_backward_match_the_equations(shape):
    torch.manual_seed(1)
    x = (torch.randn(*shape, dtype=torch.double) * 1.5 + 0.5).requires_grad_()
    g = torch.randn(*shape, dtype=torch.double) + 0.3
    norm = _norm(shape[1], alpha_f=0.7, alpha_b=0.6)
    y = norm(x)
    y.backward(g)
    y_ref, grad_ref = _reference(x.detach(), g, 0.7, 0.6)
    assert torch.allclose(y, y_ref, atol=1e-12)
    assert torch.allclose(x.grad, grad_ref, atol=1e-12)


def test_backward_hand_computed():
    # the stream of the first test, alpha_b = 1/2, incoming gradient 1 at every step:
    # t=1: g~ = 1, v = y_1 = 1, x' = 1, u = 1
    # t=2: g~ = 1 - v y_2 / 2, x' = g~ / sqrt(3/4) - 1/2
    norm = _norm(1, alpha_f=0.5, alpha_b=0.5)
    x = torch.tensor([[1.0], [3.0]], dtype=torch.double, requires_grad=True)
    norm(x).sum().backward()
    y2 = 2.5 / math.sqrt(0.75)
    g2 = 1 - 0.5 * y2
    assert x.grad.squeeze(1).tolist() == pytest.approx([1.0, g2 / math.sqrt(0.75) - 0.5])
    assert norm.v.item() == pytest.approx(1 + g2 * y2)
    assert norm.u.item() == pytest.approx(1 + g2 / math.sqrt(0.75) - 0.5)


def test_without_control_the_statistics_are_constants():
    torch.manual_seed(2)
    x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    g = torch.randn(4, 3, dtype=torch.double)
    norm = _norm(3, alpha_f=0.8, control=False)
    norm(x).backward(g)
    # autograd through (x - mu_{t-1}) / sigma_{t-1} with the estimates detached
    ref = _norm(3, alpha_f=0.8)
    scales = []
    for t in range(4):
        scales.append(torch.sqrt(ref.var.clone()))
        ref(x[t:t + 1].detach())
    assert torch.allclose(x.grad, g / torch.stack(scales), atol=1e-12)


def test_control_removes_the_gradient_along_the_ones_and_y_over_time():
    # a stream of single samples whose incoming gradient has a mean and a part along y: the
    # uncorrected gradient keeps both on average, the control process drives both averages to ~0
    torch.manual_seed(3)
    steps, c = 4000, 4
    averages = {}
    for control in (True, False):
        norm = _norm(c, alpha_f=0.99, alpha_b=0.9, control=control)
        ones_part, y_part = torch.zeros(c, dtype=torch.double), torch.zeros(c, dtype=torch.double)
        for _ in range(steps):
            sigma, u = torch.sqrt(norm.var.clone()), norm.u.clone()  # sigma_{t-1}, u_{t-1}
            x = (torch.randn(1, c, dtype=torch.double) * 2 + 1).requires_grad_()
            y = norm(x)
            g = 1.0 + 0.5 * y.detach() + torch.randn(1, c, dtype=torch.double)
            y.backward(g)
            ones_part += x.grad[0]
            # the part along y is taken before the division by sigma and the u-correction
            g_tilde = (x.grad[0] + (1 - 0.9) * u * control) * sigma
            y_part += g_tilde * y.detach()[0]
        averages[control] = (ones_part.abs().max() / steps, y_part.abs().max() / steps)
    assert averages[True][0] < 0.01 and averages[True][1] < 0.01
    assert averages[False][0] > 0.2 and averages[False][1] > 0.2


def test_running_estimates_converge_on_a_stationary_stream():
    torch.manual_seed(4)
    norm = OnlineNorm(2, alpha_f=0.99, affine=False, guard=None)
    for _ in range(100):
        norm(torch.randn(50, 2, 5) * torch.tensor([1.0, 3.0])[:, None] + 2)
    assert norm.m.tolist() == pytest.approx([2.0, 2.0], abs=0.3)
    assert norm.var.tolist() == pytest.approx([1.0, 9.0], rel=0.25)


def test_eval_mode_uses_the_running_estimates_without_updating_them():
    norm = _norm(2, alpha_f=0.5)
    norm(torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.double))
    m, var = norm.m.clone(), norm.var.clone()
    norm.eval()
    x = torch.tensor([[0.5, 0.5]], dtype=torch.double)
    assert torch.allclose(norm(x), (x - m) / torch.sqrt(var))
    assert torch.equal(norm.m, m) and torch.equal(norm.var, var)


def test_guards_and_affine():
    torch.manual_seed(5)
    x = torch.randn(3, 4) * 10
    scaled = OnlineNorm(4, guard="layer_scaling")(x)
    assert torch.allclose(scaled.pow(2).mean(1), torch.ones(3), atol=1e-3)
    clamped = OnlineNorm(4, guard="clamp", clamp=1.0)(x)
    assert clamped.abs().max() <= 1.0
    with pytest.raises(ValueError):
        OnlineNorm(4, alpha_f=1.0)
    with pytest.raises(ValueError):
        OnlineNorm(4, guard="bogus")
    with pytest.raises(ValueError):
        OnlineNorm(4)(torch.randn(3, 5))


def test_in_the_shared_models():
    torch.manual_seed(6)
    for net, x in ((MLP(8, 3, width=16, depth=2, norm=online_norm()), torch.randn(1, 8)),
                   (SmallCNN(1, 3, length=8, dims=2, channels=4, norm=online_norm(guard="clamp")),
                    torch.randn(2, 1, 8, 8))):
        net(x).sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
