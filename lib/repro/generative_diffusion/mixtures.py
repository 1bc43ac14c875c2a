"""Gaussian mixtures with full covariances: exact densities, scores, noised laws and posteriors.

Under a linear forward process x_t = alpha x_0 + sigma eps, a mixture sum_k w_k N(m_k, S_k) stays a
mixture, sum_k w_k N(alpha m_k, alpha^2 S_k + sigma^2 I), so the score of every noised law, the
Tweedie denoiser E[x_0 | x_t] and, for a linear measurement y = A x + noise, the exact posterior
are all closed-form. Data on a linear subspace are a mixture with singular covariances
(`embedded`): its noised laws (sigma > 0) are regular.

Parameters are kept in float64; methods return the dtype of their input.
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_int, check_positive


def _check_points(x, dim: int):
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {dim})")


class GaussianMixture:
    """sum_k w_k N(m_k, S_k) in D dimensions.

    means (K, D); covariances (K, D, D), or scales (K,) for isotropic components s_k^2 I;
    weights (K,) positive, normalized here (equal by default).
    """

    def __init__(self, means, covariances=None, weights=None, *, scales=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim != 2:
            raise ValueError(f"means has shape {tuple(self.means.shape)}, must be (K, D)")
        k, self.dim = self.means.shape
        if (covariances is None) == (scales is None):
            raise ValueError("give exactly one of covariances (K, D, D) and scales (K,)")
        if scales is not None:
            scales = torch.as_tensor(scales, dtype=torch.float64).reshape(-1)
            if scales.shape != (k,):
                raise ValueError(f"scales has shape {tuple(scales.shape)}, must be ({k},)")
            check_positive("scales", scales.numpy())
            covariances = scales[:, None, None] ** 2 * torch.eye(self.dim, dtype=torch.float64)
        self.covariances = torch.as_tensor(covariances, dtype=torch.float64)
        if self.covariances.shape != (k, self.dim, self.dim):
            raise ValueError(f"covariances has shape {tuple(self.covariances.shape)}, "
                             f"must be ({k}, {self.dim}, {self.dim})")
        w = torch.as_tensor([1.0] * k if weights is None else weights, dtype=torch.float64)
        if w.shape != (k,):
            raise ValueError(f"weights has shape {tuple(w.shape)}, must be ({k},)")
        check_positive("weights", w.numpy())
        self.weights = w / w.sum()

    def __repr__(self):
        return f"GaussianMixture(components={len(self.weights)}, dim={self.dim})"

    @property
    def mean(self):
        return self.weights @ self.means

    @property
    def covariance(self):
        """The mixture's covariance: E[S_k] + Cov[m_k]."""
        centred = self.means - self.mean
        return (torch.einsum("k,kij->ij", self.weights, self.covariances)
                + torch.einsum("k,ki,kj->ij", self.weights, centred, centred))

    def sample(self, n: int, generator=None, return_components: bool = False):
        """n exact samples (n, D) in float64, and each sample's component when asked."""
        n = check_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        # a square root that exists for singular covariances too (data on a subspace)
        vals, vecs = torch.linalg.eigh(self.covariances)
        vals = torch.where(vals > 1e-12 * vals.amax(-1, keepdim=True), vals, 0.0)  # rounding noise
        roots = vecs * vals.sqrt()[:, None, :]
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[k] + torch.einsum("nij,nj->ni", roots[k], noise)
        return (x, k) if return_components else x

    def _responsibilities(self, x):
        """log w_k + log N(x; m_k, S_k) (N, K), and the precision-times-residual S_k^-1 (m_k - x)."""
        _check_points(x, self.dim)
        chol = torch.linalg.cholesky(self.covariances).to(x)          # fails for singular S
        resid = self.means.to(x)[None] - x[:, None, :]                  # (N, K, D)
        z = torch.linalg.solve_triangular(chol, resid.transpose(0, 1).transpose(1, 2),
                                          upper=False)                  # (K, D, N)
        log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)     # (K,)
        log_n = -0.5 * (z ** 2).sum(1).T - 0.5 * log_det - 0.5 * self.dim * math.log(2 * math.pi)
        pull = torch.cholesky_solve(resid.transpose(0, 1).transpose(1, 2), chol)  # (K, D, N)
        return self.weights.to(x).log() + log_n, pull.permute(2, 0, 1)

    def log_prob(self, x):
        """log p(x), (N,); needs regular covariances."""
        log_joint, _ = self._responsibilities(x)
        return torch.logsumexp(log_joint, 1)

    def score(self, x):
        """grad_x log p(x) = sum_k r_k(x) S_k^-1 (m_k - x), (N, D)."""
        log_joint, pull = self._responsibilities(x)
        r = torch.softmax(log_joint, 1)
        return torch.einsum("nk,nkd->nd", r, pull)

    def component_posterior(self, x):
        """r_k(x) = P(component k | x), (N, K)."""
        return torch.softmax(self._responsibilities(x)[0], 1)

    def noised(self, alpha, sigma) -> "GaussianMixture":
        """The law of alpha x + sigma eps: sum_k w_k N(alpha m_k, alpha^2 S_k + sigma^2 I)."""
        alpha, sigma = float(alpha), float(sigma)
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(alpha * self.means, alpha ** 2 * self.covariances + sigma ** 2 * eye,
                               self.weights)

    def denoise(self, x, alpha, sigma):
        """Tweedie's E[x_0 | x_t = x] = (x + sigma^2 grad log p_t(x)) / alpha, (N, D)."""
        score = self.noised(alpha, sigma).score(x)
        return (x + float(sigma) ** 2 * score) / float(alpha)

    def embedded(self, basis) -> "GaussianMixture":
        """The law of A z for z from this mixture and A (D', D): data on a D-dim subspace of R^D'."""
        a = torch.as_tensor(basis, dtype=torch.float64)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"basis has shape {tuple(a.shape)}, must be (D', {self.dim})")
        covs = a @ self.covariances @ a.T
        return GaussianMixture(self.means @ a.T, 0.5 * (covs + covs.transpose(1, 2)), self.weights)

    def posterior(self, operator, noise_std: float, y) -> "GaussianMixture":
        """The exact law of x given y = A x + noise_std * eps, for one measurement y (M,)."""
        a = torch.as_tensor(operator, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if a.ndim != 2 or a.shape[1] != self.dim or y.shape != (a.shape[0],):
            raise ValueError(f"operator (M, {self.dim}) and y (M,) needed; got "
                             f"{tuple(a.shape)} and {tuple(y.shape)}")
        check_positive("noise_std", noise_std)
        noise = noise_std ** 2 * torch.eye(a.shape[0], dtype=torch.float64)
        evidence = GaussianMixture(self.means @ a.T, a @ self.covariances @ a.T + noise, self.weights)
        log_w = evidence._responsibilities(y[None])[0][0]               # log w_k N(y; A m_k, ...)
        gain = self.covariances @ a.T @ torch.linalg.inv(evidence.covariances)   # (K, D, M)
        means = self.means + torch.einsum("kdm,km->kd", gain, y - self.means @ a.T)
        covs = self.covariances - gain @ a @ self.covariances
        return GaussianMixture(means, 0.5 * (covs + covs.transpose(1, 2)), torch.softmax(log_w, 0))
