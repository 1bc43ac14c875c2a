"""Shampoo (Gupta, Koren & Singer, 2018): a non-diagonal, Kronecker-factored preconditioner.

For a matrix parameter W (m x n) with gradient G_t, Shampoo accumulates the two factors

    L_t = L_{t-1} + G_t G_t^T   (m x m),    R_t = R_{t-1} + G_t^T G_t   (n x n),

starting from eps * I, and steps W <- W - lr L_t^{-1/4} G_t R_t^{-1/4}. A vector (a bias) gets the
same rule with one factor, which is then diagonal AdaGrad: v_t = v_{t-1} + g_t^2, step
lr g_t / v_t^{1/2}. Unlike Adam's diagonal scaling, the matrix roots mix the coordinates of the
gradient: the preconditioner is non-diagonal. The inverse roots are computed exactly (eigh) at
every step, which suits the chapter's small layers; no grafting, momentum or stale preconditioner.

Introduced in: notebooks/optimization/optimizers-qualitatively-alter-solutions-and-we.ipynb
"""
from __future__ import annotations

import torch

from ..core.validation import check_positive
from .common import closure_loss


def inverse_root(A: torch.Tensor, p: int) -> torch.Tensor:
    """A^{-1/p} for a symmetric positive definite A, by eigendecomposition."""
    values, vectors = torch.linalg.eigh(A)
    return (vectors * values.clamp(min=torch.finfo(A.dtype).tiny) ** (-1.0 / p)) @ vectors.T


class Shampoo(torch.optim.Optimizer):
    """Shampoo for matrices (L^{-1/4} G R^{-1/4}) and diagonal AdaGrad for vectors; the factors
    start at eps * I (module docstring).
    Introduced in: notebooks/optimization/optimizers-qualitatively-alter-solutions-and-we.ipynb"""

    def __init__(self, params, lr: float = 0.1, eps: float = 1e-4):
        check_positive("lr", lr)
        check_positive("eps", eps)
        super().__init__(params, dict(lr=lr, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state, eps = p.grad, self.state[p], group["eps"]
                if p.dim() == 2:
                    if not state:
                        state["L"] = eps * torch.eye(p.shape[0], dtype=p.dtype, device=p.device)
                        state["R"] = eps * torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
                    state["L"].add_(g @ g.T)
                    state["R"].add_(g.T @ g)
                    update = inverse_root(state["L"], 4) @ g @ inverse_root(state["R"], 4)
                elif p.dim() <= 1:
                    if not state:
                        state["v"] = torch.full_like(g, eps)
                    update = g / state["v"].add_(g * g).sqrt()
                else:
                    raise ValueError(f"a parameter of shape {tuple(p.shape)}: Shampoo here takes "
                                     "vectors and matrices only")
                p.sub_(group["lr"] * update)
        return loss
