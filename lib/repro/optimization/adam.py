"""Adam and the optimizers it is compared with, written out from their papers, and the arithmetic of
Adam's step size (Kingma & Ba, 2015).

Every optimizer here updates each coordinate on its own, theta <- theta - lr * D, where the direction
D depends on the gradients seen so far and not on lr. So `lr` may be one number or a tensor with one
rate per member of a stack of models (`repro.core.stacked`): the leading dimension of every parameter
indexes the member, and the members train exactly as separate runs would, each with its own rate.
After each step `state[p]["delta"]` holds the step just taken, theta_{t-1} - theta_t.

The step-size arithmetic (Sec. 2.1 of the paper): for a gradient sequence g_1..g_t of one coordinate,
`step_ratio` gives |Delta_t| / alpha = |m_hat_t / sqrt(v_hat_t)|; `sup_step_ratio` its largest value
over all sequences (Cauchy-Schwarz), and `worst_sequence` a sequence that attains it.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _rate(value, p: torch.Tensor):
    """A setting (lr, beta, ...) as a number, or as a tensor shaped to broadcast along the leading
    (member) dimension of p."""
    if torch.is_tensor(value):
        return value.to(p.device, p.dtype if value.is_floating_point() else value.dtype).reshape(
            -1, *([1] * (p.dim() - 1)))
    return value


def _check_lr(lr):
    values = lr.detach().cpu().numpy() if torch.is_tensor(lr) else np.asarray(lr, dtype=float)
    if values.ndim > 1 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"lr == {lr!r}, must be a number > 0 or a 1-D tensor of them (one per member)")


class _Elementwise(torch.optim.Optimizer):
    """theta <- theta - lr * direction(g, state): the subclasses give the direction for lr = 1."""

    def __init__(self, params, lr, defaults: dict):
        _check_lr(lr)
        super().__init__(params, dict(lr=lr, **defaults))

    def _direction(self, g: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["t"] = state.get("t", 0) + 1
                delta = _rate(group["lr"], p) * self._direction(p.grad, state, group)
                p.sub_(delta)
                state["delta"] = delta
        return loss


class Adam(_Elementwise):
    """Adam (Algorithm 1) with a `bias_correction` switch for the Sec. 3 ablation.

    With `bias_correction=True` it takes the same steps as `torch.optim.Adam` (no weight decay,
    no amsgrad). With `False` the moment estimates m_t and v_t are used as they are, which is
    RMSProp with momentum on the rescaled gradient: the early steps are too large when beta2 is
    close to 1. Like `lr`, each of beta1, beta2, eps and `bias_correction` may be a tensor with one
    value per member, so that a whole grid of settings trains as one stack.
    Introduced in: notebooks/optimization/adam.ipynb
    """

    def __init__(self, params, lr=1e-3, betas: tuple = (0.9, 0.999), eps=1e-8, bias_correction=True):
        values = lambda b: np.asarray(b.cpu() if torch.is_tensor(b) else b, dtype=float)  # noqa: E731
        if len(betas) != 2 or not all(np.all((values(b) >= 0) & (values(b) < 1)) for b in betas):
            raise ValueError(f"betas == {betas}, must be two numbers in [0, 1) (or tensors of them)")
        if not np.all(values(eps) >= 0):
            raise ValueError(f"eps == {eps}, must be >= 0")
        super().__init__(params, lr, dict(betas=tuple(betas), eps=eps, bias_correction=bias_correction))

    def _direction(self, g, state, group):
        (b1, b2), t = group["betas"], state["t"]   # numbers or (float64) tensors, one value per member
        at = lambda value: _rate(value, g)  # noqa: E731  (cast last: 1 - 0.9999 loses digits in float32)
        if t == 1:
            state["m"], state["v"] = torch.zeros_like(g), torch.zeros_like(g)
        state["m"].mul_(at(b1)).add_(at(1 - b1) * g)             # m_t, Alg. 1
        state["v"].mul_(at(b2)).add_(at(1 - b2) * g * g)         # v_t, Alg. 1
        correct = group["bias_correction"]
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t                        # Sec. 3
        if torch.is_tensor(correct):
            c1, c2 = torch.where(correct, c1, 1.0), torch.where(correct, c2, 1.0)
        elif not correct:
            c1, c2 = 1.0, 1.0
        return (state["m"] / at(c1)) / ((state["v"] / at(c2)).sqrt() + at(group["eps"]))


class AdaGrad(_Elementwise):
    """AdaGrad (Duchi et al., 2011): theta <- theta - lr g_t / (sqrt(sum_s g_s^2) + eps), the same
    steps as `torch.optim.Adagrad` with its defaults (eps = 1e-10).
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, params, lr=1e-2, eps: float = 1e-10):
        super().__init__(params, lr, dict(eps=eps))

    def _direction(self, g, state, group):
        if state["t"] == 1:
            state["sum"] = torch.zeros_like(g)
        state["sum"].addcmul_(g, g)
        return g / (state["sum"].sqrt() + group["eps"])


