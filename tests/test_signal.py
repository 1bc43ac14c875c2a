"""Tests for repro.normalization.signal: activation and gradient statistics against direct
computations, Jacobian spectra against linear algebra and autograd, the isometry's extremes."""
import math

import pytest
import torch
from torch import nn

from repro.normalization import signal


def test_activation_statistics_match_a_direct_computation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.ReLU())
    x = torch.randn(50, 5)
    stats = signal.activation_statistics(net, x)
    h1 = net[1](net[0](x)).double()
    h2 = net[3](net[2](h1.float())).double()
    assert list(stats.layer) == [1, 2]
    assert stats["mean"].tolist() == pytest.approx([h1.mean().item(), h2.mean().item()])
    assert stats["var"].tolist() == pytest.approx([h1.var(unbiased=False).item(),
                                                   h2.var(unbiased=False).item()])
    assert stats["unit_var"][0] == pytest.approx(h1.var(0, unbiased=False).mean().item())
    assert not net[1]._forward_hooks and not net[3]._forward_hooks


def test_activation_statistics_in_training_mode_leave_the_model_alone():
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
    net.train()
    x = torch.randn(64, 4) * 3 + 2
    stats = signal.activation_statistics(net, x, training=True)
    # batch statistics: the pre-activations are standardized, so the ReLU mean is 1/sqrt(2 pi)
    assert stats["mean"][0] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=0.15)
    assert torch.equal(net[1].running_mean, torch.zeros(6)) and net.training


def test_activation_statistics_need_an_activation_module():
    with pytest.raises(ValueError, match="has no module of types"):
        signal.activation_statistics(nn.Sequential(nn.Linear(2, 2)), torch.randn(3, 2))


def test_gradient_statistics_are_the_gradients_of_the_loss_at_each_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x, y = torch.randn(8, 4), torch.randn(8, 3)

    def loss_fn(model, batch):
        return ((model(batch[0]) - batch[1]) ** 2).sum() / 2

    stats = signal.gradient_statistics(net, loss_fn, (x, y))
    assert list(stats.module) == ["Linear", "Linear"] and list(stats.layer) == [1, 2]
    # d loss / d output of the last layer is the residual; its weight's gradient residual^T h
    h = net[1](net[0](x))
    residual = net[2](h) - y
    assert stats.grad_norm[1] == pytest.approx(residual.norm().item(), rel=1e-5)
    assert stats.weight_grad_norm[1] == pytest.approx((residual.T @ h).norm().item(), rel=1e-5)
    # the first layer's: back through the read-out and the ReLU's mask
    first = (residual @ net[2].weight) * (h > 0)
    assert stats.grad_norm[0] == pytest.approx(first.norm().item(), rel=1e-5)
    assert all(p.grad is None for p in net.parameters()) and not net[0]._forward_hooks


def test_gradient_statistics_need_a_layer_of_the_types():
    with pytest.raises(ValueError, match="has no module of types"):
        signal.gradient_statistics(nn.Sequential(nn.ReLU()), lambda m, b: m(b).sum(), torch.randn(2, 2))


def test_the_jacobian_spectrum_of_a_linear_map_is_its_singular_values():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False)
    svals = signal.jacobian_singular_values(layer, torch.randn(3, 6))
    assert svals.shape == (3, 4)
    assert torch.allclose(svals, torch.linalg.svdvals(layer.weight.detach()).expand(3, 4), atol=1e-6)
    assert torch.allclose(signal.condition_number(svals), svals[:, 0] / svals[:, -1])


def test_the_jacobian_spectrum_matches_autograd_for_each_example():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 5))
    x = torch.randn(4, 5)
    svals = signal.jacobian_singular_values(net, x)
    for i in range(4):
        J = torch.autograd.functional.jacobian(lambda v: net(v), x[i])
        assert torch.allclose(svals[i], torch.linalg.svdvals(J), atol=1e-5)


def test_isometry_is_one_for_orthogonal_equal_rows_and_falls_otherwise():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert signal.isometry(3.0 * q[:4]) == pytest.approx(1.0)
    # unequal norms: eigenvalues 1, 1, 1, 4 give 4^(1/4) / (7 / 4)
    rows = q[:4].clone()
    rows[0] *= 2
    assert signal.isometry(rows) == pytest.approx(4 ** 0.25 / 1.75)
    # a collapsed batch (two equal rows) and fewer dimensions than rows: 0
    assert signal.isometry(torch.stack([q[0], q[0], q[1]])) == pytest.approx(0.0, abs=1e-6)
    assert signal.isometry(torch.randn(5, 3)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        signal.isometry(torch.randn(1, 3))
