"""Tests for repro.core.models: the MLP and SmallCNN builders and their layer factories, the
initializations, layer outputs and vectorized ensembles."""
import math

import pytest
import torch
from torch import nn

from repro.core.models import (MLP, SmallCNN, count_parameters, init_linear,
                               layer_outputs)


def test_mlp_keeps_the_selu_notebook_signature():
    net = MLP(20, 4, width=32, depth=3, activation="selu", norm=None, init="lecun", dropout=0.1)
    assert sum(isinstance(m, nn.AlphaDropout) for m in net.modules()) == 3
    first = net.net[0]
    assert abs(first.weight.std().item() - 1 / math.sqrt(20)) < 0.03
    assert torch.all(first.bias == 0)
    relu = MLP(20, 4, activation="relu", norm="batch", init="he", dropout=0.1)
    assert sum(isinstance(m, nn.Dropout) for m in relu.modules()) == 2
    assert MLP(20, 4, activation="tanh").net[1].__class__ is nn.Tanh


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="norm == 'group'"):
        MLP(3, 2, norm="group")
    with pytest.raises(ValueError, match="activation == 'swish'"):
        MLP(3, 2, activation="swish")
    with pytest.raises(ValueError, match="init == 'orthogonal'"):
        MLP(3, 2, init="orthogonal")
    with pytest.raises(ValueError, match="depth == 0"):
        MLP(3, 2, depth=0)
    with pytest.raises(ValueError, match="init applies to nn.Linear layers only"):
        MLP(3, 2, init="he", linear=nn.Linear)
    with pytest.raises(ValueError, match="dropout == 1"):
        MLP(3, 2, dropout=1.0)


def test_init_linear_schemes():
    layer = nn.Linear(500, 400)
    init_linear(layer, "he")
    assert abs(layer.weight.std().item() - math.sqrt(2 / 500)) < 0.002
    init_linear(layer, "xavier")
    assert abs(layer.weight.std().item() - math.sqrt(2 / 900)) < 0.002
    with pytest.raises(ValueError, match="init == 'zeros'"):
        init_linear(layer, "zeros")


def test_small_cnn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dims == 3"):
        SmallCNN(1, 3, 12, dims=3)
    with pytest.raises(ValueError, match="norm == 'layer'"):
        SmallCNN(1, 3, 12, norm="layer")
    with pytest.raises(ValueError, match="length == 3"):
        SmallCNN(1, 3, 3)


def test_count_parameters():
    assert count_parameters(nn.Linear(3, 2)) == 8
    assert count_parameters(MLP(3, 2, width=4, depth=1)) == 3 * 4 + 4 + 4 * 2 + 2


def test_layer_outputs_returns_each_affine_output_in_order_and_removes_its_hooks():
    torch.manual_seed(0)
    net = MLP(3, 2, width=5, depth=2)
    x = torch.randn(4, 3)
    outs = layer_outputs(net, x)
    assert [o.shape[1] for o in outs] == [5, 5, 2]
    torch.testing.assert_close(outs[-1], net(x).detach())
    assert not any(m._forward_hooks for m in net.modules())
    with pytest.raises(ValueError, match="has no module of types Conv2d"):
        layer_outputs(net, x, (torch.nn.Conv2d,))


def test_layer_factories_replace_the_plain_layers():
    made = []

    def linear(d_in, d_out, bias):
        made.append((d_in, d_out, bias))
        return nn.Linear(d_in, d_out, bias=bias)

    net = MLP(3, 2, width=4, depth=2, norm=nn.LayerNorm, linear=linear, hidden_bias=False)
    assert made == [(3, 4, False), (4, 4, False), (4, 2, True)]
    assert sum(isinstance(m, nn.LayerNorm) for m in net.modules()) == 2
    cnn = SmallCNN(1, 3, 8, channels=4, norm=nn.BatchNorm1d, conv=nn.Conv1d, linear=nn.Linear, bias=False)
    assert cnn.features[0].bias is None and isinstance(cnn.features[1], nn.BatchNorm1d)
    assert cnn(torch.randn(2, 1, 8)).shape == (2, 3)


@pytest.mark.parametrize("norm, layer", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm), (None, None)])
def test_named_norms(norm, layer):
    kinds = {type(m) for m in MLP(5, 2, width=4, norm=norm).modules()}
    assert (layer in kinds) if layer else not kinds & {nn.BatchNorm1d, nn.LayerNorm}