class RMSProp(_Elementwise):
    """RMSProp (Tieleman & Hinton, 2012) without momentum: v <- rho v + (1 - rho) g^2,
    theta <- theta - lr g / (sqrt(v) + eps); `torch.optim.RMSprop`'s steps (rho = 0.99, eps = 1e-8).
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, params, lr=1e-2, rho: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr, dict(rho=rho, eps=eps))

    def _direction(self, g, state, group):
        if state["t"] == 1:
            state["v"] = torch.zeros_like(g)
        state["v"].mul_(group["rho"]).addcmul_(g, g, value=1 - group["rho"])
        return g / (state["v"].sqrt() + group["eps"])


class NesterovSGD(_Elementwise):
    """SGD with Nesterov momentum: b <- mu b + g (b_1 = g_1), theta <- theta - lr (g + mu b), the
    steps of `torch.optim.SGD(nesterov=True)` (mu = 0.9).
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, params, lr=1e-2, momentum: float = 0.9):
        super().__init__(params, lr, dict(momentum=momentum))

    def _direction(self, g, state, group):
        mu = group["momentum"]
        if state["t"] == 1:
            state["b"] = g.clone()
        else:
            state["b"].mul_(mu).add_(g)
        return g + mu * state["b"]


class AdaDelta(_Elementwise):
    """AdaDelta (Zeiler, 2012): the step sqrt(u + eps) / sqrt(v + eps) g, with running averages v of
    g^2 and u of the squared steps; `torch.optim.Adadelta`'s steps (rho = 0.9, eps = 1e-6, lr = 1).
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, params, lr=1.0, rho: float = 0.9, eps: float = 1e-6):
        super().__init__(params, lr, dict(rho=rho, eps=eps))

    def _direction(self, g, state, group):
        rho, eps = group["rho"], group["eps"]
        if state["t"] == 1:
            state["v"], state["u"] = torch.zeros_like(g), torch.zeros_like(g)
        state["v"].mul_(rho).addcmul_(g, g, value=1 - rho)
        d = (state["u"] + eps).sqrt() / (state["v"] + eps).sqrt() * g
        state["u"].mul_(rho).addcmul_(d, d, value=1 - rho)
        return d


OPTIMIZERS = {"Adam": Adam, "AdaGrad": AdaGrad, "RMSProp": RMSProp, "SGD-Nesterov": NesterovSGD,
              "AdaDelta": AdaDelta}


def make(name: str, params, lr, **kw) -> torch.optim.Optimizer:
    """One of OPTIMIZERS by name, with its defaults (Adam's are the paper's) and `lr`.
    Introduced in: notebooks/optimization/adam.ipynb"""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer == {name!r}, must be one of {', '.join(map(repr, OPTIMIZERS))}")
    return OPTIMIZERS[name](params, lr=lr, **kw)


class InverseSqrtDecay:
    """The stepsize alpha_t = alpha / sqrt(t) of the paper's logistic regression (Sec. 6.1): call
    `step()` after every update, as with a torch scheduler (`train.fit(..., scheduler=...)`).
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer, self.t = optimizer, 1
        self.base = [group["lr"] for group in optimizer.param_groups]

    def step(self):
        self.t += 1
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base / math.sqrt(self.t)


# --- the size of Adam's step (Sec. 2.1) --------------------------------------------------------
def step_ratio(grads, betas=(0.9, 0.999), bias_correction: bool = True) -> np.ndarray:
    """|m_hat_t / sqrt(v_hat_t)| after each gradient of the sequence `grads` (the last axis is time),
    i.e. Adam's step |Delta_t| in units of alpha with eps = 0; nan where v_t = 0.
    Introduced in: notebooks/optimization/adam.ipynb"""
    g = np.asarray(grads, dtype=float)
    b1, b2 = betas
    m, v, out = np.zeros(g.shape[:-1]), np.zeros(g.shape[:-1]), np.empty(g.shape)
    for t in range(1, g.shape[-1] + 1):
        m = b1 * m + (1 - b1) * g[..., t - 1]
        v = b2 * v + (1 - b2) * g[..., t - 1] ** 2
        c1, c2 = (1 - b1 ** t, 1 - b2 ** t) if bias_correction else (1.0, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[..., t - 1] = np.abs(m / c1) / np.sqrt(v / c2)
    return out


def sup_step_ratio(betas=(0.9, 0.999), t: int | None = None) -> float:
    """The largest |Delta_t| / alpha over all gradient sequences of length t (None: t -> infinity),
    with bias correction and eps = 0. By Cauchy-Schwarz, |sum_j b1^(t-j) g_j| <= sqrt(sum_j
    (b1^2/b2)^(t-j)) sqrt(sum_j b2^(t-j) g_j^2), with equality for g_j proportional to (b1/b2)^(t-j);
    so the supremum is (1-b1)/(1-b1^t) sqrt((1-b2^t)/(1-b2)) sqrt(sum_{k<t} (b1^2/b2)^k), finite when
    b1^2 < b2. It exceeds the paper's bound (1-b1)/sqrt(1-b2) by 1/sqrt(1 - b1^2/b2) as t grows.
    Introduced in: notebooks/optimization/adam.ipynb"""
    b1, b2 = betas
    r = b1 ** 2 / b2
    if r >= 1:
        return math.inf
    if t is None:
        return (1 - b1) / math.sqrt(1 - b2) / math.sqrt(1 - r)
    return (1 - b1) / (1 - b1 ** t) * math.sqrt((1 - b2 ** t) / (1 - b2) * (1 - r ** t) / (1 - r))


def worst_sequence(t: int, betas=(0.9, 0.999)) -> np.ndarray:
    """A gradient sequence of length t whose last step attains `sup_step_ratio(betas, t)`: each
    gradient (b2/b1) times the one before, g_t = 1.
    Introduced in: notebooks/optimization/adam.ipynb"""
    b1, b2 = betas
    return (b1 / b2) ** np.arange(t - 1, -1, -1, dtype=float)
