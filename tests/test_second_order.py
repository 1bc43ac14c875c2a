import math
import re

import pytest
import torch
from torch import nn

from repro.optimization import second_order
from repro.optimization.curvature import rademacher
from repro.optimization.second_order import OASIS, AdaFisher, AdaHessian

D = torch.float64
seeded = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
# AdaHessian and OASIS need loss.backward(create_graph=True); the tests reset .grad to None
pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")


def _quadratic(seed=0, n=12):
    """f(x) = 1/2 x^T Q x + b^T x with a dense positive definite Q (n, n)."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g, dtype=D)
    return M @ M.T / n + torch.eye(n, dtype=D), torch.randn(n, generator=g, dtype=D)


def _train(optimizer, params, loss_fn, steps, create_graph=True):
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward(create_graph=create_graph)
        optimizer.step()
    return [p.detach().clone() for p in params]


# --- AdaHessian ----------------------------------------------------------------------------------
def test_adahessian_follows_its_update_step_by_step():
    Q, b = _quadratic()
    w0 = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=D)
    # a vector (4,) and a conv kernel (2, 1, 2, 2), one quadratic in both
    vec, conv = nn.Parameter(w0[:4].clone()), nn.Parameter(w0[4:].reshape(2, 1, 2, 2).clone())
    x = lambda: torch.cat([vec.flatten(), conv.flatten()])  # noqa: E731
    lr, (b1, b2), eps, wd, k = 0.05, (0.8, 0.95), 1e-4, 0.01, 0.5
    opt = AdaHessian([vec, conv], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, hessian_power=k,
                     generator=torch.Generator().manual_seed(7))
    ours = _train(opt, [vec, conv], lambda: 0.5 * x() @ Q @ x() + b @ x(), steps=6)

    # the reference: the same Rademacher draws, the exact Hessian Q, the update written out
    gen, w = torch.Generator().manual_seed(7), w0.clone()
    m, v = torch.zeros(12, dtype=D), torch.zeros(12, dtype=D)
    for t in range(1, 7):
        g = Q @ w + b
        z = torch.cat([rademacher(torch.empty(4, dtype=D), gen),
                       rademacher(torch.empty(2, 1, 2, 2, dtype=D), gen).flatten()])
        d = (z * (Q @ z)).abs()
        d[4:] = d[4:].reshape(2, 4).mean(1).repeat_interleave(4)   # each kernel's 2x2 averaged
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d ** 2
        w = w - lr * (m / (1 - b1 ** t) / ((v.sqrt() / math.sqrt(1 - b2 ** t)) ** k + eps) + wd * w)
    torch.testing.assert_close(torch.cat([p.flatten() for p in ours]), w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adahessian_is_adamw_when_the_hessian_diagonal_is_the_gradient(weight_decay):
    # f = sum(exp(w)): H = diag(exp(w)) = diag(g), so z * Hz = g and v is Adam's average of g^2
    w0 = torch.tensor([-1.0, 0.2, -0.5, 0.7], dtype=D)
    runs = []
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=weight_decay)
    for make in (lambda p: AdaHessian(p, generator=seeded(0), **kw),
                 lambda p: torch.optim.AdamW(p, **kw)):
        w = nn.Parameter(w0.clone())
        runs.append(_train(make([w]), [w], lambda: torch.exp(w).sum(), steps=15)[0])
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-13, atol=1e-15)


def test_adahessian_is_reproducible_and_needs_the_graph():
    Q, b = _quadratic()

    def run(seed):
        w = nn.Parameter(torch.ones(12, dtype=D))
        opt = AdaHessian([w], lr=0.1, generator=torch.Generator().manual_seed(seed))
        return _train(opt, [w], lambda: 0.5 * w @ Q @ w + b @ w, steps=3)[0]

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    w = nn.Parameter(torch.ones(2, dtype=D))
    (w ** 2).sum().backward()
    with pytest.raises(RuntimeError, match="create_graph"):
        AdaHessian([w]).step()


def _logistic_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=g, dtype=D)
    noise = 0.3 * torch.randn(64, generator=g, dtype=D)
    y = (X @ torch.randn(5, generator=g, dtype=D) + noise > 0).to(D)
    return X, y


def _logistic(model, X, y):
    return nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(-1), y) + 1e-3 * sum(
        (p ** 2).sum() for p in model.parameters())


@pytest.mark.parametrize("make", [
    lambda m: AdaHessian(m.parameters(), lr=0.1, generator=torch.Generator().manual_seed(0)),
    lambda m: OASIS(m.parameters(), lr=0.5, generator=torch.Generator().manual_seed(0)),
    lambda m: OASIS(m.parameters(), lr=0.5, adaptive=False, generator=seeded(0)),
    lambda m: AdaFisher(m, lr=0.05),
    lambda m: AdaFisher(m, lr=0.05, weight_decay=1e-3, decoupled=True),
], ids=["AdaHessian", "OASIS", "OASIS-fixed-lr", "AdaFisher", "AdaFisherW"])
def test_loss_decreases_on_logistic_regression(make):
    X, y = _logistic_problem()
    torch.manual_seed(0)
    model = nn.Linear(5, 1).to(D)
    opt = make(model)
    start = float(_logistic(model, X, y).detach())
    _train(opt, list(model.parameters()), lambda: _logistic(model, X, y), steps=60)
    assert float(_logistic(model, X, y).detach()) < 0.7 * start


@pytest.mark.parametrize("kw, match", [(dict(lr=0.0), "lr"), (dict(betas=(0.9, 1.0)), "betas"),
                                       (dict(betas=(0.9,)), "betas"), (dict(eps=-1.0), "eps"),
                                       (dict(weight_decay=-0.1), "weight_decay"),
                                       (dict(hessian_power=1.5), "hessian_power")])
def test_adahessian_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        AdaHessian([nn.Parameter(torch.ones(1))], **kw)


# --- OASIS ---------------------------------------------------------------------------------------
def _oasis_reference(Q, b, w0, lr, beta2, alpha, adaptive, steps, seed):
    """OASIS on f = 1/2 w^T Q w + b^T w, step by step, with the optimizer's Rademacher draws."""
    gen = torch.Generator().manual_seed(seed)
    hutchinson = lambda: (lambda z: z * (Q @ z))(rademacher(w0, gen))  # noqa: E731
    g = lambda w: Q @ w + b  # noqa: E731
    D = hutchinson()                                               # D_0 at w_0
    D_hat = D.abs().clamp(min=alpha)
    eta, theta = lr, math.inf
    w_prev, w = w0, w0 - lr * g(w0) / D_hat                        # w_1
    for _ in range(steps - 1):
        D = beta2 * D + (1 - beta2) * hutchinson()
        D_hat = D.abs().clamp(min=alpha)
        if adaptive:
            dw, dg = w - w_prev, g(w) - g(w_prev)
            moved, turned = torch.sqrt((D_hat * dw ** 2).sum()), torch.sqrt((dg ** 2 / D_hat).sum())
            new = min(math.sqrt(1 + theta) * eta, float(moved) / (2 * float(turned)))
            eta, theta = new, new / eta
        w_prev, w = w, w - eta * g(w) / D_hat
    return w, eta


