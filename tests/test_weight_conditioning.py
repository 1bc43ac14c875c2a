import math

import pytest
import torch
from torch import nn

from repro.core import models
from repro.normalization import weight_conditioning as wc


def _kappa(m):
    s = torch.linalg.svdvals(m.double())
    return float(s[0] / s[-1])


def test_equilibrate_gives_unit_rows_and_is_E_times_W():
    w = torch.randn(7, 5) * torch.arange(1, 8).view(-1, 1)
    ew = wc.equilibrate(w)
    assert torch.allclose(ew.norm(dim=1), torch.ones(7))
    E = torch.diag(1 / w.norm(dim=1))
    assert torch.allclose(ew, E @ w, atol=1e-6)
    # a convolution's kernel: each output channel's flattened kernel has unit norm
    k = torch.randn(4, 3, 3, 3)
    assert torch.allclose(wc.equilibrate(k).flatten(1).norm(dim=1), torch.ones(4))


def test_standardize_rows_have_zero_mean_unit_variance():
    w = torch.randn(6, 20) * 3 + 2
    s = wc.standardize(w, eps=0.0)
    assert torch.allclose(s.mean(dim=1), torch.zeros(6), atol=1e-5)
    assert torch.allclose(s.std(dim=1, correction=0), torch.ones(6), atol=1e-5)


def test_equilibration_undoes_any_row_scaling_and_meets_van_der_sluis():
    # E(DW) W-part is invariant to a positive row scaling D, and kappa(EW) <= sqrt(m) kappa(DW)
    # for every positive diagonal D (van der Sluis, 1969)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        m, n = 12, 8
        w = torch.randn(m, n, generator=gen, dtype=torch.float64)
        d = torch.exp(2 * torch.randn(m, 1, generator=gen, dtype=torch.float64))
        assert torch.allclose(wc.equilibrate(d * w), wc.equilibrate(w))
        assert _kappa(wc.equilibrate(w)) <= math.sqrt(m) * _kappa(d * w) * (1 + 1e-9)


def test_equilibration_narrows_the_gap_of_row_scaled_matrices():
    # the paper's direction: with rows of spread scales, the gap narrows
    gen = torch.Generator().manual_seed(1)
    for _ in range(300):
        q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
        w = torch.exp(1.5 * torch.randn(16, 1, generator=gen, dtype=torch.float64)) * q
        assert _kappa(wc.equilibrate(w)) <= _kappa(w) * (1 + 1e-9)
        assert wc.condition_number(wc.equilibrate(w)) == pytest.approx(1.0, rel=1e-6)


def test_equilibration_does_not_always_narrow_the_gap():
    # "kappa(EW) <= kappa(W)" is not a theorem for every W: among i.i.d. Gaussian matrices (rows of
    # similar norms) some get a larger condition number after equilibration
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(8, 8, generator=gen, dtype=torch.float64) for _ in range(200)]
    assert any(_kappa(wc.equilibrate(w)) > _kappa(w) for w in ws)


def test_condition_number_helpers():
    w = torch.diag(torch.tensor([4.0, 2.0, 1.0]))
    assert wc.condition_number(w) == pytest.approx(4.0)
    assert torch.allclose(wc.singular_values(w), torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64))
    assert wc.condition_number(torch.zeros(2, 2)) == float("inf")


@pytest.mark.parametrize("kind", ["conditioned", "standardized"])
def test_linear_layer_matches_functional_and_passes_gradients(kind):
    torch.manual_seed(0)
    layer = wc.linear_factory(kind)(5, 3)
    x = torch.randn(4, 5)
    w = wc.TRANSFORMS[kind](layer.weight)
    assert torch.allclose(layer(x), nn.functional.linear(x, w, layer.bias), atol=1e-6)
    # gradients through the reparameterization, against finite differences
    wd = layer.weight.detach().double().requires_grad_()
    f = lambda v: nn.functional.linear(x.double(), wc.TRANSFORMS[kind](v), layer.bias.double()).pow(2).sum()
    assert torch.autograd.gradcheck(f, (wd,))
    layer(x).sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_conditioned_gradient_is_orthogonal_to_each_row():
    # E W is invariant to each row's scale, so the gradient of any loss is orthogonal to each row
    torch.manual_seed(0)
    layer = wc.ConditionedLinear(6, 4)
    layer(torch.randn(8, 6)).pow(2).sum().backward()
    g, w = layer.weight.grad, layer.weight.detach()
    cosine = (g * w).sum(1) / (g.norm(dim=1) * w.norm(dim=1))
    assert cosine.abs().max() < 1e-5


@pytest.mark.parametrize("dims", [1, 2])
def test_conv_layers(dims):
    torch.manual_seed(0)
    cls = wc.conv_factory("conditioned", dims)
    conv = cls(3, 5, 3, padding=1)
    x = torch.randn(2, 3, *([8] * dims))
    ref = (nn.functional.conv1d if dims == 1 else nn.functional.conv2d)(
        x, wc.equilibrate(conv.weight), conv.bias, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-6)


def test_drop_in_for_shared_models():
    torch.manual_seed(0)
    mlp = models.MLP(10, 3, width=8, depth=2, linear=wc.ConditionedLinear)
    cnn = models.SmallCNN(1, 10, 8, dims=2, channels=4, conv=wc.conv_factory("conditioned"),
                          linear=wc.linear_factory("standardized"))
    assert mlp(torch.randn(5, 10)).shape == (5, 3)
    assert cnn(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    ws = wc.effective_weights(mlp)
    assert len(ws) == 3 and all(torch.allclose(w.norm(dim=1), torch.ones(w.shape[0])) for w in ws)


def test_top_hessian_eigenvalue_of_a_quadratic():
    # loss = 0.5 * sum(a_i * w_i^2) through a bias-free linear layer on a one-hot input
    a = torch.tensor([3.0, 1.0, 0.5])
    model = nn.Linear(1, 3, bias=False)
    loss = lambda out, y: 0.5 * (a * out[0] ** 2).sum()
    eig = wc.top_hessian_eigenvalue(model, loss, (torch.ones(1, 1), None), iters=100)
    assert eig == pytest.approx(3.0, rel=1e-4)
