import math

import pytest
import torch

from repro.optimization import first_order
from repro.optimization.first_order import SGDP, AdamP, CAdamW, Cautious, EXAdam

F64 = torch.float64


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(32, 5, generator=g, dtype=F64), torch.randn(32, 3, generator=g, dtype=F64),
            torch.randn(3, 5, generator=g, dtype=F64))


def _run(make_opt, steps=20, normalized=False, seed=0):
    """Weights (one per step) of a linear regression; with `normalized` the outputs are
    standardized over the batch, which makes each row of the weight scale-invariant."""
    x, y, w0 = _problem(seed)
    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(torch.zeros(3, dtype=F64))
    opt, trajectory = make_opt([w, b]), []
    for _ in range(steps):
        opt.zero_grad()
        out = x @ w.T
        if normalized:
            out = (out - out.mean(0)) / out.std(0)
        ((out + b - y) ** 2).mean().backward()
        opt.step()
        trajectory.append(torch.cat([w.detach().flatten(), b.detach()]))
    return torch.stack(trajectory)


# --- AdamP / SGDP ---------------------------------------------------------------------------------
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamp_equals_adamw_on_weights_that_are_not_scale_invariant(wd):
    ours = _run(lambda p: AdamP(p, lr=0.01, weight_decay=wd))
    ref = _run(lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=wd))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_sgdp_equals_sgd_on_weights_that_are_not_scale_invariant():
    for nesterov in (False, True):
        ours = _run(lambda p: SGDP(p, lr=0.05, momentum=0.9, nesterov=nesterov))
        ref = _run(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=nesterov))
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [lambda p: AdamP(p, lr=0.05), lambda p: SGDP(p, lr=0.5)])
def test_step_is_orthogonal_to_scale_invariant_weights(make):
    trajectory = _run(make, normalized=True)
    _, _, w0 = _problem()
    w = torch.cat([w0.flatten()[None], trajectory[:, :15]]).reshape(-1, 3, 5)   # (steps + 1, 3, 5)
    steps = w[1:] - w[:-1]
    assert steps.abs().max() > 1e-3
    # orthogonal up to the eps = 1e-8 in w_hat = w / (||w|| + eps) of the authors' code
    cosine = (steps * w[:-1]).sum(-1) / (steps.norm(dim=-1) * w[:-1].norm(dim=-1))
    assert cosine.abs().max() < 1e-5   # (eps / ||w||) times the radial part the momentum carries
    # plain gradient descent on the same weights grows every row's norm (||w - lr g||^2 =
    # ||w||^2 + lr^2 ||g||^2 when g is orthogonal to w): the growth AdamP and SGDP remove
    sgd = _run(lambda p: torch.optim.SGD(p, lr=0.5), normalized=True)[-1, :15].reshape(3, 5)
    assert (sgd.norm(dim=1) > w0.norm(dim=1)).all()
    # what is left of the growth is second order: ||w + s||^2 = ||w||^2 + ||s||^2
    torch.testing.assert_close(w[1:].norm(dim=-1) ** 2, w[:-1].norm(dim=-1) ** 2 + steps.norm(dim=-1) ** 2,
                               rtol=1e-5, atol=0)


def test_adamp_against_plain_reference():
    """Algorithm of the paper written out for one scale-invariant (3, 5) weight, channel-wise."""
    x, y, w0 = _problem()
    lr, b1, b2, eps, delta, wd, wd_ratio = 0.05, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1
    ours = _run(lambda p: AdamP(p, lr=lr, weight_decay=wd), normalized=True, steps=8)
    w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    for t in range(1, 9):
        w_ = w.clone().requires_grad_()
        out = x @ w_.T
        ((((out - out.mean(0)) / out.std(0)) - y) ** 2).mean().backward()   # bias stays 0 at its grad
        g = w_.grad
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        cos = (w * g).sum(1).abs() / (w.norm(dim=1) * g.norm(dim=1))
        assert cos.max() < delta / math.sqrt(5)
        w_hat = w / (w.norm(dim=1, keepdim=True) + eps)   # eps as in the authors' code
        p = p - (w_hat * p).sum(1, keepdim=True) * w_hat
        w = w * (1 - lr * wd * wd_ratio) - lr * p
        torch.testing.assert_close(ours[t - 1, :15].reshape(3, 5), w, rtol=1e-9, atol=1e-10)


def test_remove_radial_layer_wise_and_vectors():
    w = torch.randn(4, 6, dtype=F64)
    g = torch.randn(4, 6, dtype=F64)
    g = g - (g * w).sum() / (w * w).sum() * w          # orthogonal to w as a whole, not per row
    p = torch.randn(4, 6, dtype=F64)
    out, projected = first_order.remove_radial(w, g, p)
    assert projected and abs((out * w).sum()) < 1e-7 * out.norm() * w.norm()
    vector = torch.randn(5, dtype=F64)
    assert first_order.remove_radial(vector, torch.zeros(5, dtype=F64), vector)[1] is False


# --- cautious -------------------------------------------------------------------------------------
def test_cautious_mask():
    u = torch.tensor([1.0, -2.0, 3.0, 0.5])
    g = torch.tensor([2.0, 1.0, 1.0, -1.0])
    torch.testing.assert_close(first_order.cautious_mask(u, g, eps=0.0), torch.tensor([2.0, 0, 2.0, 0]))


