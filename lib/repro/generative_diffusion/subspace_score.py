"""Score networks for data on an unknown d-dimensional linear subspace of R^D (Chen, Huang, Zhao and
Wang, 2023).

For data x_0 = A z with A (D, d) orthonormal and a forward process x_t = alpha x_0 + sigma eps,
the score of x_t splits into a part on the subspace and an exact part orthogonal to it:

    grad log p_t(x) = A grad log p_t^z(A^T x) - (I - A A^T) x / sigma^2,

where p_t^z is the law of alpha z + sigma eps_d (the latent noised law). The paper's score network
copies this form with a learned orthonormal V (D, d) in place of A and a small network f on the
d projected coordinates:

    s_{V, theta}(x, t) = (V f_theta(V^T x, t) - x) / sigma(t)^2.

`SubspaceDenoiser` is that network in the noise-prediction form eps = -sigma s used by
`objectives.noise_prediction_loss`: eps(x, t) = (x - V f(V^T x, t)) / sigma(t).

Introduced in: notebooks/generative-diffusion/score-approximation-estimation-and-distribution-recovery.ipynb
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.models import MLP
from ..core.validation import check_int
from .denoisers import TimeFeatures
from .processes import Process, _per_row


def _check_basis(name, basis, dim: int | None = None):
    basis = torch.as_tensor(basis)
    if basis.ndim != 2 or basis.shape[1] > basis.shape[0]:
        raise ValueError(f"{name} has shape {tuple(basis.shape)}, must be (D, d) with d <= D")
    if dim is not None and basis.shape[0] != dim:
        raise ValueError(f"{name} has {basis.shape[0]} rows, must have {dim} (the points' dimension)")
    return basis


def random_basis(dim: int, latent_dim: int, generator=None, dtype=torch.float64):
    """A (dim, latent_dim) matrix with orthonormal columns, uniform on the Stiefel manifold."""
    check_int("dim", dim)
    check_int("latent_dim", latent_dim)
    if latent_dim > dim:
        raise ValueError(f"latent_dim == {latent_dim}, must be <= dim == {dim}")
    g = torch.randn(dim, latent_dim, generator=generator, dtype=dtype)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r))  # sign fix: makes the law exactly uniform


def orthogonal_score(x, basis, sigma):
    """The off-subspace part of the score of a noised subspace law: -(I - A A^T) x / sigma^2."""
    a = _check_basis("basis", basis, x.shape[-1]).to(x)
    s = _per_row(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x)  # no float32 detour
    return -(x - (x @ a) @ a.T) / s ** 2


def subspace_distance(v, a) -> float:
    """||V V^T - A A^T||_F between the subspaces spanned by two orthonormal bases (D, d):
    0 when they agree, sqrt(2 d) when they are orthogonal."""
    v, a = _check_basis("v", v), _check_basis("a", a)
    if v.shape != a.shape:
        raise ValueError(f"v and a must have the same shape, got {tuple(v.shape)} and {tuple(a.shape)}")
    v, a = v.double(), a.double()
    return float(torch.linalg.matrix_norm(v @ v.T - a @ a.T))


def random_subspace_distance2(dim: int, latent_dim: int) -> float:
    """E ||V V^T - A A^T||_F^2 for V uniform and A fixed: 2 d (1 - d / D)."""
    check_int("dim", dim)
    check_int("latent_dim", latent_dim)
    if latent_dim > dim:
        raise ValueError(f"latent_dim == {latent_dim}, must be <= dim == {dim}")
    return 2 * latent_dim * (1 - latent_dim / dim)


def off_subspace_variance(x, basis) -> float:
    """Mean squared off-subspace coordinate of the points x (N, D): |(I - A A^T) x|^2 / (D - d),
    averaged over the points."""
    a = _check_basis("basis", basis, x.shape[-1]).to(x)
    if a.shape[0] == a.shape[1]:
        raise ValueError("basis spans the whole space: there is no off-subspace part")
    resid = x - (x @ a) @ a.T
    return float((resid ** 2).sum(1).mean() / (a.shape[0] - a.shape[1]))


class SubspaceDenoiser(nn.Module):
    """eps(x, t) = (x - V f(V^T x, t)) / sigma(t): the paper's subspace score network
    s = (V f(V^T x, t) - x) / sigma^2 read as a noise predictor. V = Q of the QR factorization of a
    free (D, d) matrix, so its columns stay orthonormal; f is an MLP on [V^T x, time features]."""

    def __init__(self, dim: int, latent_dim: int, process: Process, width: int = 64,
                 depth: int = 2, time_features: int = 16, activation: str = "gelu", seed: int = 0):
        super().__init__()
        self.dim, self.latent_dim = check_int("dim", dim), check_int("latent_dim", latent_dim)
        if latent_dim > dim:
            raise ValueError(f"latent_dim == {latent_dim}, must be <= dim == {dim}")
        self.process = process
        # a random orthonormal start: entries of size 1/sqrt(D), so an optimizer step turns V by
        # about the same angle whatever D is
        g = torch.Generator().manual_seed(seed)
        self.raw_basis = nn.Parameter(random_basis(dim, latent_dim, g, torch.get_default_dtype()))
        self.time = TimeFeatures(time_features)
        self.net = MLP(latent_dim + 2 * (time_features // 2), latent_dim, width=width, depth=depth,
                       activation=activation)

    @property
    def basis(self):
        """The learned orthonormal V (D, d)."""
        q, r = torch.linalg.qr(self.raw_basis)
        return q * torch.sign(torch.diagonal(r))

    def latent(self, z, t):
        """f(z, t) on the projected coordinates z = V^T x, (N, d)."""
        return self.net(torch.cat([z, self.time(t, len(z)).to(z)], 1))

    def forward(self, x, t):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {self.dim})")
        v = self.basis.to(x)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        sigma = _per_row(self.process.sigma(t), x)
        return (x - self.latent(x @ v, t) @ v.T) / sigma
