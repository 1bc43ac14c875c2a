import math
import re

import pytest
import torch
from torch import nn

from repro.optimization import curvature

D = torch.float64


def _net_and_loss(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(D)
    x, y = torch.randn(16, 3, dtype=D), torch.randn(16, 1, dtype=D)
    params = list(net.parameters())
    shapes = [p.shape for p in params]

    def loss_of_flat(flat):   # the same loss as a function of all parameters in one vector
        chunks = torch.split(flat, [s.numel() for s in shapes])
        w1, b1, w2, b2 = (c.reshape(s) for c, s in zip(chunks, shapes))
        return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - y) ** 2).mean()

    flat = torch.cat([p.detach().flatten() for p in params])
    grads = torch.autograd.grad(loss_of_flat(torch.cat([p.flatten() for p in params])), params,
                                create_graph=True)
    return params, grads, torch.func.hessian(loss_of_flat)(flat)


def test_hutchinson_is_unbiased_and_its_error_shrinks_like_one_over_sqrt_n():
    params, grads, H = _net_and_loss()
    exact = torch.diagonal(H)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([torch.cat([d.flatten() for d in curvature.hutchinson_diagonal(
        grads, params, 1, generator)]) for _ in range(4096)])          # (4096, P)
    # one sample (Rademacher z): E||z*Hz - diag H||^2 = sum_{i != j} H_ij^2; a mean of n: 1/n of it
    variance = float((H ** 2).sum() - (exact ** 2).sum())
    for n in (1, 4, 16):
        means = draws.reshape(4096 // n, n, -1).mean(1)
        mse = float(((means - exact) ** 2).sum(1).mean())
        # the mean over 4096/n blocks of a positive variable: within 4 standard errors (n=16: ~25%)
        assert mse == pytest.approx(variance / n, rel=4 * math.sqrt(2 * n / 4096) + 0.05), n
    overall = draws.mean(0)
    assert float(((overall - exact) ** 2).sum()) < 4 * variance / 4096


def test_more_samples_average_the_same_draws():
    params, grads, _ = _net_and_loss()
    many = curvature.hutchinson_diagonal(grads, params, 5, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    singles = [curvature.hutchinson_diagonal(grads, params, 1, g) for _ in range(5)]
    for i, m in enumerate(many):
        mean = torch.stack([s[i] for s in singles]).mean(0)
        torch.testing.assert_close(m, mean, rtol=1e-13, atol=1e-15)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    w = torch.tensor([0.3, -1.2, 2.0], dtype=D, requires_grad=True)
    c = torch.tensor([1.0, 4.0, 0.5], dtype=D)
    loss = (c * w ** 2).sum() + torch.exp(w).sum() + torch.sin(w).sum()
    (g,) = torch.autograd.grad(loss, [w], create_graph=True)
    (d,) = curvature.hutchinson_diagonal([g], [w], 1, torch.Generator().manual_seed(1))
    exact = (2 * c + torch.exp(w) - torch.sin(w)).detach()
    torch.testing.assert_close(d, exact, rtol=1e-14, atol=0)


def test_hessian_vector_products_need_a_graph():
    w = torch.ones(2, dtype=D, requires_grad=True)
    (w ** 2).sum().backward()
    with pytest.raises(RuntimeError, match="create_graph"):
        curvature.hutchinson_diagonal([w.grad], [w])
    with pytest.raises(ValueError, match="samples"):
        curvature.hutchinson_diagonal([w.grad], [w], samples=0)


def test_rademacher_entries_and_reproducibility():
    like = torch.empty(1000, dtype=D)
    z = curvature.rademacher(like, torch.Generator().manual_seed(5))
    assert set(z.tolist()) == {-1.0, 1.0} and z.dtype == D and abs(float(z.mean())) < 0.15
    assert torch.equal(z, curvature.rademacher(like, torch.Generator().manual_seed(5)))


def test_spatial_average_by_hand():
    # a conv weight (out=2, in=1, 2x2 kernel): each kernel's |d| is averaged over its 4 positions
    d = torch.tensor([[[[1.0, -3.0], [2.0, -2.0]]], [[[0.0, 4.0], [-4.0, 8.0]]]])
    expected = torch.tensor([2.0, 4.0]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2)
    assert torch.equal(curvature.spatial_average(d), expected)
    # a 1-D conv weight (out, in, k): averaged over the k positions
    kernel_1d = torch.tensor([[[1.0, -2.0, 3.0]]])
    assert torch.equal(curvature.spatial_average(kernel_1d), torch.full((1, 1, 3), 2.0))
    # biases and linear weights: |d| only
    m = torch.tensor([[1.0, -2.0], [-3.0, 4.0]])
    assert torch.equal(curvature.spatial_average(m), m.abs())
    bias = torch.tensor([-1.0, 2.0])
    assert torch.equal(curvature.spatial_average(bias), bias.abs())


def _captured_layer(batch, seed=0):
    torch.manual_seed(seed)
    layer = nn.Linear(3, 2).to(D)
    capture = curvature.LinearCapture(layer)
    x, y = torch.randn(batch, 3, dtype=D), torch.randn(batch, 2, dtype=D)
    out = layer(x)
    loss = (torch.tanh(out - y) ** 2).sum(1).mean()
    per_example = torch.autograd.grad(loss * batch, out, retain_graph=True)[0]   # dl_n/ds_n, (B, 2)
    loss.backward()
    return layer, capture, x, per_example


def test_kronecker_factors_match_an_explicit_computation():
    layer, capture, x, g = _captured_layer(batch=5)
    A, G = capture.factors(layer)
    a_bar = [torch.cat([xn, torch.ones(1, dtype=D)]) for xn in x]
    torch.testing.assert_close(A, sum(torch.outer(a, a) for a in a_bar) / 5, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(G, sum(torch.outer(gn, gn) for gn in g) / 5, rtol=1e-13, atol=1e-15)
    diag_A, diag_G = capture.diagonals(layer)
    torch.testing.assert_close(diag_A, torch.diagonal(A), rtol=1e-14, atol=0)
    torch.testing.assert_close(diag_G, torch.diagonal(G), rtol=1e-14, atol=0)
    # the batch's gradient is the mean of the per-example g a_bar^T
    grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)
    torch.testing.assert_close(grad, sum(torch.outer(gn, a) for gn, a in zip(g, a_bar)) / 5)


def test_one_example_kronecker_product_is_the_exact_fisher_block():
    layer, capture, _, _ = _captured_layer(batch=1)
    A, G = capture.factors(layer)
    grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)   # g a_bar^T, (2, 4)
    vec = grad.T.reshape(-1)                                              # stacks the columns
    torch.testing.assert_close(torch.kron(A, G), torch.outer(vec, vec), rtol=1e-13, atol=1e-15)


def test_kfac_precondition_solves_the_damped_kronecker_system():
    layer, capture, _, _ = _captured_layer(batch=4)
    A, G = capture.factors(layer)
    grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)
    damping = 0.1
    X = curvature.kfac_precondition(grad, A, G, damping)
    K = torch.kron(A + damping * torch.eye(4, dtype=D), G + damping * torch.eye(2, dtype=D))
    vec = lambda M: M.T.reshape(-1)  # noqa: E731  (stacks the columns)
    torch.testing.assert_close(vec(X), torch.linalg.solve(K, vec(grad)), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="damping"):
        curvature.kfac_precondition(grad, A, G, -1.0)


def test_capture_ignores_evaluation_passes_and_refuses_sequences():
    layer, capture, x, _ = _captured_layer(batch=5)
    with torch.no_grad():
        layer(torch.randn(7, 3, dtype=D))
    assert torch.equal(capture.inputs[layer], x) and capture.captured(layer)
    with pytest.raises(ValueError, match="batch, features"):
        layer(torch.randn(2, 5, 3, dtype=D))
    capture.remove()
    layer(torch.randn(7, 3, dtype=D))
    assert capture.inputs[layer].shape[0] == 5


def test_every_public_name_says_where_it_is_introduced():
    slugs = {"adahessian", "adafisher"}
    public = [obj for name, obj in vars(curvature).items()
              if not name.startswith("_") and callable(obj)
              and getattr(obj, "__module__", None) == curvature.__name__]
    assert public
    for obj in public:
        doc = (obj.__doc__ or "").strip()
        match = re.search(r"Introduced in: notebooks/optimization/(\S+)\.ipynb$", doc)
        assert match and match.group(1) in slugs, obj.__name__