def test_cadamw_with_mask_of_ones_equals_adamw():
    # with beta1 = 0 the Adam direction g / (|g| + eps) always agrees in sign with g
    ours = _run(lambda p: CAdamW(p, lr=0.01, betas=(0.0, 0.999), mask_eps=0.0))
    ref = _run(lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.0, 0.999)))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_cadamw_against_plain_reference():
    x, y, w0 = _problem()
    lr, b1, b2, eps, wd = 0.05, 0.9, 0.999, 1e-8, 0.01
    w = torch.nn.Parameter(w0.clone())
    opt = CAdamW([w], lr=lr, weight_decay=wd)
    ref, m, v, masked = w0.clone(), 0, 0, 0
    for t in range(1, 31):
        opt.zero_grad()
        ((x @ w.T - y) ** 2).mean().backward()
        opt.step()
        g = 2 * (x @ ref.T - y).T @ x / y.numel()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        phi = (u * g > 0).to(F64)
        masked += int((phi == 0).sum())
        ref = ref * (1 - lr * wd) - lr * u * phi / (phi.mean() + 1e-8)
        torch.testing.assert_close(w.detach(), ref, rtol=1e-12, atol=1e-12)
    assert masked > 0   # the mask did act


def test_cautious_wrapper_equals_cadamw_without_weight_decay():
    ours = _run(lambda p: Cautious(torch.optim.AdamW(p, lr=0.05, weight_decay=0.0)))
    ref = _run(lambda p: CAdamW(p, lr=0.05, weight_decay=0.0))
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_cautious_wrapper_shares_param_groups():
    p = torch.nn.Parameter(torch.ones(2))
    opt = Cautious(torch.optim.SGD([p], lr=0.1))
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p.grad = torch.ones(2)
    opt.step()
    scheduler.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


# --- EXAdam ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("growing", [False, True])
def test_exadam_against_plain_reference(growing):
    x, y, w0 = _problem()
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.01
    w = torch.nn.Parameter(w0.clone())
    opt = EXAdam([w], lr=lr, weight_decay=wd, growing_step_size=growing)
    ref, m, v = w0.clone(), 0, 0
    for t in range(1, 21):
        opt.zero_grad()
        ((x @ w.T - y) ** 2).mean().backward()
        opt.step()
        g = 2 * (x @ ref.T - y).T @ x / y.numel()
        ref = ref - lr * wd * ref
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        d1 = 1 + v / (v + eps) * b2 ** t
        d2 = 1 + m ** 2 / (m ** 2 + eps) * b1 ** t
        alpha = lr * math.log(math.sqrt(2) * math.sqrt(t + 1)) if growing else lr
        ref = ref - alpha * (m / (1 - b1 ** t) * d1 + g / (1 - b1 ** t) * d1) / (
            (v / (1 - b2 ** t) * d2).sqrt() + eps)
        torch.testing.assert_close(w.detach(), ref, rtol=1e-12, atol=1e-12)


def test_exadam_without_averaging_is_adam_at_twice_the_rate():
    # betas = (0, 0): beta^t = 0 so d1 = d2 = 1, m = g, and the step is 2 lr g / (|g| + eps)
    ours = _run(lambda p: EXAdam(p, lr=0.01, betas=(0.0, 0.0)))
    ref = _run(lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.0, 0.0)))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_exadam_step_size():
    assert first_order.exadam_step_size(1.0, 1) == pytest.approx(math.log(2.0))
    assert first_order.exadam_step_size(2.0, 7) == pytest.approx(2 * math.log(4.0))


# --- common ---------------------------------------------------------------------------------------
OPTIMIZERS = [lambda p: AdamP(p, lr=0.05), lambda p: SGDP(p, lr=0.05), lambda p: CAdamW(p, lr=0.05),
              lambda p: EXAdam(p, lr=0.02), lambda p: EXAdam(p, lr=0.01, growing_step_size=True),
              lambda p: Cautious(torch.optim.Adam(p, lr=0.05))]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_decreases_a_convex_loss(make):
    x, y, w0 = _problem()
    trajectory = _run(make, steps=60)
    loss = lambda w: ((x @ w.T - y) ** 2).mean()  # noqa: E731
    assert loss(trajectory[-1, :15].reshape(3, 5)) < 0.5 * loss(w0)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_closure_and_missing_grad(make):
    a = torch.nn.Parameter(torch.ones(2, 2))
    b = torch.nn.Parameter(torch.ones(2))
    opt = make([a, b])

    def closure():
        opt.zero_grad()
        loss = (a ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(4.0)
    assert torch.equal(b.detach(), torch.ones(2))


@pytest.mark.parametrize("make, match", [
    (lambda p: AdamP(p, lr=0.0), "lr"), (lambda p: AdamP(p, betas=(0.9, 1.0)), "betas"),
    (lambda p: AdamP(p, delta=0.0), "delta"), (lambda p: AdamP(p, wd_ratio=-1), "wd_ratio"),
    (lambda p: SGDP(p, momentum=1.0), "momentum"), (lambda p: SGDP(p, weight_decay=-1), "weight_decay"),
    (lambda p: CAdamW(p, eps=-1.0), "eps"), (lambda p: CAdamW(p, mask_eps=-1.0), "mask_eps"),
    (lambda p: EXAdam(p, betas=(0.9,)), "betas"), (lambda p: EXAdam(p, lr=-1.0), "lr"),
    (lambda p: Cautious(p), "optimizer")])
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.nn.Parameter(torch.ones(2))])


def test_every_public_name_points_to_a_notebook():
    import re
    for name, obj in vars(first_order).items():
        if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == first_order.__name__:
            assert re.search(r"Introduced in: notebooks/optimization/\S+\.ipynb", obj.__doc__ or ""), name
