"""Three elementwise refinements of Adam(W), each written from its paper and the authors' code.

AdamP / SGDP (Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", arXiv 2006.08217, ICLR 2021; read through the authors' code
clovaai/AdamP and summaries of Algorithms 1-2, the paper's own algorithm box unverified). A weight w
followed by a normalization is scale-invariant: the loss depends on w / ||w|| only, so the gradient
is orthogonal to w. Momentum then adds a radial component to the step, which grows ||w|| and shrinks
the effective step size. AdamP removes it: when the weight looks scale-invariant,
    max |cos(w, g)| < delta / sqrt(dim(w))            (delta = 0.1),
the step p is replaced by Pi_w(p) = p - (w_hat . p) w_hat, w_hat = w / ||w||, and the decoupled
weight decay is multiplied by `wd_ratio` (0.1). The test is tried first per output channel (each
row of the weight viewed as (channels, -1)), then for the whole layer; 1-D parameters are never
projected.
Without projection AdamP takes `torch.optim.AdamW`'s steps, SGDP `torch.optim.SGD`'s (wd = 0).

Cautious optimizers (Liang et al., "Cautious Optimizers: Improving Training with One Line of Code",
arXiv 2411.16085v4, Algorithm 1): with u the optimizer's update and g the current gradient,
    phi = 1[u * g > 0],   theta <- theta - lr u * phi / (mean(phi) + eps),
so coordinates where the update would raise the loss to first order are dropped and the others are
scaled up to keep the step's average size. `CAdamW` masks AdamW's Adam direction and applies the
decoupled weight decay unmasked, as the authors' code (kyleliang919/C-Optim, c_adamw.py) does;
`Cautious` masks the whole step of any elementwise optimizer.

EXAdam (Adly, "EXAdam: The Power of Adaptive Cross-Moments", arXiv 2412.20302; the equations read
from the author's code AhmedMostafa16/EXAdam, whose history has both versions, the paper's algorithm
box unverified): with Adam's m_t, v_t,
    d1 = 1 + v_t / (v_t + eps) beta2^t,      d2 = 1 + m_t^2 / (m_t^2 + eps) beta1^t,
    m~ = m_t / (1 - beta1^t) d1,   v~ = v_t / (1 - beta2^t) d2,   g~ = g_t / (1 - beta1^t) d1,
    theta <- theta - alpha_t (m~ + g~) / (sqrt(v~) + eps),
with alpha_t = alpha (v2, May 2025, and the current code) or the growing step size
alpha_t = alpha ln(sqrt(2) sqrt(t + 1)) of v1 (Dec 2024) (`growing_step_size=True`). Decoupled
weight decay theta <- theta - alpha wd theta comes first (code; not in the paper's algorithm).
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_positive
from .common import closure_loss, check_betas, check_fraction, check_nonnegative


class _Optimizer(torch.optim.Optimizer):
    """Loops over parameters with a gradient; subclasses give `_update(p, g, state, group)`."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    state["t"] = state.get("t", 0) + 1
                    self._update(p, p.grad, state, group)
        return loss


def _adam_moments(g, state, betas):
    """m_t, v_t of Adam (Kingma & Ba, Alg. 1), updated in place in `state`."""
    if "m" not in state:
        state["m"], state["v"] = torch.zeros_like(g), torch.zeros_like(g)
    b1, b2 = betas
    state["m"].mul_(b1).add_(g, alpha=1 - b1)
    state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
    return state["m"], state["v"]


def _adamw_direction(g, state, betas, eps):
    """m_hat / (sqrt(v_hat) + eps), AdamW's step for lr = 1 (before weight decay)."""
    m, v = _adam_moments(g, state, betas)
    t = state["t"]
    return m / (1 - betas[0] ** t) / ((v / (1 - betas[1] ** t)).sqrt() + eps)


