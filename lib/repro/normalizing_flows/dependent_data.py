"""Maximum likelihood for a flow when the data points are dependent (after Kirchler, Lippert &
Kloft 2023, "Training Normalizing Flows from Dependent Data").

Standard training treats the n rows of a data matrix X (n, D) as independent: the latent codes
U = f(X) (row i is u_i = f(x_i)) are i.i.d. N(0, I_D). Here the rows are dependent with a known
n x n correlation Sigma between samples (relatedness, repeated measurements of one individual,
clusters), and the latent matrix is matrix normal, U ~ MN(0, Sigma, I_D): each latent coordinate
is a vector over the samples with covariance Sigma, coordinates independent. The log-likelihood of
the whole data set is

    log p(X) = -(n D / 2) log 2 pi - (D / 2) log det Sigma - (1 / 2) tr(U^T Sigma^-1 U)
               + sum_i log|det df/dx (x_i)|,

which is the i.i.d. objective when Sigma = I. The flow f itself is the usual one: it models the
marginal density of one data point, and `FlowModel.log_prob` of independent test points is the
quantity to evaluate.

Two covariance structures with the operations this needs (log det Sigma, tr(U^T Sigma^-1 U) and
sampling U): `EquicorrelatedBlocks` (clusters of samples with a common correlation rho inside a
cluster; closed forms in O(n D)) and `DenseCovariance` (any positive-definite Sigma, through one
Cholesky factorisation done once, then triangular solves).

Introduced in: notebooks/normalizing-flows/training-normalizing-flows-from-dependent-data.ipynb
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_int


def _check_latent(u, n: int):
    if u.ndim < 2 or u.shape[-2] != n:
        raise ValueError(f"latent matrix has shape {tuple(u.shape)}, must be (..., {n}, D): one row "
                         "per sample of the covariance")


class EquicorrelatedBlocks:
    """Sigma block diagonal over clusters: unit variances, correlation rho between two samples of
    one cluster, 0 across clusters. Samples are ordered cluster by cluster.

    For one cluster of size m with C = (1 - rho) I + rho 1 1^T:
    det C = (1 - rho)^(m - 1) (1 + (m - 1) rho) and
    C^-1 = (I - rho / (1 + (m - 1) rho) 1 1^T) / (1 - rho), so that
    tr(U^T C^-1 U) = (sum_i |u_i|^2 - rho m^2 / (1 + (m - 1) rho) |mean_i u_i|^2) / (1 - rho).
    sizes: the cluster sizes (positive ints); rho: in (-1 / (max size - 1), 1).
    """

    def __init__(self, sizes, rho: float):
        self.sizes = [check_int("cluster size", int(m)) for m in sizes]
        if not self.sizes:
            raise ValueError("sizes is empty, must hold at least one cluster size")
        largest = max(self.sizes)
        low = -1.0 / (largest - 1) if largest > 1 else -math.inf
        if not (low < rho < 1.0):
            raise ValueError(f"rho == {rho}, must lie in ({low}, 1) for clusters of up to "
                             f"{largest} samples (Sigma must be positive definite)")
        self.rho = float(rho)
        self.n = sum(self.sizes)
        self._cluster = torch.repeat_interleave(torch.arange(len(self.sizes)),
                                                torch.tensor(self.sizes))

    def log_det(self) -> float:
        """log det Sigma."""
        r = self.rho
        return sum((m - 1) * math.log1p(-r) + math.log1p((m - 1) * r) for m in self.sizes)

    def quadratic(self, u):
        """tr(U^T Sigma^-1 U) for U of shape (..., n, D) (leading dims: independent copies), shape
        (...), differentiable in U."""
        _check_latent(u, self.n)
        idx = self._cluster.to(u.device)
        sums = u.new_zeros(*u.shape[:-2], len(self.sizes), u.shape[-1]).index_add(-2, idx, u)
        m = torch.tensor(self.sizes, dtype=u.dtype, device=u.device)
        shrink = self.rho / (1 + (m - 1) * self.rho)                         # (K,)
        between = (shrink * (sums ** 2).sum(-1)).sum(-1)                     # sums: (..., K, D)
        return ((u ** 2).sum((-2, -1)) - between) / (1 - self.rho)

    def matrix(self) -> torch.Tensor:
        """Sigma as a dense (n, n) tensor (float64): for checks and small cases."""
        same = self._cluster[:, None] == self._cluster[None, :]
        cov = same.to(torch.float64) * self.rho
        cov.fill_diagonal_(1.0)
        return cov

    def sample(self, dim: int, generator=None, dtype=None):
        """U ~ MN(0, Sigma, I_dim), shape (n, dim): a shared cluster effect plus a private part."""
        check_int("dim", dim)
        if self.rho < 0:
            return DenseCovariance(self.matrix()).sample(dim, generator, dtype)
        dtype = dtype or torch.get_default_dtype()
        shared = torch.randn(len(self.sizes), dim, generator=generator, dtype=dtype)
        own = torch.randn(self.n, dim, generator=generator, dtype=dtype)
        return math.sqrt(self.rho) * shared[self._cluster] + math.sqrt(1 - self.rho) * own


class DenseCovariance:
    """Any symmetric positive-definite Sigma (n, n): a kinship or relationship matrix, an AR(1)
    correlation. Factorised once (Cholesky, Sigma = L L^T); tr(U^T Sigma^-1 U) = |L^-1 U|_F^2 by
    one triangular solve per evaluation, O(n^2 D)."""

    def __init__(self, cov):
        cov = torch.as_tensor(cov, dtype=torch.float64)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
            raise ValueError(f"cov has shape {tuple(cov.shape)}, must be square (n, n)")
        if not torch.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
            raise ValueError("cov is not symmetric; must be a symmetric positive-definite matrix")
        chol, info = torch.linalg.cholesky_ex(cov)
        if info != 0:
            raise ValueError("cov is not positive definite; must be a symmetric positive-definite "
                             "matrix")
        self.n = cov.shape[0]
        self._cov = cov
        self.chol = chol

    def log_det(self) -> float:
        """log det Sigma."""
        return float(2 * torch.log(torch.diagonal(self.chol)).sum())

    def quadratic(self, u):
        """tr(U^T Sigma^-1 U) for U of shape (..., n, D) (leading dims: independent copies), shape
        (...), differentiable in U."""
        _check_latent(u, self.n)
        chol = self.chol.to(device=u.device, dtype=u.dtype)
        w = torch.linalg.solve_triangular(chol, u, upper=False)              # (..., n, D) = L^-1 U
        return (w ** 2).sum((-2, -1))

    def matrix(self) -> torch.Tensor:
        """Sigma (n, n), float64."""
        return self._cov

    def sample(self, dim: int, generator=None, dtype=None):
        """U ~ MN(0, Sigma, I_dim), shape (n, dim): U = L E with E i.i.d. standard normal."""
        dtype = dtype or torch.get_default_dtype()
        e = torch.randn(self.n, check_int("dim", dim), generator=generator, dtype=torch.float64)
        return (self.chol @ e).to(dtype)


def ar1_correlation(n: int, phi: float) -> torch.Tensor:
    """The (n, n) correlation of a stationary AR(1) sequence, Sigma_ij = phi^|i - j|, |phi| < 1."""
    check_int("n", n)
    if not -1 < phi < 1:
        raise ValueError(f"phi == {phi}, must lie in (-1, 1)")
    i = torch.arange(n, dtype=torch.float64)
    return phi ** (i[:, None] - i[None, :]).abs()


def matrix_normal_log_prob(u, cov):
    """log MN(U; 0, Sigma, I_D) of the whole latent matrix U (..., n, D): shape (...), one value per
    copy, differentiable in U. cov: an `EquicorrelatedBlocks` or `DenseCovariance` (anything with
    n, log_det, quadratic)."""
    _check_latent(u, cov.n)
    n, d = u.shape[-2:]
    return -0.5 * (n * d * math.log(2 * math.pi) + d * cov.log_det() + cov.quadratic(u))


def latent_and_log_det(flow, x):
    """The latent codes u = f(x) (N, D) and log|det df/dx| (N,) of a `coupling.FlowModel`: its
    layers' `forward` in order, as `FlowModel.log_prob` runs them."""
    if x.ndim != 2 or x.shape[1] != flow.dim:
        raise ValueError(f"input has shape {tuple(x.shape)}, must be (N, {flow.dim})")
    log_det = x.new_zeros(x.shape[0])
    for layer in flow.layers:
        x, ld = layer(x)
        log_det = log_det + ld
    return x, log_det