@pytest.mark.parametrize("adaptive", [True, False])
def test_oasis_follows_its_algorithm_step_by_step(adaptive):
    Q, b = _quadratic(seed=2)
    w0 = torch.randn(12, generator=torch.Generator().manual_seed(3), dtype=D)
    w = nn.Parameter(w0.clone())
    opt = OASIS([w], lr=0.3, beta2=0.9, alpha=0.05, adaptive=adaptive, generator=seeded(11))
    ours = _train(opt, [w], lambda: 0.5 * w @ Q @ w + b @ w, steps=8)[0]
    ref, eta = _oasis_reference(Q, b, w0, 0.3, 0.9, 0.05, adaptive, steps=8, seed=11)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    assert opt.eta == pytest.approx(eta, rel=1e-12)
    if adaptive:
        assert opt.eta != 0.3


def test_oasis_with_curvature_below_alpha_is_sgd_with_rate_lr_over_alpha():
    # f = 1e-7 sum(w^2) + c^T w: diag H = 2e-7 < alpha, so D_hat = alpha and OASIS (fixed lr) is SGD
    c = torch.tensor([0.5, -1.0, 2.0], dtype=D)
    runs = []
    for make in (lambda p: OASIS(p, lr=1e-7, alpha=1e-5, adaptive=False, generator=seeded(0)),
                 lambda p: torch.optim.SGD(p, lr=1e-2)):
        w = nn.Parameter(torch.tensor([1.0, 2.0, -3.0], dtype=D))
        runs.append(_train(make([w]), [w], lambda: 1e-7 * (w ** 2).sum() + c @ w, steps=10)[0])
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-13, atol=1e-15)


