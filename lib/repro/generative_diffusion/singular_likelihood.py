"""Maximum likelihood for a deep generative model of a singular law (Chae, Kim, Kim and Lin, 2023).

The model is X = g(Z) + sigma * eps with a latent Z of intrinsic dimension d = 1 and Gaussian
noise eps in the ambient R^D. Its density is the latent integral

    p(x) = integral N(x; g(z), sigma^2 I_D) p(z) dz,

computed here by quadrature: log p(x) = logsumexp_k [log w_k + log N(x; g(z_k), sigma^2 I)].
The latent is Uniform(0, 1) (midpoint rule: spectrally accurate for the closed curves used here)
or N(0, 1) (Gauss-Hermite). The data lie on a closed curve, a warped unit circle placed in R^D by
a fixed isometry: a law singular to Lebesgue measure in R^D, whose likelihood under the model is
unbounded as sigma -> 0. Perturbing the data with instance noise (x + tau * eps) makes it regular.

Introduced in: notebooks/generative-diffusion/a-likelihood-approach-to-nonparametric-estimation.ipynb
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special
from torch import nn

from ..core.models import MLP
from ..core.stacked import StackedLinear
from ..core.validation import check_choice, check_int, check_positive


def isometry(dim: int, seed: int = 0) -> torch.Tensor:
    """A (dim, 2) float64 matrix with orthonormal columns: the plane of the circle inside R^dim."""
    check_int("dim", dim, minimum=2)
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, 2, generator=gen, dtype=torch.float64))
    return q


def warped_angle(z, warp: float = 0.0):
    """h(z) = z + warp sin(2 pi z) / (2 pi): a monotone map of [0, 1] onto itself for |warp| < 1,
    whose image angle 2 pi h(Z) has density (1 / 2 pi) / (1 + warp cos(2 pi z)) on the circle."""
    if not abs(warp) < 1:
        raise ValueError(f"warp must lie in (-1, 1) so that h is monotone, got {warp}")
    return z + warp * torch.sin(2 * math.pi * z) / (2 * math.pi)


def curve(z, basis: torch.Tensor, warp: float = 0.0) -> torch.Tensor:
    """The true generator g0(z) = Q (cos 2 pi h(z), sin 2 pi h(z)): points of the unit circle in
    the plane spanned by the columns of `basis` (a (D, 2) isometry)."""
    if basis.ndim != 2 or basis.shape[1] != 2:
        raise ValueError(f"basis must have shape (D, 2), got {tuple(basis.shape)}")
    angle = 2 * math.pi * warped_angle(z, warp)
    return torch.stack([torch.cos(angle), torch.sin(angle)], -1) @ basis.T.to(angle.dtype)


def sample_curve(n: int, basis: torch.Tensor, warp: float = 0.0, seed: int = 0) -> torch.Tensor:
    """n i.i.d. float64 points g0(Z), Z ~ Uniform(0, 1): a sample of the singular target law."""
    check_int("n", n)
    gen = torch.Generator().manual_seed(seed)
    return curve(torch.rand(n, generator=gen, dtype=torch.float64), basis, warp)


def perturb(x: torch.Tensor, tau: float, seed: int = 0) -> torch.Tensor:
    """The instance-noise perturbation x + tau * eps, eps ~ N(0, I): the data the MLE sees."""
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    gen = torch.Generator().manual_seed(seed)
    return x + tau * torch.randn(x.shape, generator=gen, dtype=x.dtype)


def quadrature(nodes: int, latent: str = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """Latent nodes z_k and log-weights log w_k with sum_k w_k f(z_k) ~ E f(Z): the midpoint rule
    on [0, 1] for latent "uniform", Gauss-Hermite for latent "normal" (Z ~ N(0, 1))."""
    check_int("nodes", nodes)
    check_choice("latent", latent, ("uniform", "normal"))
    if latent == "uniform":
        z = (torch.arange(nodes, dtype=torch.float64) + 0.5) / nodes
        return z, torch.full((nodes,), -math.log(nodes), dtype=torch.float64)
    t, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-t^2 / 2)
    w = w / math.sqrt(2 * math.pi)
    return torch.as_tensor(t), torch.as_tensor(np.log(w))


def mixture_log_likelihood(x: torch.Tensor, centers: torch.Tensor, log_weights: torch.Tensor,
                           sigma) -> torch.Tensor:
    """log sum_k w_k N(x_i; c_k, sigma^2 I) for each row x_i: the quadrature form of log p(x_i)."""
    if x.ndim != 2 or centers.ndim != 2 or x.shape[1] != centers.shape[1]:
        raise ValueError(f"x and centers must be (n, D) and (K, D), got {tuple(x.shape)} and "
                         f"{tuple(centers.shape)}")
    if log_weights.shape != (centers.shape[0],):
        raise ValueError(f"log_weights must have shape ({centers.shape[0]},), got "
                         f"{tuple(log_weights.shape)}")
    sigma = torch.as_tensor(sigma, dtype=x.dtype)
    if not bool(sigma > 0):
        raise ValueError(f"sigma must be > 0, got {float(sigma)}")
    dim = x.shape[1]
    d2 = torch.cdist(x, centers.to(x.dtype)) ** 2
    log_kernel = -0.5 * d2 / sigma ** 2 - dim * torch.log(sigma) - 0.5 * dim * math.log(2 * math.pi)
    return torch.logsumexp(log_kernel + log_weights.to(x.dtype), dim=1)


def circle_log_density(x: torch.Tensor, basis: torch.Tensor, sigma: float) -> torch.Tensor:
    """Closed form of log p(x) for the uniform circle (warp 0) blurred by N(0, sigma^2 I_D):
    with r the norm of the in-plane part u = Q^T x and v the rest,
    p(x) = N_{D-2}(v; 0, sigma^2) exp(-(r^2 + 1) / (2 sigma^2)) I_0(r / sigma^2)
           / (2 pi sigma^2)."""
    check_positive("sigma", sigma)
    basis = basis.to(x.dtype)
    u = x @ basis
    v2 = (x ** 2).sum(1) - (u ** 2).sum(1)
    r = u.norm(dim=1)
    dim = x.shape[1]
    s2 = sigma ** 2
    arg = (r / s2).numpy()
    log_i0 = torch.as_tensor(np.log(special.i0e(arg)) + arg)  # log I_0, overflow-safe
    return (-(r ** 2 + 1) / (2 * s2) + log_i0 - math.log(2 * math.pi * s2)
            - v2 / (2 * s2) - 0.5 * (dim - 2) * math.log(2 * math.pi * s2))


class CurveGenerator(nn.Module):
    """g(z) = MLP(cos 2 pi z, sin 2 pi z) in R^D, z ~ Uniform(0, 1) (a closed curve), with a
    learned noise scale sigma = exp(log_sigma) (floored at sigma_min)."""

    def __init__(self, dim: int, width: int = 32, depth: int = 2, sigma0: float = 0.3,
                 sigma_min: float = 1e-4):
        super().__init__()
        check_int("dim", dim, minimum=2)
        check_positive("sigma0", sigma0)
        check_positive("sigma_min", sigma_min)
        self.net = MLP(2, dim, width=width, depth=depth)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma0)))
        self.sigma_min = sigma_min

    @property
    def sigma(self) -> torch.Tensor:
        return self.sigma_min + torch.exp(self.log_sigma)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * z.reshape(-1, 1)
        return self.net(torch.cat([torch.cos(angle), torch.sin(angle)], 1).to(
            next(self.net.parameters()).dtype))

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n noise-free samples g(Z): the estimate of the singular law."""
        gen = torch.Generator().manual_seed(seed)
        return self(torch.rand(n, generator=gen, dtype=torch.float64)).double()