class FlowLatent(torch.nn.Module):
    """A `coupling.FlowModel` as a module whose forward(x) returns (u, log|det df/dx|): the form
    `repro.core.stacked.Ensemble` runs, so that copies can be trained at once on this likelihood."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def forward(self, x):
        return latent_and_log_det(self.flow, x)


def mean_log_likelihood(u, log_det, cov):
    """log p(X) / n from the latent codes U (..., n, D) and the log-dets (..., n) of all n rows:
    shape (...). With cov = EquicorrelatedBlocks([1] * n, 0) (independent rows) it is the usual
    mean of log p(x_i)."""
    if log_det.shape != u.shape[:-1]:
        raise ValueError(f"log_det has shape {tuple(log_det.shape)}, must be {tuple(u.shape[:-1])}")
    return (matrix_normal_log_prob(u, cov) + log_det.sum(-1)) / cov.n


def dependent_log_likelihood(flow, x, cov):
    """The dependent-data log-likelihood log p(X) of the whole data set X (n, D) (module docstring),
    divided by n so that it is on the scale of a mean i.i.d. log-likelihood. With Sigma = I it
    equals flow.log_prob(x).mean(). The rows of x must be in the order of cov's samples."""
    if x.shape[0] != cov.n:
        raise ValueError(f"x has {x.shape[0]} rows, must have {cov.n}: one per sample of cov")
    return mean_log_likelihood(*latent_and_log_det(flow, x), cov)