def test_oasis_with_an_exact_diagonal_and_lr_one_is_newton():
    # a separable quadratic, curvature c: D_0 = c exactly, so w_1 = w_0 - g_0 / c is the minimizer
    c, b = torch.tensor([1.0, 3.0, 0.2], dtype=D), torch.tensor([1.0, -2.0, 0.4], dtype=D)
    w = nn.Parameter(torch.ones(3, dtype=D))
    _train(OASIS([w], lr=1.0, generator=torch.Generator().manual_seed(0)), [w],
           lambda: 0.5 * (c * w ** 2).sum() + b @ w, steps=1)
    torch.testing.assert_close(w.detach(), -b / c, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kw, match", [(dict(lr=-1.0), "lr"), (dict(beta2=1.0), "beta2"),
                                       (dict(alpha=0.0), "alpha"),
                                       (dict(warmup_samples=0), "warmup_samples")])
def test_oasis_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        OASIS([nn.Parameter(torch.ones(1))], **kw)
    with pytest.raises(ValueError, match="groups"):
        two = [{"params": [nn.Parameter(torch.ones(1))]}, {"params": [nn.Parameter(torch.ones(2))]}]
        OASIS(two)


# --- AdaFisher -----------------------------------------------------------------------------------
def _min_max(x):
    return (x - x.min()) / (x.max() - x.min() + 1e-6)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adafisher_follows_its_update_step_by_step(decoupled):
    g = torch.Generator().manual_seed(4)
    X, Y = torch.randn(6, 3, generator=g, dtype=D), torch.randn(6, 2, generator=g, dtype=D)
    torch.manual_seed(0)
    layer = nn.Linear(3, 2).to(D)
    W, c = layer.weight.detach().clone(), layer.bias.detach().clone()
    lr, beta, gamma, damping, wd = 0.05, 0.7, 0.6, 1e-2, 0.03
    opt = AdaFisher(layer, lr=lr, beta=beta, gamma=gamma, damping=damping, weight_decay=wd,
                    decoupled=decoupled)
    loss_of = lambda out: (torch.tanh(out - Y) ** 2).sum(1).mean()  # noqa: E731
    _train(opt, list(layer.parameters()), lambda: loss_of(layer(X)), steps=5, create_graph=False)

    H_D, S_D = torch.ones(4, dtype=D), torch.ones(2, dtype=D)
    m = torch.zeros(2, 4, dtype=D)
    theta = torch.cat([W, c[:, None]], 1)                                 # W_bar = [W, b], (2, 4)
    for t in range(1, 6):
        Wt, ct = theta[:, :3].clone().requires_grad_(), theta[:, 3].clone().requires_grad_()
        out = X @ Wt.T + ct
        loss = loss_of(out)
        s = torch.autograd.grad(loss * 6, out, retain_graph=True)[0]   # per-example dl_n/ds_n
        grad_W, grad_c = torch.autograd.grad(loss, [Wt, ct])
        grad = torch.cat([grad_W, grad_c[:, None]], 1)
        a_bar = torch.cat([X, torch.ones(6, 1, dtype=D)], 1)
        H_D = gamma * H_D + (1 - gamma) * _min_max((a_bar ** 2).mean(0))
        S_D = gamma * S_D + (1 - gamma) * _min_max((s ** 2).mean(0))
        F = S_D[:, None] * H_D[None, :] + damping
        if not decoupled:
            grad = grad + wd * theta
        m = beta * m + (1 - beta) * grad
        theta = theta - lr * (m / (1 - beta ** t) / F + (wd * theta if decoupled else 0))
    torch.testing.assert_close(layer.weight.detach(), theta[:, :3], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(layer.bias.detach(), theta[:, 3], rtol=1e-12, atol=1e-14)


class _Scaled(nn.Module):
    """No nn.Linear: every parameter falls back to F = 1."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=D))

    def forward(self, x):
        return x * self.w


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adafisher_without_linear_layers_and_momentum_is_sgd(weight_decay):
    x = torch.tensor([0.3, 1.0, -2.0], dtype=D)
    runs = []
    for make in (lambda m: AdaFisher(m, lr=0.1, beta=0.0, weight_decay=weight_decay),
                 lambda m: torch.optim.SGD(m.parameters(), lr=0.1, weight_decay=weight_decay)):
        model = _Scaled()
        loss = lambda: (torch.sin(model(x)) ** 2).sum()  # noqa: E731
        runs.append(_train(make(model), [model.w], loss, steps=8, create_graph=False)[0])
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("kw, match", [(dict(lr=0.0), "lr"), (dict(beta=1.0), "beta"),
                                       (dict(gamma=-0.1), "gamma"), (dict(damping=0.0), "damping"),
                                       (dict(weight_decay=-1.0), "weight_decay")])
def test_adafisher_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        AdaFisher(nn.Linear(2, 1), **kw)


def test_every_public_name_says_where_it_is_introduced():
    slugs = {"adahessian", "adafisher", "doubly-adaptive-scaled-algorithm-for-machine"}
    public = [obj for name, obj in vars(second_order).items()
              if not name.startswith("_") and callable(obj)
              and getattr(obj, "__module__", None) == second_order.__name__]
    assert len(public) == 3
    for obj in public:
        doc = (obj.__doc__ or "").strip()
        match = re.search(r"Introduced in: notebooks/optimization/(\S+)\.ipynb$", doc)
        assert match and match.group(1) in slugs, obj.__name__


def _train_with_closure(optimizer, w, loss_fn, steps):
    for _ in range(steps):
        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward(create_graph=True)
            return loss
        optimizer.step(closure)
    return w.detach().clone()


def test_oasis_same_batch_changes_nothing_with_one_fixed_batch():
    Q, b = _quadratic(seed=2)
    w0 = torch.randn(12, generator=torch.Generator().manual_seed(3), dtype=D)
    runs = []
    for same in (False, True):
        w = nn.Parameter(w0.clone())
        opt = OASIS([w], lr=0.3, beta2=0.9, alpha=0.05, generator=seeded(11), same_batch=same)
        runs.append((_train_with_closure(opt, w, lambda: 0.5 * w @ Q @ w + b @ w, 8), opt.eta))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-12, atol=1e-14)
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-12)


def test_oasis_same_batch_takes_the_gradient_difference_on_the_current_batch():
    # a new shift s_k at every step (a new "batch") of a quadratic: on one batch the gradient
    # difference is Q (w_k - w_{k-1}) whatever the shifts, so eta_k follows the local estimate
    # ||dw||_D / (2 ||Q dw||*_D); the other gradient difference would carry s_k - s_{k-1}
    Q, b = _quadratic(seed=2)
    w = nn.Parameter(torch.randn(12, generator=torch.Generator().manual_seed(3), dtype=D))
    opt = OASIS([w], lr=0.3, beta2=0.9, alpha=0.05, generator=seeded(11), same_batch=True)
    shifts = 10 * torch.randn(6, 12, generator=torch.Generator().manual_seed(5), dtype=D)
    w_prev, eta, theta = None, 0.3, math.inf
    for k, shift in enumerate(shifts):
        w_k = w.detach().clone()
        _train_with_closure(opt, w, lambda: 0.5 * w @ Q @ w + (b + shift) @ w, 1)
        if k >= 1:
            dw, D_hat = w_k - w_prev, opt.state[w]["D_hat"]
            local = 0.5 * torch.sqrt((D_hat * dw ** 2).sum() / ((Q @ dw) ** 2 / D_hat).sum())
            eta, theta = min(math.sqrt(1 + theta) * eta, float(local)), min(
                math.sqrt(1 + theta) * eta, float(local)) / eta
            assert opt.eta == pytest.approx(eta, rel=1e-10)
        w_prev = w_k
    with pytest.raises(ValueError, match="closure"):
        w.grad = None
        (0.5 * w @ Q @ w).backward(create_graph=True)
        opt.step()
