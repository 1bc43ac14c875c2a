"""Tests of repro.normalization.derf: Derf and the point-wise variants against their equations."""
import math

import pytest
import torch
from torch import nn

from repro.core.transformer import TinyTransformer
from repro.normalization import bounded_tanh, derf


def _randomized(layer, features, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(features, generator=g, dtype=torch.float64))
        layer.bias.copy_(torch.randn(features, generator=g, dtype=torch.float64))
    return layer


def test_derf_is_its_equation():
    layer = _randomized(derf.Derf(6, alpha=0.75, shift=-0.25).double(), 6)
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    expected = layer.weight * torch.special.erf(0.75 * x - 0.25) + layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_derf_initial_values_and_shapes_match_dyt():
    layer, dyt = derf.Derf(7), bounded_tanh.DynamicTanh(7)
    assert layer.alpha.item() == 0.5 and layer.shift.item() == 0.0
    torch.testing.assert_close(layer.weight, torch.ones(7))
    torch.testing.assert_close(layer.bias, torch.zeros(7))
    shapes = {n: p.shape for n, p in layer.named_parameters()}
    dyt_shapes = {n: p.shape for n, p in dyt.named_parameters()}
    assert shapes == {**dyt_shapes, "shift": torch.Size([])}
    assert all(p.requires_grad for p in layer.parameters())


def test_derf_gradients_match_autograd_of_the_formula():
    layer = _randomized(derf.Derf(5, alpha=0.6, shift=0.2).double(), 5, seed=1)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 5, dtype=torch.float64)
    (layer(x) * upstream).sum().backward()
    # the formula with fresh leaves of the same values
    a = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    ((w * torch.special.erf(a * x2 + s) + b) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.alpha.grad, a.grad)
    torch.testing.assert_close(layer.shift.grad, s.grad)
    torch.testing.assert_close(layer.weight.grad, w.grad)
    torch.testing.assert_close(layer.bias.grad, b.grad)
    # and the closed form d erf(u)/du = 2/sqrt(pi) exp(-u^2)
    u = 0.6 * x.detach() + 0.2
    torch.testing.assert_close(x.grad, upstream * w.detach() * 0.6 * 2 / math.sqrt(math.pi)
                               * torch.exp(-u ** 2))
    assert torch.autograd.gradcheck(layer, (x.detach().clone().requires_grad_(),))


def test_derf_is_bounded_and_odd_without_shift():
    layer = derf.Derf(8).double()
    x = torch.randn(10, 8, dtype=torch.float64)
    assert layer(1e12 * x).abs().max() <= 1.0
    torch.testing.assert_close(layer(-x), -layer(x))


def test_pointwise_reduces_to_derf_and_its_variants():
    x = torch.randn(3, 6, dtype=torch.float64)
    frozen = derf.Pointwise(6, torch.erf, alpha=0.5).double()
    torch.testing.assert_close(frozen(x), derf.Derf(6).double()(x))
    shifted = derf.Pointwise(6, torch.erf, alpha=0.5, shift=2.0, offset=0.5).double()
    torch.testing.assert_close(shifted(x), torch.erf(0.5 * x + 2.0) + 0.5)
    identity = derf.Pointwise(6, lambda u: u, alpha=0.5).double()
    torch.testing.assert_close(identity(x), 0.5 * x)
    assert [n for n, _ in shifted.named_parameters()] == ["alpha", "weight", "bias"]


def test_factories_build_the_tiny_transformer():
    torch.manual_seed(0)
    for factory, kind in [(derf.derf(alpha=0.5), derf.Derf),
                          (derf.pointwise(torch.erf, shift=2.0), derf.Pointwise)]:
        model = TinyTransformer(8, context=16, norm=factory)
        layers = [m for m in model.modules() if isinstance(m, kind)]
        assert len(layers) == 2 * 2 + 1  # two per block and the final one
        assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
        ids = torch.randint(0, 8, (2, 16))
        logits = model(ids)
        assert logits.shape == (2, 16, 8) and torch.isfinite(logits).all()
        logits.sum().backward()
        assert all(m.alpha.grad is not None for m in layers)


def test_checks():
    with pytest.raises(ValueError):
        derf.Derf(4, alpha=0.0)
    with pytest.raises(ValueError):
        derf.derf(alpha=-1.0)
    with pytest.raises(TypeError):
        derf.Pointwise(4, "erf")