# --- AdamP and SGDP ------------------------------------------------------------------------------
def remove_radial(w: torch.Tensor, g: torch.Tensor, p: torch.Tensor, delta: float = 0.1,
                  eps: float = 1e-8) -> tuple[torch.Tensor, bool]:
    """(the step p, or p with its radial component removed; whether it was removed) for a weight w
    with gradient g, all of one shape (C, ...). Channel-wise first (each w[c] against g[c]), then
    layer-wise: where max |cos(w, g)| < delta / sqrt(numel per view), w is taken as scale-invariant
    and p <- p - (w_hat . p) w_hat per view.
    Introduced in: notebooks/optimization/adamp.ipynb"""
    if w.dim() < 2:
        return p, False
    for view in (lambda x: x.reshape(x.size(0), -1), lambda x: x.reshape(1, -1)):
        cosine = torch.nn.functional.cosine_similarity(view(g), view(w), dim=1, eps=eps).abs()
        if cosine.max() < delta / math.sqrt(view(w).size(1)):
            w_hat = view(w) / (view(w).norm(dim=1, keepdim=True) + eps)        # (V, D)
            radial = (w_hat * view(p)).sum(dim=1, keepdim=True) * w_hat
            return p - radial.reshape(p.shape), True
    return p, False


class AdamP(_Optimizer):
    """AdamP: AdamW whose step loses its radial component on scale-invariant weights (see
    `remove_radial`), where the decoupled weight decay is also scaled by `wd_ratio`. Defaults are
    the authors' (lr 1e-3, betas (0.9, 0.999), eps 1e-8, delta 0.1, wd_ratio 0.1, weight_decay 0).
    Introduced in: notebooks/optimization/adamp.ipynb"""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 delta=0.1, wd_ratio=0.1, nesterov=False):
        check_positive("lr", lr)
        check_nonnegative("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        check_positive("delta", delta)
        check_nonnegative("wd_ratio", wd_ratio)
        super().__init__(params, dict(lr=lr, betas=check_betas(betas), eps=eps, delta=delta,
                                      weight_decay=weight_decay, wd_ratio=wd_ratio,
                                      nesterov=nesterov))

    def _update(self, p, g, state, group):
        (b1, b2), eps, t = group["betas"], group["eps"], state["t"]
        m, v = _adam_moments(g, state, (b1, b2))
        denominator = (v / (1 - b2 ** t)).sqrt() + eps
        step = (b1 * m + (1 - b1) * g if group["nesterov"] else m) / denominator
        step, projected = remove_radial(p, g, step, group["delta"], eps)
        decay = group["weight_decay"] * (group["wd_ratio"] if projected else 1.0)
        p.mul_(1 - group["lr"] * decay)
        p.sub_(group["lr"] / (1 - b1 ** t) * step)


class SGDP(_Optimizer):
    """SGDP: SGD with momentum, b <- mu b + (1 - dampening) g, step g + mu b (Nesterov) or b, with
    the radial component removed on scale-invariant weights; decoupled weight decay
    theta <- theta (1 - lr wd ratio / (1 - mu)) as in the authors' code.
    Introduced in: notebooks/optimization/adamp.ipynb"""

    def __init__(self, params, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0,
                 nesterov=False, eps=1e-8, delta=0.1, wd_ratio=0.1):
        check_positive("lr", lr)
        check_fraction("momentum", momentum)
        check_fraction("dampening", dampening)
        check_nonnegative("weight_decay", weight_decay)
        check_positive("delta", delta)
        check_nonnegative("wd_ratio", wd_ratio)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, eps=eps,
                                      weight_decay=weight_decay, nesterov=nesterov, delta=delta,
                                      wd_ratio=wd_ratio))

    def _update(self, p, g, state, group):
        mu = group["momentum"]
        if "b" not in state:
            state["b"] = torch.zeros_like(g)
        b = state["b"].mul_(mu).add_(g, alpha=1 - group["dampening"])
        step, projected = remove_radial(p, g, g + mu * b if group["nesterov"] else b,
                                        group["delta"], group["eps"])
        decay = group["weight_decay"] * (group["wd_ratio"] if projected else 1.0)
        p.mul_(1 - group["lr"] * decay / (1 - mu))
        p.sub_(group["lr"] * step)