def negative_log_likelihood(model: CurveGenerator, x: torch.Tensor, nodes: int) -> torch.Tensor:
    """The mean over the rows of x of -log p(x) under the model, by the midpoint rule."""
    z, log_w = quadrature(nodes, "uniform")
    centers = model(z)
    return -mixture_log_likelihood(x.to(centers.dtype), centers, log_w.to(centers.dtype),
                                   model.sigma).mean()


class StackedCurveGenerator(nn.Module):
    """C independent copies of a curve generator trained at once (one batched matmul per layer):
    copy c maps z to g_c(z) = MLP_c(cos 2 pi z, sin 2 pi z) in R^D and has its own noise scale
    sigma_c = sigma_min + exp(log_sigma_c). forward(z) with z of shape (K,) gives (C, K, D)."""

    def __init__(self, copies: int, dim: int, width: int = 32, depth: int = 2,
                 sigma0: float = 0.3, sigma_min: float = 1e-4, seed: int = 0):
        super().__init__()
        check_int("copies", copies)
        check_int("dim", dim, minimum=2)
        check_int("depth", depth)
        check_positive("sigma0", sigma0)
        check_positive("sigma_min", sigma_min)
        torch.manual_seed(seed)
        sizes = [2] + [width] * depth + [dim]
        self.layers = nn.ModuleList([StackedLinear.uniform(copies, a, b)
                                     for a, b in zip(sizes[:-1], sizes[1:])])
        self.log_sigma = nn.Parameter(torch.full((copies,), math.log(sigma0)))
        self.sigma_min = sigma_min

    def __len__(self) -> int:
        return self.log_sigma.shape[0]

    @property
    def sigma(self) -> torch.Tensor:
        return self.sigma_min + torch.exp(self.log_sigma)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * z.reshape(-1, 1).to(self.log_sigma.dtype)
        h = torch.cat([torch.cos(angle), torch.sin(angle)], 1).expand(len(self), -1, -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """(C, n, D) noise-free samples g_c(Z), Z ~ Uniform(0, 1): each copy's estimate."""
        gen = torch.Generator().manual_seed(seed)
        return self(torch.rand(n, generator=gen, dtype=torch.float64)).double()


def stacked_negative_log_likelihood(model: StackedCurveGenerator, x: torch.Tensor,
                                    nodes: int) -> torch.Tensor:
    """Per copy, the mean over its rows x[c] (shape (C, B, D)) of -log p_c(x), by the midpoint
    rule with `nodes` latent nodes: shape (C,)."""
    if x.ndim != 3 or x.shape[0] != len(model):
        raise ValueError(f"x must have shape ({len(model)}, B, D), got {tuple(x.shape)}")
    z, log_w = quadrature(nodes, "uniform")
    centers = model(z)  # (C, K, D)
    dim = x.shape[2]
    x = x.to(centers.dtype)
    sigma = model.sigma.view(-1, 1, 1)
    d2 = (x.pow(2).sum(-1, keepdim=True) - 2 * x @ centers.transpose(1, 2)
          + centers.pow(2).sum(-1).unsqueeze(1)).clamp_min(0)
    log_kernel = (-0.5 * d2 / sigma ** 2 - dim * torch.log(sigma)
                  - 0.5 * dim * math.log(2 * math.pi))
    log_p = torch.logsumexp(log_kernel + log_w.to(x.dtype), dim=2)
    return -log_p.mean(1)


def member_minibatches(datasets: list[torch.Tensor], batch_size: int, seed: int = 0):
    """Endless (C, batch_size, D) minibatches, row c drawn with replacement from datasets[c]
    (data sets of different sizes, same dimension)."""
    check_int("batch_size", batch_size)
    dims = {tuple(d.shape[1:]) for d in datasets}
    if len(dims) != 1:
        raise ValueError(f"every data set must have the same row shape, got {sorted(dims)}")
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield torch.stack([d[torch.randint(len(d), (batch_size,), generator=gen)]
                           for d in datasets])
