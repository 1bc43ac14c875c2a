"""Tests for repro.normalization.depth_limits: batch scaling against torch's BatchNorm1d, the
weight inits, the activation shaping, the isometry gap's values on known batches."""
import math

import pytest
import torch
from torch import nn

from repro.normalization import depth_limits as dl


def test_batch_scale_gives_columns_of_norm_sqrt_n():
    x = torch.randn(16, 8, dtype=torch.float64) * 3 + 1
    y = dl.BatchScale(8)(x)
    assert torch.allclose(y.norm(dim=0), torch.full((8,), math.sqrt(16), dtype=torch.float64))


def test_batch_scale_is_batchnorm_on_centered_columns():
    x = torch.randn(32, 5, dtype=torch.float64)
    x = x - x.mean(0)
    bn = nn.BatchNorm1d(5, affine=False, eps=1e-10).double().train()
    assert torch.allclose(dl.BatchScale(5, eps=1e-10)(x), bn(x), atol=1e-12)


def test_batch_scale_keeps_the_mean_direction():
    # without mean reduction, a constant shift is not removed (unlike BatchNorm1d)
    x = torch.ones(4, 3, dtype=torch.float64)
    assert torch.allclose(dl.BatchScale(3)(x), x)


@pytest.mark.parametrize("weights", ["orthogonal", "gaussian"])
def test_deep_mlp_layers_and_init(weights):
    torch.manual_seed(0)
    model = dl.deep_mlp(10, 3, width=20, depth=4, weights=weights).double()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5 and all(m.bias is None for m in linears[:-1])
    assert sum(isinstance(m, dl.BatchScale) for m in model.modules()) == 4
    w = linears[1].weight.detach()
    if weights == "orthogonal":
        assert torch.allclose(w @ w.T, torch.eye(20, dtype=torch.float64), atol=1e-6)
    else:
        assert 0.5 < w.var().item() * 20 < 1.5
    assert model(torch.randn(7, 10, dtype=torch.float64)).shape == (7, 3)


def test_shaping_scales_each_layer_by_its_gain():
    model = dl.deep_mlp(4, 2, width=6, depth=3, activation="tanh", shaping=-0.4)
    shaped = [m for m in model.modules() if isinstance(m, dl.ShapedActivation)]
    assert [m.gain for m in shaped] == pytest.approx([1.0, 2 ** -0.4, 3 ** -0.4])
    x = torch.randn(5, 6)
    assert torch.allclose(shaped[2](x), torch.tanh(3 ** -0.4 * x))


def test_isometry_gap_values():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert dl.isometry_gap(q) == pytest.approx(0.0, abs=1e-12)
    # eigenvalues 1 and 4 of the Gram matrix: arithmetic mean 2.5, geometric 2
    h = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert dl.isometry_gap(h) == pytest.approx(math.log(2.5 / 2.0))
    assert dl.isometry_gap(torch.ones(3, 4)) == math.inf


def test_unknown_init_is_rejected():
    with pytest.raises(ValueError):
        dl.init_weights(nn.Linear(2, 2), "uniform")
