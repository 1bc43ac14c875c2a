"""Regularized auto-encoders as score estimators (Alain and Bengio): a reconstruction function
r(x) trained to undo small Gaussian corruption, or to reconstruct with a contractive penalty on
its whole Jacobian, satisfies (r(x) - x) / sigma^2 -> grad log p(x) as sigma -> 0; and an
approximate Metropolis-Hastings chain that uses only that estimated score.

- `ReconstructionMLP`: r(x) = x + MLP(x), a reconstruction function for points in R^D.
- `dae_loss`: the denoising criterion E |r(x + sigma eps) - x|^2.
- `contractive_loss`: the reconstruction-contractive criterion E |r(x) - x|^2 + lam |dr/dx|_F^2.
- `reconstruction_score`: the score estimate x -> (r(x) - x) / scale.
- `score_line_integral`: log p(y) - log p(x) as the line integral of a score from x to y
  (Gauss-Legendre), the energy difference the chain needs.
- `approximate_metropolis`: random-walk Metropolis-Hastings whose acceptance ratio is that line
  integral of an estimated score instead of an exact density ratio.

Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.models import MLP
from ..core.validation import check_int, check_positive


def _check_batch(name, x, copies: bool = False):
    if not torch.is_tensor(x) or not (x.ndim == 2 or (copies and x.ndim == 3)):
        shape = "(N, D) or (copies, N, D)" if copies else "(N, D)"
        raise ValueError(f"{name} must be a {shape} tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")


class ReconstructionMLP(nn.Module):
    """r(x) = x + MLP(x): an auto-encoder's reconstruction function written as the identity plus a
    learned residual (the paper's results do not depend on how r is parameterized).

    Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
    """

    def __init__(self, dim: int, width: int = 64, depth: int = 2, activation: str = "gelu"):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.net = MLP(dim, dim, width=width, depth=depth, activation=activation)

    def forward(self, x):
        return x + self.net(x)


def dae_loss(model, x0, sigma: float, generator=None):
    """Mean over the batch of |r(x0 + sigma eps) - x0|^2 (summed over coordinates), eps ~ N(0, I):
    the denoising auto-encoder's criterion, whose minimizer is r*(x) = E[x0 | x0 + sigma eps = x].
    x0 (N, D) gives a number; x0 (copies, N, D), for a stack of models, one loss per copy.

    Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
    """
    _check_batch("x0", x0, copies=True)
    check_positive("sigma", sigma)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    return ((model(x0 + sigma * eps) - x0) ** 2).sum(-1).mean(-1)


def jacobian_frobenius2(model, x, create_graph: bool = True):
    """|dr/dx|_F^2 at every row of x, (N,) or (copies, N), by one backward pass per output
    coordinate, and r(x).

    Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
    """
    _check_batch("x", x, copies=True)
    x = x.detach().requires_grad_(True)
    r = model(x)
    total = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    for i in range(r.shape[-1]):
        (row,) = torch.autograd.grad(r[..., i].sum(), x, create_graph=create_graph,
                                     retain_graph=True)
        total = total + (row ** 2).sum(-1)
    return total, r


def contractive_loss(model, x0, penalty: float):
    """Mean over the batch of |r(x0) - x0|^2 + penalty |dr/dx (x0)|_F^2: reconstruction error with
    the contraction applied to the whole reconstruction function (not only the encoder).
    x0 (N, D) gives a number; x0 (copies, N, D), for a stack of models, one loss per copy.

    Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
    """
    check_positive("penalty", penalty)
    jac2, r = jacobian_frobenius2(model, x0)
    return (((r - x0) ** 2).sum(-1) + penalty * jac2).mean(-1)


def reconstruction_score(model, scale: float):
    """The score estimate x -> (r(x) - x) / scale: scale = sigma^2 for a denoising auto-encoder,
    the penalty for a contractive one.

    Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
    """
    check_positive("scale", scale)

    def score(x):
        with torch.no_grad():
            return (model(x) - x) / scale
    return score


def score_line_integral(score, x, y, points: int = 4):
    """int_0^1 score(x + u (y - x)) . (y - x) du, (N,), by `points`-node Gauss-Legendre quadrature:
    log p(y) - log p(x) when score = grad log p (exact for a Gaussian from 2 nodes on).

    Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
    """
    _check_batch("x", x)
    if y.shape != x.shape:
        raise ValueError(f"y has shape {tuple(y.shape)}, must match x's {tuple(x.shape)}")
    points = check_int("points", points)
    nodes, weights = np.polynomial.legendre.leggauss(points)
    u = torch.as_tensor((nodes + 1) / 2, dtype=x.dtype, device=x.device)        # on [0, 1]
    w = torch.as_tensor(weights / 2, dtype=x.dtype, device=x.device)
    step = y - x
    path = x[None] + u[:, None, None] * step[None]                                 # (Q, N, D)
    s = score(path.reshape(-1, x.shape[1])).reshape(path.shape)
    return torch.einsum("q,qnd,nd->n", w, s, step)


def approximate_metropolis(score, x, steps: int, step_size: float, points: int = 4,
                           generator=None):
    """`steps` random-walk Metropolis-Hastings moves x -> x + step_size N(0, I) of every row of x,
    accepted with probability min(1, exp(score_line_integral(score, x, x'))): the density ratio
    p(x') / p(x) is replaced by the exponential of the line integral of an estimated score.
    Returns the final states and the mean acceptance rate.

    Introduced in: notebooks/generative-diffusion/what-regularized-auto-encoders-learn-from-the.ipynb
    """
    _check_batch("x", x)
    steps = check_int("steps", steps)
    check_positive("step_size", step_size)
    accepted = 0.0
    for _ in range(steps):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        proposal = x + step_size * noise
        log_ratio = score_line_integral(score, x, proposal, points)
        u = torch.rand(len(x), generator=generator, dtype=x.dtype).to(x.device)
        accept = u.log() < log_ratio
        x = torch.where(accept[:, None], proposal, x)
        accepted += accept.double().mean().item()
    return x, accepted / steps
