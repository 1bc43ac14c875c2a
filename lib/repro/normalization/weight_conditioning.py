"""Weight conditioning (Saratchandran, Wang & Lucey, ECCV 2024, arXiv 2409.03424): every weight
matrix W of a layer is used through a conditioned matrix E(W) W, where E(W) is a diagonal
preconditioner that rescales each output unit's row of W to unit 2-norm (row equilibration), so the
smallest and largest singular values of the used matrix move closer together. A convolution's
kernel is treated as the matrix (out_channels, in_channels * kernel size). Weight standardization
(Qiao et al., 2019: each row minus its mean, divided by its standard deviation), the paper's other
weight-space baseline, is here too; weight normalization lives in `normalization.weight_norm`.

The choice of E (row equilibration) is ours: the text of the paper past its introduction could
not be read here, so which preconditioner the paper uses is unverified (see the notebook).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.validation import check_choice, check_int


def _rows(w: torch.Tensor) -> torch.Tensor:
    """The weight as a matrix: one row per output unit (channel)."""
    return w.flatten(1)


def equilibrate(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """E(W) W with E = diag(1 / ||W_i||): every output unit's weights (a row of W, or a
    convolution's kernel flattened) scaled to unit 2-norm; the shape of `w` is kept.

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    norms = _rows(w).norm(dim=1).clamp_min(eps)
    return w / norms.view(-1, *([1] * (w.dim() - 1)))


def standardize(w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Weight standardization: each output unit's weights minus their mean, divided by their
    standard deviation (population, plus `eps`); the shape of `w` is kept.

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    rows = _rows(w)
    mu = rows.mean(dim=1, keepdim=True)
    sd = rows.std(dim=1, correction=0, keepdim=True) + eps
    return ((rows - mu) / sd).view_as(w)


TRANSFORMS = {"conditioned": equilibrate, "standardized": standardize}


def singular_values(w: torch.Tensor) -> torch.Tensor:
    """Singular values (descending) of a weight viewed as the matrix (out, in * kernel size).

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    return torch.linalg.svdvals(_rows(w.detach()).double())


def condition_number(w: torch.Tensor) -> float:
    """sigma_max / sigma_min of the weight viewed as a matrix (inf when it is rank deficient).

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    s = singular_values(w)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


class _Reparameterized:
    """Mixin for nn.Linear / nn.Conv*d: the layer keeps its raw parameter `weight` (torch's default
    initialization) and computes with `effective_weight()` = transform(weight)."""

    transform: Callable[[torch.Tensor], torch.Tensor]

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer computes with, transform(weight)."""
        return self.transform(self.weight)

    def forward(self, x):
        return self._conv_forward(x, self.effective_weight(), self.bias) if hasattr(
            self, "_conv_forward") else nn.functional.linear(x, self.effective_weight(), self.bias)


def _make(base: type, kind: str) -> type:
    check_choice("kind", kind, tuple(TRANSFORMS))
    name = f"{kind.capitalize()}{base.__name__}"
    doc = (f"A drop-in {base.__name__} whose weight W is used as {TRANSFORMS[kind].__name__}(W).\n\n"
           "    Introduced in: notebooks/normalization/"
           "weight-conditioning-for-smooth-optimization-of.ipynb\n    ")
    return type(name, (_Reparameterized, base),
                {"transform": staticmethod(TRANSFORMS[kind]), "__doc__": doc})


ConditionedLinear = _make(nn.Linear, "conditioned")
ConditionedConv1d = _make(nn.Conv1d, "conditioned")
ConditionedConv2d = _make(nn.Conv2d, "conditioned")
StandardizedLinear = _make(nn.Linear, "standardized")
StandardizedConv1d = _make(nn.Conv1d, "standardized")
StandardizedConv2d = _make(nn.Conv2d, "standardized")
_CONVS = {("conditioned", 1): ConditionedConv1d, ("conditioned", 2): ConditionedConv2d,
          ("standardized", 1): StandardizedConv1d, ("standardized", 2): StandardizedConv2d}


def conv_factory(kind: str, dims: int = 2) -> type:
    """The convolution class for `SmallCNN(conv=...)`: kind 'conditioned' or 'standardized'.

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    check_choice("kind", kind, tuple(TRANSFORMS))
    check_choice("dims", dims, (1, 2))
    return _CONVS[kind, dims]


def linear_factory(kind: str) -> type:
    """The linear class for `MLP(linear=...)` or `SmallCNN(linear=...)`.

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    check_choice("kind", kind, tuple(TRANSFORMS))
    return {"conditioned": ConditionedLinear, "standardized": StandardizedLinear}[kind]


def effective_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights every linear/convolution layer of `model` computes with, in order.

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    out = []
    for m in model.modules():
        if isinstance(m, _Reparameterized):
            out.append(m.effective_weight().detach())
        elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            out.append(m.weight.detach())
        elif hasattr(m, "v") and hasattr(m, "g") and isinstance(getattr(m, "weight", None),
                                                                 torch.Tensor):
            out.append(m.weight.detach())  # weight normalization: w = g v / ||v||
    return out


def top_hessian_eigenvalue(model: nn.Module, loss_fn: Callable, batch, iters: int = 30,
                           seed: int = 0) -> float:
    """The largest-magnitude eigenvalue of the Hessian of loss_fn(model(x), y) with respect to all
    of `model`'s trainable parameters at their current values, by `iters` steps of power iteration
    on Hessian-vector products (double backward) from a seeded random start.

    Introduced in: notebooks/normalization/weight-conditioning-for-smooth-optimization-of.ipynb
    """
    check_int("iters", iters)
    x, y = batch
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
    eig = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((u * u).sum() for u in v))
        v = [u / norm for u in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eig = float(sum((a * b).sum() for a, b in zip(hv, v)))
        v = [h.detach() for h in hv]
    return eig