# --- cautious optimizers -------------------------------------------------------------------------
def cautious_mask(update: torch.Tensor, grad: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """phi / (mean(phi) + eps) with phi = 1[update * grad > 0] (Algorithm 1): zero where the update
    and the gradient disagree in sign, and the rest scaled so the mask averages to about one.
    Introduced in: notebooks/optimization/cautious-optimizers.ipynb"""
    phi = (update * grad > 0).to(update.dtype)
    return phi / (phi.mean() + eps)


class CAdamW(_Optimizer):
    """C-AdamW: theta <- (1 - lr wd) theta - lr u * cautious_mask(u, g), u AdamW's direction
    m_hat / (sqrt(v_hat) + eps). Defaults are torch AdamW's (lr 1e-3, weight_decay 0.01).
    Introduced in: notebooks/optimization/cautious-optimizers.ipynb"""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 mask_eps=1e-8):
        check_positive("lr", lr)
        check_nonnegative("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("mask_eps", mask_eps)
        super().__init__(params, dict(lr=lr, betas=check_betas(betas), eps=eps,
                                      weight_decay=weight_decay, mask_eps=mask_eps))

    def _update(self, p, g, state, group):
        u = _adamw_direction(g, state, group["betas"], group["eps"])
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.sub_(group["lr"] * u * cautious_mask(u, g, group["mask_eps"]))


class Cautious(torch.optim.Optimizer):
    """The cautious version of any elementwise optimizer: run its step, read the update
    u = theta_old - theta_new per parameter, and take u * cautious_mask(u, g) instead (weight decay
    included in u).
    Shares the optimizer's param_groups and state, so schedulers act on both.
    Introduced in: notebooks/optimization/cautious-optimizers.ipynb"""

    def __init__(self, optimizer: torch.optim.Optimizer, mask_eps: float = 1e-8):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer == {optimizer!r}, must be a torch.optim.Optimizer")
        check_nonnegative("mask_eps", mask_eps)
        self.optimizer, self.mask_eps = optimizer, mask_eps
        super().__init__(optimizer.param_groups, dict(optimizer.defaults))
        self.state = optimizer.state

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        before = {p: p.detach().clone() for group in self.param_groups for p in group["params"]
                  if p.grad is not None}
        self.optimizer.step()
        for p, old in before.items():
            u = old - p
            p.copy_(old - u * cautious_mask(u, p.grad, self.mask_eps))
        return loss


# --- EXAdam --------------------------------------------------------------------------------------
def exadam_step_size(lr: float, t: int) -> float:
    """alpha_t = alpha ln(sqrt(2) sqrt(t + 1)) of EXAdam v1: ln(2) / 2 alpha at t = 1, then
    growing like alpha ln(t) / 2.
    Introduced in: notebooks/optimization/exadam.ipynb"""
    return lr * math.log(math.sqrt(2.0) * math.sqrt(t + 1))


class EXAdam(_Optimizer):
    """EXAdam: Adam with the cross-moment debiasing d1, d2 and the gradient term g~ (module
    docstring); `growing_step_size=True` uses v1's alpha_t = `exadam_step_size(lr, t)`.
    Defaults lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0 (the author's code).
    Introduced in: notebooks/optimization/exadam.ipynb"""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 growing_step_size=False):
        check_positive("lr", lr)
        check_nonnegative("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=check_betas(betas), eps=eps,
                                      weight_decay=weight_decay,
                                      growing_step_size=growing_step_size))

    def _update(self, p, g, state, group):
        (b1, b2), eps, t, lr = group["betas"], group["eps"], state["t"], group["lr"]
        p.mul_(1 - lr * group["weight_decay"])
        m, v = _adam_moments(g, state, (b1, b2))
        d1 = 1 + v / (v + eps) * b2 ** t          # cross-moment factor on m and g
        d2 = 1 + m * m / (m * m + eps) * b1 ** t  # cross-moment factor on v
        m_tilde = m / (1 - b1 ** t) * d1
        v_tilde = v / (1 - b2 ** t) * d2
        g_tilde = g / (1 - b1 ** t) * d1
        alpha = exadam_step_size(lr, t) if group["growing_step_size"] else lr
        p.sub_(alpha * (m_tilde + g_tilde) / (v_tilde.sqrt() + eps))
