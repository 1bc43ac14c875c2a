"""Tests for repro.normalization.weight_norm: weight normalization against torch's own, the paper's
gradient formulas (Salimans & Kingma 2016, Eq. 3-4), the data-dependent initialization, mean-only
batch norm, and the MLP / SmallCNN of repro.core.models built from these layers."""
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from repro.normalization import weight_norm as wn
from repro.normalization.weight_norm import (MeanOnlyBatchNorm, WeightNormConv, WeightNormLinear,
                                             copy_weights, data_dependent_init)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _copy_into_reference(ours, ref):
    """Give torch's weight_norm parametrization our g and v."""
    with torch.no_grad():
        g = ref.parametrizations.weight.original0
        g.copy_(ours.g.view_as(g))
        ref.parametrizations.weight.original1.copy_(ours.v)
        if ours.bias is not None:
            ref.bias.copy_(ours.bias)


# --- weight normalization against torch.nn.utils.parametrizations.weight_norm -------------------
def test_weight_norm_linear_matches_torch_forward_and_gradients():
    ours = WeightNormLinear(7, 5).double()
    with torch.no_grad():
        ours.g.uniform_(0.5, 2.0)
        ours.bias.normal_()
    ref = weight_norm(nn.Linear(7, 5).double(), dim=0)
    _copy_into_reference(ours, ref)
    x = torch.randn(11, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.weight, ref.weight)
    ours(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    torch.testing.assert_close(ours.v.grad, ref.parametrizations.weight.original1.grad)
    torch.testing.assert_close(ours.g.grad, ref.parametrizations.weight.original0.grad.view(-1))
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


@pytest.mark.parametrize("dims", [1, 2])
def test_weight_norm_conv_matches_torch(dims):
    ours = WeightNormConv(3, 4, 3, dims=dims, padding=1).double()
    with torch.no_grad():
        ours.g.uniform_(0.5, 2.0)
        ours.bias.normal_()
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(3, 4, 3, padding=1).double()
    ref = weight_norm(conv, dim=0)
    _copy_into_reference(ours, ref)
    x = torch.randn(2, 3, *([6] * dims), dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    ours(x).sum().backward()
    ref(x).sum().backward()
    torch.testing.assert_close(ours.v.grad, ref.parametrizations.weight.original1.grad)


def test_weight_has_norm_g_and_starts_as_paper_init():
    layer = WeightNormLinear(400, 300)
    assert abs(layer.v.std().item() - 0.05) < 0.002  # v ~ N(0, 0.05^2), Sec. 3
    with torch.no_grad():
        layer.g.uniform_(0.1, 3.0)
    torch.testing.assert_close(layer.weight.norm(dim=1), layer.g.detach())
    assert WeightNormLinear(3, 2, bias=False).bias is None


# --- the paper's gradient formulas (Sec. 2.1, Eq. 3 and 4) --------------------------------------
def _grads(layer, x, target):
    """Backpropagate a loss into v and g; return the gradient with respect to w = g v/||v||."""
    w = layer.weight
    loss = ((torch.tanh(nn.functional.linear(x, w, layer.bias)) - target) ** 2).sum()
    grad_w, = torch.autograd.grad(loss, w, retain_graph=True)
    loss.backward()
    return grad_w


def test_gradients_follow_equations_3_and_4():
    layer = WeightNormLinear(6, 4).double()
    with torch.no_grad():
        layer.g.uniform_(0.5, 2.0)
    x, target = torch.randn(9, 6, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    grad_w = _grads(layer, x, target)
    v, g = layer.v.detach(), layer.g.detach()
    v_norm = v.norm(dim=1, keepdim=True)
    grad_g = (grad_w * v).sum(1) / v_norm.squeeze(1)                                    # Eq. 3
    grad_v = g[:, None] / v_norm * grad_w - g[:, None] * grad_g[:, None] / v_norm ** 2 * v  # Eq. 3
    torch.testing.assert_close(layer.g.grad, grad_g)
    torch.testing.assert_close(layer.v.grad, grad_v)
    w = layer.weight.detach()
    eye = torch.eye(6, dtype=torch.float64)
    for i in range(4):  # Eq. 4: the gradient is g/||v|| times grad_w projected away from w
        m_w = eye - torch.outer(w[i], w[i]) / w[i].dot(w[i])
        torch.testing.assert_close(layer.v.grad[i], g[i] / v_norm[i] * m_w @ grad_w[i])


def test_gradient_is_orthogonal_to_v_and_sgd_grows_the_norm_of_v():
    layer = WeightNormLinear(10, 3).double()
    x, target = torch.randn(20, 10, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    _grads(layer, x, target)
    cos = (layer.v.grad * layer.v).sum(1) / (layer.v.grad.norm(dim=1) * layer.v.norm(dim=1))
    assert cos.abs().max().item() < 1e-12
    before = layer.v_norm().detach().clone()
    delta = -0.5 * layer.v.grad
    c = delta.norm(dim=1) / before
    torch.optim.SGD(layer.parameters(), lr=0.5).step()
    after = layer.v_norm().detach()
    torch.testing.assert_close(after, before * torch.sqrt(1 + c ** 2), rtol=1e-12, atol=0)
    assert (after > before).all()


# --- data-dependent initialization (Sec. 3, Eq. 5-6) --------------------------------------------
def test_layer_data_dependent_init_standardizes_and_uses_the_papers_formula():
    layer = WeightNormLinear(5, 8).double()
    x = torch.randn(64, 5, dtype=torch.float64) * 3 + 1
    with torch.no_grad():
        t = x @ (layer.v / layer.v.norm(dim=1, keepdim=True)).T
    out = layer.data_dependent_init(x)
    torch.testing.assert_close(layer.g.detach(), 1 / (t.std(0, correction=0) + 1e-8))
    torch.testing.assert_close(layer.bias.detach(), -t.mean(0) / (t.std(0, correction=0) + 1e-8))
    torch.testing.assert_close(out.mean(0), torch.zeros(8, dtype=torch.float64))
    torch.testing.assert_close(out.std(0, correction=0), torch.ones(8, dtype=torch.float64))


def test_layer_data_dependent_init_without_bias_sets_only_the_scale():
    layer = WeightNormConv(2, 3, 3, padding=1, bias=False).double()
    out = layer.data_dependent_init(torch.randn(16, 2, 10, dtype=torch.float64) + 2)
    torch.testing.assert_close(out.std((0, 2), correction=0), torch.ones(3, dtype=torch.float64))
    assert out.mean((0, 2)).abs().max() > 1e-3  # no bias to centre it


def _affine_outputs(model, x):
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o)) for m in model.modules()
             if isinstance(m, wn.AFFINE)]
    model(x)
    for h in hooks:
        h.remove()
    return outs


@pytest.mark.parametrize("norm", [None, "weight"])
def test_network_data_dependent_init_standardizes_every_layer(norm):
    net = wn.mlp(12, 5, width=16, depth=3, norm=norm).double()
    x = torch.randn(200, 12, dtype=torch.float64) * 4 - 2
    assert data_dependent_init(net, x) is net
    outs = _affine_outputs(net, x)
    assert len(outs) == 4
    for out in outs:
        torch.testing.assert_close(out.mean(0), torch.zeros(out.shape[1], dtype=torch.float64))
        torch.testing.assert_close(out.std(0, correction=0), torch.ones(out.shape[1], dtype=torch.float64))


def test_network_init_equals_the_layer_method_for_weight_norm():
    torch.manual_seed(3)
    a = wn.mlp(6, 3, width=8, depth=2, norm="weight").double()
    torch.manual_seed(3)
    b = wn.mlp(6, 3, width=8, depth=2, norm="weight").double()
    x = torch.randn(50, 6, dtype=torch.float64)
    data_dependent_init(a, x)
    h = x
    for layer in b.net:  # the paper's recipe, one layer after the other
        h = layer.data_dependent_init(h) if isinstance(layer, WeightNormLinear) else layer(h)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_cnn_data_dependent_init_standardizes_channels():
    net = wn.small_cnn(1, 4, 16, channels=6, norm="weight").double()
    x = torch.randn(40, 1, 16, dtype=torch.float64)
    data_dependent_init(net, x)
    conv_out = _affine_outputs(net, x)[0]
    torch.testing.assert_close(conv_out.mean((0, 2)), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(conv_out.std((0, 2), correction=0), torch.ones(6, dtype=torch.float64))


def test_data_dependent_init_needs_an_affine_layer():
    with pytest.raises(ValueError, match="no linear or convolution layer"):
        data_dependent_init(nn.Sequential(nn.ReLU()), torch.randn(3, 2))


# --- starting differently parameterized nets from the same weights ----------------------------
def test_copy_weights_gives_the_same_function_across_parameterizations():
    x = torch.randn(30, 12, dtype=torch.float64)
    weight_normed = wn.mlp(12, 4, width=16, depth=2, norm="weight").double()
    data_dependent_init(weight_normed, x)
    plain = copy_weights(weight_normed, wn.mlp(12, 4, width=16, depth=2, init="he").double())
    torch.testing.assert_close(plain(x), weight_normed(x))
    back = wn.mlp(12, 4, width=16, depth=2, norm="weight").double()
    v_norms = [m.v_norm().clone() for m in back.modules() if isinstance(m, WeightNormLinear)]
    copy_weights(plain, back)
    torch.testing.assert_close(back(x), weight_normed(x))
    for m, before in zip([m for m in back.modules() if isinstance(m, WeightNormLinear)], v_norms):
        torch.testing.assert_close(m.v_norm(), before)  # v keeps its scale, only turns


def test_copy_weights_into_cnn_and_mean_only_nets():
    x = torch.randn(8, 1, 12, dtype=torch.float64)
    plain = wn.small_cnn(1, 3, 12, channels=5).double()
    weight_normed = copy_weights(plain, wn.small_cnn(1, 3, 12, channels=5, norm="weight").double())
    torch.testing.assert_close(weight_normed(x), plain(x))
    mo = copy_weights(plain, wn.small_cnn(1, 3, 12, channels=5, norm="weight+mean-only").double())
    conv = mo.features[0]
    assert conv.bias is None  # dropped: the mean-only BN after it has its own
    torch.testing.assert_close(conv.weight, plain.features[0].weight)


def test_copy_weights_rejects_mismatched_nets():
    with pytest.raises(ValueError, match="src has 3 linear/convolution layers and dst 4"):
        copy_weights(wn.mlp(5, 2, depth=2), wn.mlp(5, 2, depth=3))
    with pytest.raises(ValueError, match="layer 0: weight shapes"):
        copy_weights(wn.mlp(5, 2, width=8), wn.mlp(5, 2, width=9))


# --- mean-only batch normalization (Sec. 4, Eq. 7-8) --------------------------------------------
def test_mean_only_batch_norm_centres_and_keeps_running_mean_like_torch():
    mo, bn = MeanOnlyBatchNorm(4), nn.BatchNorm1d(4)
    with torch.no_grad():
        mo.bias.copy_(torch.arange(4.0))
    x = torch.randn(32, 4) * 2 + 3
    out = mo(x)
    torch.testing.assert_close(out, x - x.mean(0) + torch.arange(4.0))
    bn(x)
    torch.testing.assert_close(mo.running_mean, bn.running_mean)
    mo.eval()
    torch.testing.assert_close(mo(x), x - bn.running_mean + torch.arange(4.0))


def test_mean_only_batch_norm_centres_the_gradient():
    mo = MeanOnlyBatchNorm(3)
    x = torch.randn(16, 3, 5, requires_grad=True)  # (N, C, L): statistics over N and L
    out = mo(x)
    torch.testing.assert_close(out.mean((0, 2)), torch.zeros(3), atol=1e-6, rtol=0)
    (out ** 3).sum().backward()
    # Eq. 8: the gradient reaching t is the incoming gradient minus its minibatch mean
    torch.testing.assert_close(x.grad.mean((0, 2)), torch.zeros(3), atol=1e-5, rtol=0)


def test_mean_only_batch_norm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="momentum == 0"):
        MeanOnlyBatchNorm(3, momentum=0)
    with pytest.raises(ValueError, match="dimension 1 must have 3 units"):
        MeanOnlyBatchNorm(3)(torch.randn(5, 4))


# --- the builders ----------------------------------------------------------------------------
@pytest.mark.parametrize("norm", wn.NORMS)
def test_mlp_builds_every_norm(norm):
    net = wn.mlp(10, 3, width=8, depth=2, norm=norm)
    assert net(torch.randn(4, 10)).shape == (4, 3)
    kinds = {type(m) for m in net.modules()}
    assert (WeightNormLinear in kinds) == (norm in ("weight", "weight+mean-only"))
    assert (MeanOnlyBatchNorm in kinds) == (norm in ("mean-only", "weight+mean-only"))
    assert (nn.BatchNorm1d in kinds) == (norm == "batch")


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("norm", wn.CNN_NORMS)
def test_small_cnn_builds_every_norm(dims, norm):
    net = wn.small_cnn(2, 5, 8, dims=dims, channels=4, norm=norm)
    x = torch.randn(3, 2, *([8] * dims))
    assert net(x).shape == (3, 5)
    kinds = {type(m) for m in net.modules()}
    assert (WeightNormConv in kinds) == (norm in ("weight", "weight+mean-only"))


def test_the_builders_check_their_arguments():
    with pytest.raises(ValueError, match="weight-normalized layers draw v"):
        wn.mlp(3, 2, norm="weight", init="he")
    with pytest.raises(ValueError, match="norm == 'group'"):
        wn.mlp(3, 2, norm="group")
    with pytest.raises(ValueError, match="norm == 'layer'"):
        wn.small_cnn(1, 3, 12, norm="layer")
    with pytest.raises(ValueError, match="dims == 3"):
        WeightNormConv(1, 2, 3, dims=3)
    with pytest.raises(ValueError, match="v_std == 0"):
        WeightNormLinear(2, 2, v_std=0)


def test_weight_norm_parameters_count_g_and_v():
    from repro.core.models import count_parameters
    assert count_parameters(WeightNormLinear(3, 2)) == 3 * 2 + 2 + 2

