"""Kronecker-factored preconditioners whose inverse factors are kept up to date cheaply: MKOR
(Mozaffari, Li, Zhang, Mehri Dehnavi, arXiv 2306.01685, NeurIPS 2023), and a plain K-FAC with
exact inversion as its baseline.

For a linear layer s = W_bar a_bar (a_bar = [a, 1]), K-FAC preconditions the gradient as
L^-1 grad R^-1, with L ~ E[g g^T] (output side) and R ~ E[a_bar a_bar^T] (input side)
(`repro.optimization.curvature`). Inverting a d x d factor costs O(d^3). MKOR replaces each batch's
factor by a rank-1 one, built from the batch means of g and of a_bar, and keeps the inverses of the
factors' running averages directly: with the running average L_t = gamma L_{t-1} + (1 - gamma) g g^T,
the Sherman-Morrison formula gives

    L_t^-1 = L_{t-1}^-1 / gamma - c (L_{t-1}^-1 g)(L_{t-1}^-1 g)^T,
    c = (1 - gamma) / (gamma^2 (1 + (1 - gamma)/gamma g^T L_{t-1}^-1 g)),

two matrix-vector products and one outer product: O(d^2). The paper's Algorithm 1 adds a
norm-based stabilizer (when ||L^-1|| > epsilon, L^-1 <- zeta L^-1 + (1 - zeta) I, before the
update), rescales the preconditioned gradient of each layer to the norm of the raw gradient, and
hands the result to a first-order optimizer (SGD with momentum or Adam); layers it does not
precondition (here every parameter that is not in an nn.Linear) get their raw gradient.

Versions read and what was checked. The algorithm is Algorithm 1 as printed in the image
`assets/MKOR-Algorithm.png` of the authors' repository (github.com/Mohammad-Mozaffari/mkor, commit
3a0e3bb) and their `mkor/mkor.py`; the arXiv text itself could not be opened here. As printed there,
lines 7-8 read gamma L^-1 + (1 - gamma) / (gamma^2 (1 + gamma (1 - gamma) g^T L^-1 g)) L^-1 g g^T L^-1,
which is not the inverse of gamma L + (1 - gamma) g g^T (the first coefficient should be 1/gamma and
the second term subtracted); we use the exact Sherman-Morrison inverse above. The authors' code
differs again: it applies sm_inverse to 0.95 L^-1 + 0.05 I with weight 1 on g g^T, tests the
stabilizer on the largest entry (> 2) and mixes in the identity with weight 0.1 at the next update.
Our defaults take its norm (largest |entry|), its threshold (2) and its weights (zeta = 0.9,
gamma = 0.95); it also clips the entries of a and g at +-100 and works in half precision, which we
do not.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.validation import check_int, check_positive
from . import curvature
from .common import check_fraction, check_nonnegative, closure_loss


def sherman_morrison(inverse: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """(M + u v^T)^-1 from inverse = M^-1 in O(d^2): M^-1 - (M^-1 u)(v^T M^-1) / (1 + v^T M^-1 u);
    v defaults to u. Raises when 1 + v^T M^-1 u = 0 (M + u v^T is singular).
    Introduced in: notebooks/optimization/mkor.ipynb"""
    v = u if v is None else v
    left, right = inverse @ u, v @ inverse
    denominator = 1 + v @ left
    if denominator == 0:
        raise ZeroDivisionError("1 + v^T M^-1 u == 0: M + u v^T is singular")
    return torch.addr(inverse, left, right, alpha=-1 / float(denominator))   # one pass over d^2 entries


def decayed_rank1_inverse(inverse: torch.Tensor, x: torch.Tensor, gamma: float,
                          inplace: bool = False) -> torch.Tensor:
    """(gamma M + (1 - gamma) x x^T)^-1 from inverse = M^-1 (symmetric), by Sherman-Morrison: the
    inverse of the running average after one more rank-1 term, in O(d^2). With `inplace`,
    `inverse` itself is overwritten (no new d x d tensor) and returned.
    Introduced in: notebooks/optimization/mkor.ipynb"""
    check_fraction("gamma", gamma)
    if gamma == 0:
        raise ValueError("gamma == 0 leaves the rank-1 matrix x x^T, which has no inverse")
    # gamma M + (1 - gamma) x x^T = gamma (M + c x x^T), c = (1 - gamma) / gamma
    c = (1 - gamma) / gamma
    left = inverse @ x                      # M^-1 x (= (x^T M^-1)^T for a symmetric M)
    right = x @ inverse
    denominator = 1 + c * (x @ left)
    update = torch.Tensor.addr_ if inplace else torch.addr
    return update(inverse, left, right, beta=1 / gamma, alpha=-c / (gamma * float(denominator)))


def stabilize(inverse: torch.Tensor, epsilon: float, zeta: float) -> torch.Tensor:
    """MKOR's norm-based stabilizer: zeta inverse + (1 - zeta) I when the largest |entry| of
    `inverse` exceeds epsilon, `inverse` unchanged otherwise.
    Introduced in: notebooks/optimization/mkor.ipynb"""
    if inverse.abs().max() > epsilon:
        eye = torch.eye(inverse.shape[0], dtype=inverse.dtype, device=inverse.device)
        return zeta * inverse + (1 - zeta) * eye
    return inverse


def _first_order(name: str, param_groups, lr, momentum, weight_decay) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"first_order == {name!r}, must be 'sgd' or 'adam'")


def _matrix_grad(layer: nn.Linear) -> torch.Tensor:
    """grad W_bar = [grad W, grad b], (n_out, n_in [+ 1])."""
    if layer.bias is None:
        return layer.weight.grad
    return torch.cat([layer.weight.grad, layer.bias.grad[:, None]], dim=1)


def _write_grad(layer: nn.Linear, update: torch.Tensor) -> None:
    layer.weight.grad.copy_(update[:, :layer.in_features])
    if layer.bias is not None:
        layer.bias.grad.copy_(update[:, layer.in_features])


class _KroneckerPreconditioned(torch.optim.Optimizer):
    """What MKOR and the K-FAC baseline share: hooks on every nn.Linear of `model`
    (`curvature.LinearCapture`), a step that replaces each captured layer's gradient by its
    preconditioned gradient (rescaled to the raw gradient's norm with `rescale`), and a first-order
    optimizer ("sgd" with `momentum`, or "adam") that takes the step for every parameter."""

    def __init__(self, model: nn.Module, lr, momentum, first_order, weight_decay, rescale,
                 update_every):
        check_positive("lr", lr)
        check_fraction("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        self.update_every = check_int("update_every", update_every)
        super().__init__(model.parameters(), dict(lr=lr))
        self.first_order = _first_order(first_order, self.param_groups, lr, momentum, weight_decay)
        self.param_groups = self.first_order.param_groups  # one set of groups: schedulers see both
        self.rescale = bool(rescale)
        self.capture = curvature.LinearCapture(model)
        self.steps = 0

    def _update_factors(self, layer: nn.Linear) -> None:
        raise NotImplementedError

    def _precondition(self, layer: nn.Linear, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for layer in self.capture.layers:
            if layer.weight.grad is None or not self.capture.captured(layer):
                continue
            if self.steps % self.update_every == 0:
                self._update_factors(layer)
            grad = _matrix_grad(layer)
            update = self._precondition(layer, grad)
            if self.rescale:
                norm = update.norm()
                if norm > 0:
                    update = update * (grad.norm() / norm)
            _write_grad(layer, update)
        self.first_order.step()
        self.steps += 1
        return loss


class MKOR(_KroneckerPreconditioned):
    """MKOR (Algorithm 1): for every nn.Linear of `model`, the inverses L^-1 (outputs, n_out) and
    R^-1 (inputs with the bias column, n_in + 1) of running averages of rank-1 factors, both started
    at I. Each step (every `update_every`-th), with g and a_bar the batch means of the per-example
    output gradients and of the inputs:

        L^-1 <- stabilize(L^-1),  R^-1 <- stabilize(R^-1)                     (lines 5-6)
        L^-1 <- (gamma L + (1 - gamma) g g^T)^-1,  R^-1 likewise with a_bar   (lines 7-8, exact SM)
        D = L^-1 grad W_bar R^-1,  D <- ||grad W_bar|| / ||D|| D              (lines 9-10)

    then the first-order optimizer steps with D as the layer's gradient (line 14). Call `step()`
    after a forward and backward pass of `model` with a loss that is a mean over the batch.
    Introduced in: notebooks/optimization/mkor.ipynb"""

    def __init__(self, model: nn.Module, lr=0.1, momentum=0.9, gamma=0.95, zeta=0.9, epsilon=2.0,
                 first_order="sgd", weight_decay=0.0, rescale=True, update_every=1):
        check_fraction("gamma", gamma)
        check_fraction("zeta", zeta)
        check_positive("epsilon", epsilon)
        if gamma == 0:
            raise ValueError("gamma == 0 leaves a rank-1 factor, which has no inverse")
        super().__init__(model, lr, momentum, first_order, weight_decay, rescale, update_every)
        self.gamma, self.zeta, self.epsilon = gamma, zeta, epsilon
        self.left_inverse: dict[nn.Linear, torch.Tensor] = {}
        self.right_inverse: dict[nn.Linear, torch.Tensor] = {}

    def _update_factors(self, layer: nn.Linear) -> None:
        a, g = self.capture.inputs[layer], self.capture.output_grads[layer]
        a_mean = (curvature.with_bias_column(a) if layer.bias is not None else a).mean(0)
        g_mean = g.mean(0)
        for inverses, x in ((self.left_inverse, g_mean), (self.right_inverse, a_mean)):
            if layer not in inverses:
                inverses[layer] = torch.eye(x.shape[0], dtype=x.dtype, device=x.device)
            stable = stabilize(inverses[layer], self.epsilon, self.zeta)
            inverses[layer] = decayed_rank1_inverse(stable, x, self.gamma)

    def _precondition(self, layer: nn.Linear, grad: torch.Tensor) -> torch.Tensor:
        return self.left_inverse[layer] @ grad @ self.right_inverse[layer]


class KFAC(_KroneckerPreconditioned):
    """The baseline MKOR improves on: K-FAC with full-batch factors and exact inversion. For every
    nn.Linear of `model`, running averages (decay gamma, started at I) of the batch factors
    A = mean a_bar a_bar^T and G = mean g g^T (`curvature.kronecker_factors`), and the step
    D = (G + damping I)^-1 grad W_bar (A + damping I)^-1 (`curvature.kfac_precondition`, two
    solves, O(d^3)), rescaled and handed to the same first-order optimizer as MKOR's.
    Introduced in: notebooks/optimization/mkor.ipynb"""

    def __init__(self, model: nn.Module, lr=0.1, momentum=0.9, gamma=0.95, damping=1e-3,
                 first_order="sgd", weight_decay=0.0, rescale=True, update_every=1):
        check_fraction("gamma", gamma)
        check_positive("damping", damping)
        super().__init__(model, lr, momentum, first_order, weight_decay, rescale, update_every)
        self.gamma, self.damping = gamma, damping
        self.A: dict[nn.Linear, torch.Tensor] = {}
        self.G: dict[nn.Linear, torch.Tensor] = {}

    def _update_factors(self, layer: nn.Linear) -> None:
        A, G = self.capture.factors(layer)
        for running, new in ((self.A, A), (self.G, G)):
            if layer not in running:
                running[layer] = torch.eye(new.shape[0], dtype=new.dtype, device=new.device)
            running[layer] = self.gamma * running[layer] + (1 - self.gamma) * new

    def _precondition(self, layer: nn.Linear, grad: torch.Tensor) -> torch.Tensor:
        return curvature.kfac_precondition(grad, self.A[layer], self.G[layer], self.damping)
