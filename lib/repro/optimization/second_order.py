"""Second-order optimizers that precondition the gradient with a cheap curvature estimate
(`repro.optimization.curvature`): AdaHessian and OASIS with Hutchinson's Hessian diagonal, AdaFisher
with the diagonals of K-FAC's Kronecker factors.

Versions read and what was checked. The update rules below follow the authors' code, read in full:
AdaHessian, github.com/amirgholami/adahessian `image_classification/optim_adahessian.py`;
AdaFisher, github.com/AtlasAnalyticsLab/AdaFisher `optimizers/AdaFisher.py`; OASIS, the "original
OASIS implementation" with adaptive learning rate as re-implemented in a public JAX script (the
authors' own repository was not found). The papers' algorithm boxes themselves (AdaHessian arXiv
2006.00719, OASIS arXiv 2109.05198v1, AdaFisher arXiv 2405.16397v3) could not be opened past their
first page here, so the algorithm and equation numbers are unverified and none are cited.

AdaHessian and OASIS need Hessian-vector products: the caller must call
`loss.backward(create_graph=True)` before `step()` (or pass a closure that does). Their Rademacher
vectors come from the optimizer's `generator`, so a run with a seeded generator is reproducible.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_positive
from . import curvature
from .common import closure_loss, check_betas, check_fraction, check_nonnegative


def _with_grads(optimizer):
    """The (parameter, group) pairs that have a gradient, in the order of the groups."""
    return [(p, group) for group in optimizer.param_groups for p in group["params"]
            if p.grad is not None]


class AdaHessian(torch.optim.Optimizer):
    """AdaHessian: Adam with the squared gradient replaced by the squared, spatially averaged
    Hutchinson estimate D of the Hessian diagonal (one Rademacher sample per step):

        m_t = b1 m_{t-1} + (1 - b1) g_t,      v_t = b2 v_{t-1} + (1 - b2) D_t^2,
        theta_t = theta_{t-1} - lr (m_t / (1 - b1^t) / ((sqrt(v_t) / sqrt(1 - b2^t))^k + eps)
                                    + weight_decay theta_{t-1}),

    with k the Hessian power and weight decay decoupled (as AdamW), as in the authors' code; its
    defaults (lr 0.15, betas (0.9, 0.999), eps 1e-4, k = 1). Where D_t = |g_t| (a loss whose Hessian
    is diagonal and equal to its gradient, e.g. sum(exp(theta))) the steps are AdamW's, k = 1.
    The caller must call `loss.backward(create_graph=True)` before `step()`.
    Introduced in: notebooks/optimization/adahessian.ipynb"""

    def __init__(self, params, lr=0.15, betas=(0.9, 0.999), eps=1e-4, weight_decay=0.0,
                 hessian_power=1.0, generator: torch.Generator | None = None):
        check_positive("lr", lr)
        check_betas(betas)
        check_nonnegative("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        if not (isinstance(hessian_power, (int, float)) and 0 <= hessian_power <= 1):
            raise ValueError(f"hessian_power == {hessian_power!r}, must be a number in [0, 1]")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      hessian_power=hessian_power))
        self.generator = generator

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        pairs = _with_grads(self)
        params = [p for p, _ in pairs]
        with torch.enable_grad():
            diagonals = curvature.hutchinson_diagonal([p.grad for p in params], params,
                                                      samples=1, generator=self.generator)
        for (p, group), d in zip(pairs, diagonals):
            d = curvature.spatial_average(d)
            (b1, b2), k, state = group["betas"], group["hessian_power"], self.state[p]
            if not state:
                state["step"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
            state["step"] += 1
            t = state["step"]
            state["m"].mul_(b1).add_(p.grad.detach(), alpha=1 - b1)
            state["v"].mul_(b2).addcmul_(d, d, value=1 - b2)
            denominator = (state["v"].sqrt() / math.sqrt(1 - b2 ** t)) ** k + group["eps"]
            direction = state["m"] / (1 - b1 ** t) / denominator
            p.sub_(group["lr"] * (direction + group["weight_decay"] * p))   # decay decoupled
        return loss


class OASIS(torch.optim.Optimizer):
    """OASIS: w_{k+1} = w_k - eta_k D_hat_k^-1 g_k, preconditioned by an exponential average of
    Hutchinson estimates of the Hessian diagonal, truncated from below at alpha,

        D_k = b2 D_{k-1} + (1 - b2) z_k * (H_k z_k),      D_hat_k = max(|D_k|, alpha),

    and, with `adaptive=True`, a learning rate from the local Lipschitz estimate
    (norms ||x||_D = sqrt(x^T D x), ||x||*_D = sqrt(x^T D^-1 x), over all parameters at once):

        eta_k = min(sqrt(1 + theta_{k-1}) eta_{k-1},
                    ||w_k - w_{k-1}||_{D_hat_k} / (2 ||g_k - g_{k-1}||*_{D_hat_k})),
        theta_k = eta_k / eta_{k-1},  theta_0 = +inf;

    with `adaptive=False`, eta_k = lr. The first step, w_1 = w_0 - lr D_hat_0^-1 g_0, uses
    D_0 = the mean of `warmup_samples` Hutchinson samples at w_0. g_{k-1} is the gradient passed at
    the previous step: the same function's gradient for full-batch training, another minibatch's
    when stochastic (the paper evaluates both at the same minibatch; this optimizer does not
    recompute it). With `same_batch=True` it does: step(closure) then evaluates the closure once
    more at w_{k-1} (an extra forward and backward on the batch the closure holds), so that
    g_k - g_{k-1} is a difference of one function's gradients, as the paper's stochastic variant
    needs; with a fixed (full) batch both choices give the same iterates. One parameter group
    only, since eta_k is one number for all parameters.
    The caller must call `loss.backward(create_graph=True)` before `step()`.
    Introduced in: notebooks/optimization/doubly-adaptive-scaled-algorithm-for-machine.ipynb"""

    def __init__(self, params, lr=1.0, beta2=0.99, alpha=1e-5, adaptive=True, warmup_samples=1,
                 generator: torch.Generator | None = None, same_batch: bool = False):
        check_positive("lr", lr)
        check_fraction("beta2", beta2)
        check_positive("alpha", alpha)
        if isinstance(warmup_samples, bool) or not isinstance(warmup_samples, int) \
                or warmup_samples < 1:
            raise ValueError(f"warmup_samples == {warmup_samples!r}, must be an int >= 1")
        super().__init__(params, dict(lr=lr, beta2=beta2, alpha=alpha, adaptive=bool(adaptive),
                                      warmup_samples=warmup_samples))
        if len(self.param_groups) != 1:
            raise ValueError(f"{len(self.param_groups)} parameter groups, "
                             "OASIS takes one (eta_k is global)")
        self.generator = generator
        self.same_batch = bool(same_batch)
        self.eta, self.theta = lr, math.inf      # eta_{k-1}, theta_{k-1}

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        group = self.param_groups[0]
        params = [p for p, _ in _with_grads(self)]
        grads = [p.grad for p in params]
        first = not self.state[params[0]]
        with torch.enable_grad():
            samples = group["warmup_samples"] if first else 1
            estimates = curvature.hutchinson_diagonal(grads, params, samples, self.generator)
        for p, v in zip(params, estimates):
            state = self.state[p]
            state["D"] = v if first else group["beta2"] * state["D"] + (1 - group["beta2"]) * v
            state["D_hat"] = state["D"].abs().clamp(min=group["alpha"])
        if not first and group["adaptive"]:
            if self.same_batch:
                if closure is None:
                    raise ValueError("same_batch=True needs step(closure): the closure is "
                                     "evaluated again at the previous point")
                self._previous_grads_on_this_batch(params, closure)
            self.eta = self._adaptive_eta(params)
        elif not group["adaptive"]:
            self.eta = group["lr"]
        for p in params:
            state = self.state[p]
            state["previous"], state["previous_grad"] = p.detach().clone(), p.grad.detach().clone()
            p.sub_(self.eta * p.grad.detach() / state["D_hat"])
        return loss

    def _previous_grads_on_this_batch(self, params, closure) -> None:
        """Replace each state["previous_grad"] by the closure's gradient at w_{k-1} (the closure's
        batch), and put w_k and its gradient back."""
        current = [(p.detach().clone(), p.grad.detach().clone()) for p in params]
        for p in params:
            p.copy_(self.state[p]["previous"])
        with torch.enable_grad():
            closure()
        for p, (w, g) in zip(params, current):
            self.state[p]["previous_grad"] = p.grad.detach().clone()
            p.copy_(w)
            p.grad = g

    def _adaptive_eta(self, params) -> float:
        moved = sum(float((self.state[p]["D_hat"] * (p - self.state[p]["previous"]) ** 2).sum())
                    for p in params)
        turned = sum(float(((p.grad.detach() - self.state[p]["previous_grad"]) ** 2
                            / self.state[p]["D_hat"]).sum()) for p in params)
        local = 0.5 * math.sqrt(moved / turned) if turned > 0 else math.inf
        eta = min(math.sqrt(1 + self.theta) * self.eta, local)
        if not math.isfinite(eta):    # both bounds infinite (theta_0 and an unchanged gradient)
            eta = self.eta
        self.theta = eta / self.eta
        return eta


class AdaFisher(torch.optim.Optimizer):
    """AdaFisher: an Adam-like step whose denominator is a diagonal Fisher estimate, not a square
    root. For each nn.Linear of `model`, H_D and S_D are exponential averages (decay gamma, started
    at ones) of the Min-Max-normalized diagonals of K-FAC's factors A (inputs, bias column appended)
    and G (output gradients) of each batch; the layer's Fisher diagonal for W_bar = [W, b] is
    F[i, j] = S_D[i] H_D[j] + damping. Every other parameter gets F = 1 (the authors' code does the
    same: they take bias-corrected momentum SGD steps). With beta the momentum,

        g_t <- g_t + weight_decay theta_{t-1}            (decoupled=False, AdaFisher)
        m_t = beta m_{t-1} + (1 - beta) g_t,
        theta_t = theta_{t-1} - lr (m_t / (1 - beta^t) / F + weight_decay theta_{t-1} [decoupled]).

    Defaults are the authors' code's (lr 1e-3, beta 0.9, gamma 0.8, damping 1e-3). Unlike that code,
    the factors are averaged at every step (its TCov = 1) with weights gamma and 1 - gamma; the code
    multiplies by 0.1 gamma and 0.01 gamma instead. Call `step()` after a forward and backward pass
    of `model` with a loss that is a mean over the batch.
    Introduced in: notebooks/optimization/adafisher.ipynb"""

    def __init__(self, model: nn.Module, lr=1e-3, beta=0.9, gamma=0.8, damping=1e-3,
                 weight_decay=0.0, decoupled=False):
        check_positive("lr", lr)
        check_fraction("beta", beta)
        check_fraction("gamma", gamma)
        check_positive("damping", damping)
        check_nonnegative("weight_decay", weight_decay)
        super().__init__(model.parameters(), dict(lr=lr, beta=beta, weight_decay=weight_decay,
                                                  decoupled=bool(decoupled)))
        self.gamma, self.damping = gamma, damping
        self.capture = curvature.LinearCapture(model)
        self.H_D: dict[nn.Linear, torch.Tensor] = {}
        self.S_D: dict[nn.Linear, torch.Tensor] = {}

    @staticmethod
    def _min_max(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        return (x - x.min()) / (x.max() - x.min() + eps)   # eps as in the authors' code

    def _fisher_diagonals(self) -> dict[nn.Parameter, torch.Tensor]:
        """F for the weight and the bias of every nn.Linear seen in the last backward pass."""
        fisher = {}
        for layer in self.capture.layers:
            if not self.capture.captured(layer):
                continue
            h, s = self.capture.diagonals(layer)
            if layer not in self.H_D:
                self.H_D[layer], self.S_D[layer] = torch.ones_like(h), torch.ones_like(s)
            self.H_D[layer].mul_(self.gamma).add_(self._min_max(h), alpha=1 - self.gamma)
            self.S_D[layer].mul_(self.gamma).add_(self._min_max(s), alpha=1 - self.gamma)
            F = torch.outer(self.S_D[layer], self.H_D[layer]) + self.damping   # (n_out, n_in [+ 1])
            fisher[layer.weight] = F[:, :layer.in_features]
            if layer.bias is not None:
                fisher[layer.bias] = F[:, layer.in_features]
        return fisher

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        fisher = self._fisher_diagonals()
        for p, group in _with_grads(self):
            beta, decay, state = group["beta"], group["weight_decay"], self.state[p]
            if not state:
                state["step"], state["m"] = 0, torch.zeros_like(p)
            state["step"] += 1
            g = p.grad if group["decoupled"] else p.grad + decay * p
            state["m"].mul_(beta).add_(g, alpha=1 - beta)
            direction = state["m"] / (1 - beta ** state["step"]) / fisher.get(p, 1.0)
            p.sub_(group["lr"] * (direction + decay * p if group["decoupled"] else direction))
        return loss
