"""Tests of repro.normalization.bounded_tanh: DyT and BHyT against their one-line equations."""
import math

import pytest
import torch
from torch import nn

from repro.core.transformer import TinyTransformer
from repro.normalization import bounded_tanh


def test_dynamic_tanh_is_its_equation():
    torch.manual_seed(0)
    layer = bounded_tanh.DynamicTanh(6, alpha=0.7).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(6))
        layer.bias.copy_(torch.randn(6))
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    expected = layer.weight * torch.tanh(0.7 * x) + layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_bounded_tanh_is_its_equation():
    torch.manual_seed(0)
    layer = bounded_tanh.BoundedTanh(8, lam=3.0, kappa=5.0, eps=1e-6).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(8))
    x = torch.randn(4, 7, 8, dtype=torch.float64)
    rms = (x.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
    expected = layer.weight * torch.tanh(3.0 / 5.0 * x / rms)
    torch.testing.assert_close(layer(x), expected)


def test_bounded_tanh_is_scale_invariant_and_bounded():
    layer = bounded_tanh.BoundedTanh(16, eps=1e-12).double()
    x = torch.randn(10, 16, dtype=torch.float64)
    torch.testing.assert_close(layer(1e6 * x), layer(x), rtol=1e-6, atol=1e-9)
    arg = layer.argument(1e3 * x)
    torch.testing.assert_close(arg.pow(2).mean(-1).sqrt(), torch.full((10,), 0.2, dtype=torch.float64))
    assert layer(1e12 * x).abs().max() <= 1.0


def test_bounded_tanh_linear_regime_is_scaled_rmsnorm():
    # for a tiny lam/kappa, tanh(u) ~ u: BHyT is RMSNorm (no bias) times lam/kappa
    layer = bounded_tanh.BoundedTanh(12, lam=1e-4, kappa=1.0, eps=0.0).double()
    x = torch.randn(5, 12, dtype=torch.float64)
    rms_norm = x / x.pow(2).mean(-1, keepdim=True).sqrt()
    torch.testing.assert_close(layer(x) / 1e-4, rms_norm, rtol=1e-7, atol=1e-7)


def test_parameters_train_and_checks():
    layer = bounded_tanh.BoundedTanh(4)
    assert layer.lam.requires_grad and layer.weight.requires_grad
    layer(torch.randn(3, 4)).sum().backward()
    assert layer.lam.grad is not None and math.isfinite(layer.lam.grad.item())
    with pytest.raises(ValueError):
        bounded_tanh.BoundedTanh(4, kappa=0.0)
    with pytest.raises(ValueError):
        bounded_tanh.DynamicTanh(4, alpha=-1.0)


@pytest.mark.parametrize("factory", [bounded_tanh.bounded_tanh(), bounded_tanh.dynamic_tanh()])
def test_factories_plug_into_the_transformer(factory):
    torch.manual_seed(0)
    model = TinyTransformer(8, context=8, n_layer=2, norm=factory)
    assert isinstance(model.blocks[0].norm1, (bounded_tanh.BoundedTanh, bounded_tanh.DynamicTanh))
    logits = model(torch.randint(0, 8, (2, 8)))
    assert logits.shape == (2, 8, 8) and torch.isfinite(logits).all()
    assert not isinstance(model.final_norm, nn.LayerNorm)
