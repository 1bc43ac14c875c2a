"""PnP-HVAE (Prost, Houdard, Almansa, Papadakis): a hierarchical VAE as the prior of a linear
inverse problem y = A x + e, e ~ N(0, sigma^2 I), solved by alternating two exact minimizations of
the joint criterion over the image x and the latents z = (z_1, ..., z_L), top level first:

- latent step (the HVAE "denoiser"): top-down, level by level, with q(z_l | x, z_<l) = N(m_q, s_q^2)
  the encoder and p(z_l | z_<l) = N(m_p, s_p^2) the prior,
      z_l = argmin -log q(z_l | x, z_<l) - (1 / T_l^2 - 1) log p(z_l | z_<l)
          = (m_q / s_q^2 + (1 / T_l^2 - 1) m_p / s_p^2) / (1 / s_q^2 + (1 / T_l^2 - 1) / s_p^2),
  so T_l = 1 keeps the encoder's mean (plain auto-encoding) and T_l -> 0 the prior's mean; the
  decoder mean mu(z) is the regularized image;
- data step: x = argmin |A x - y|^2 / (2 sigma^2) + |x - mu(z)|^2 / (2 gamma^2), gamma the
  decoder's standard deviation, in closed form for a linear A.
The estimate is the last decoder mean. (The equations follow the authors' code,
github.com/jprost76/PnP-HVAE: `sample_reg` with a = beta = 1, b = 1 - T^2, prior std times T.)

Baselines of the same notebook: PnP half-quadratic splitting with a noise-conditional denoiser
(the same data step, the denoiser at a fixed level gamma in place of the HVAE), and Tikhonov
regularization on the image gradient (closed form).

- `HierarchicalVAE`: a small top-down (ladder) HVAE with MLP blocks for flat images.
- `combine_gaussians`: the latent step's closed form for one level.
- `LinearProblem`: y, A (shared or one per image), sigma; `data_step` is the closed-form x-update.
- `blur_matrix`, `inpainting_matrices`, `gradient_matrix`: operators on side x side images.
- `pnp_hvae`, `pnp_hqs`, `tikhonov`, `psnr`.

Introduced in: notebooks/generative-diffusion/inverse-problem-regularization-with-hierarchical-variational.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.models import MLP
from ..core.validation import check_int, check_positive


def _check_images(name, x, dim=None):
    if not torch.is_tensor(x) or x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a {want} tensor, got {got}")


def combine_gaussians(m_q, s_q, m_p, s_p, temperature):
    """The latent step at one level (elementwise, T in (0, 1]):
    argmin_z -log N(z; m_q, s_q^2) - (1/T^2 - 1) log N(z; m_p, s_p^2)."""
    if not 0 < temperature <= 1:
        raise ValueError(f"temperature == {temperature}, must be in (0, 1]")
    w_q, w_p = s_q ** -2, (temperature ** -2 - 1) * s_p ** -2
    return (w_q * m_q + w_p * m_p) / (w_q + w_p)


class HierarchicalVAE(nn.Module):
    """A top-down hierarchical VAE for flat images in R^dim with L latent levels (top first):
    p(z_1) = N(0, I), p(z_l | z_<l) = N(m_p, s_p^2) from an MLP of the levels above, and
    p(x | z) = N(mu(z), decoder_std^2 I); the encoder shares a bottom-up feature h(x) and gives
    q(z_l | x, z_<l) = N(m_q, s_q^2) from an MLP of [h, z_<l] (VDVAE's structure, with MLPs).

    Introduced in: notebooks/generative-diffusion/inverse-problem-regularization-with-hierarchical-variational.ipynb
    """

    def __init__(self, dim: int, latents=(4, 8, 16), width: int = 128, depth: int = 2,
                 decoder_std: float = 0.1):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.latents = [check_int("latent size", k) for k in latents]
        if not self.latents:
            raise ValueError("latents must name at least one level size, got ()")
        check_positive("decoder_std", decoder_std)
        self.decoder_std = float(decoder_std)
        act = "gelu"
        self.features = MLP(dim, width, width=width, depth=depth, activation=act)
        above = [sum(self.latents[:l]) for l in range(len(self.latents))]
        self.posteriors = nn.ModuleList(MLP(width + a, 2 * k, width=width, depth=1, activation=act)
                                        for a, k in zip(above, self.latents))
        self.priors = nn.ModuleList(MLP(a, 2 * k, width=width, depth=1, activation=act)
                                    for a, k in zip(above[1:], self.latents[1:]))
        self.decoder = MLP(sum(self.latents), dim, width=width, depth=depth, activation=act)

    def _prior(self, level, z_above):
        if level == 0:
            z = torch.zeros(len(z_above), self.latents[0], dtype=z_above.dtype,
                            device=z_above.device)
            return z, torch.ones_like(z)
        m, log_s = self.priors[level - 1](z_above).chunk(2, 1)
        return m, log_s.exp()

    def _posterior(self, level, h, z_above):
        m, log_s = self.posteriors[level](torch.cat([h, z_above], 1)).chunk(2, 1)
        return m, log_s.exp()

    def _top_down(self, x, pick):
        """Walk the levels top first; pick(level, m_q, s_q, m_p, s_p) gives z_l. Returns the
        concatenated latents and the list of (m_q, s_q, m_p, s_p, z)."""
        h = self.features(x)
        z_above = x.new_zeros(len(x), 0)
        stats = []
        for level in range(len(self.latents)):
            m_q, s_q = self._posterior(level, h, z_above)
            m_p, s_p = self._prior(level, z_above)
            z = pick(level, m_q, s_q, m_p, s_p)
            stats.append((m_q, s_q, m_p, s_p, z))
            z_above = torch.cat([z_above, z], 1)
        return z_above, stats

    def loss(self, x):
        """The negative ELBO per image (in nats, up to the constant of the Gaussian likelihood),
        with one reparametrized sample of q."""
        _check_images("x", x, self.dim)
        z, stats = self._top_down(x, lambda l, m_q, s_q, m_p, s_p:
                                  m_q + s_q * torch.randn_like(s_q))
        rec = ((x - self.decoder(z)) ** 2).sum(1) / (2 * self.decoder_std ** 2)
        kl = sum((torch.log(s_p / s_q) + (s_q ** 2 + (m_q - m_p) ** 2) / (2 * s_p ** 2)
                  - 0.5).sum(1) for m_q, s_q, m_p, s_p, _ in stats)
        return (rec + kl).mean()

    def regularize(self, x, temperatures):
        """The PnP-HVAE latent step followed by the decoder: mu(z) with z_l from
        `combine_gaussians` at temperature T_l (one per level, or one number for all)."""
        _check_images("x", x, self.dim)
        temps = self._temperatures(temperatures)
        z, _ = self._top_down(x, lambda l, m_q, s_q, m_p, s_p:
                              combine_gaussians(m_q, s_q, m_p, s_p, temps[l]))
        return self.decoder(z)

    def _temperatures(self, temperatures):
        if isinstance(temperatures, (int, float)):
            temperatures = [float(temperatures)] * len(self.latents)
        temperatures = list(temperatures)
        if len(temperatures) != len(self.latents):
            raise ValueError(f"temperatures must give one value per level ({len(self.latents)}), "
                             f"got {len(temperatures)}")
        for t in temperatures:
            if not 0 < t <= 1:
                raise ValueError(f"temperature == {t}, must be in (0, 1]")
        return temperatures

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator=None):
        """n images mu(z) with z drawn from the prior, every level's std scaled by `temperature`."""
        check_int("n", n)
        check_positive("temperature", temperature)
        p = next(self.parameters())
        z = torch.zeros(n, 0, dtype=p.dtype, device=p.device)
        for level in range(len(self.latents)):
            m_p, s_p = self._prior(level, z)
            eps = torch.randn(m_p.shape, generator=generator, dtype=p.dtype).to(p.device)
            z = torch.cat([z, m_p + temperature * s_p * eps], 1)
        return self.decoder(z)


class LinearProblem:
    """y = A x + N(0, sigma^2 I) for a batch of N images in R^d: A is (m, d), shared, or (N, m, d),
    one per image; y is (N, m).

    Introduced in: notebooks/generative-diffusion/inverse-problem-regularization-with-hierarchical-variational.ipynb
    """

    def __init__(self, A, y, sigma: float):
        check_positive("sigma", sigma)
        if not torch.is_tensor(A) or A.ndim not in (2, 3):
            raise ValueError(f"A must be an (m, d) or (N, m, d) tensor, got "
                             f"{tuple(A.shape) if torch.is_tensor(A) else type(A).__name__}")
        _check_images("y", y)
        if A.shape[-2] != y.shape[1] or (A.ndim == 3 and A.shape[0] != y.shape[0]):
            raise ValueError(f"A of shape {tuple(A.shape)} does not fit y of shape "
                             f"{tuple(y.shape)}")
        self.A, self.y, self.sigma = A, y, float(sigma)
        self.dim = A.shape[-1]
        self._inverses = {}

    @classmethod
    def observe(cls, A, x, sigma: float, generator=None):
        """The problem of observing the clean images x (N, d) through A with noise sigma."""
        _check_images("x", x)
        Ax = torch.einsum("...md,nd->nm", A, x) if A.ndim == 2 else torch.einsum("nmd,nd->nm", A, x)
        noise = torch.randn(Ax.shape, generator=generator, dtype=x.dtype).to(x.device)
        return cls(A, Ax + sigma * noise, sigma)

    def _At(self, v):  # A^T v, (N, d)
        return v @ self.A if self.A.ndim == 2 else torch.einsum("nmd,nm->nd", self.A, v)

    def _AtA(self):  # (d, d) or (N, d, d)
        return self.A.transpose(-1, -2) @ self.A

    def data_step(self, v, gamma: float):
        """argmin_x |A x - y|^2 / (2 sigma^2) + |x - v|^2 / (2 gamma^2), in closed form:
        x = (A^T A / sigma^2 + I / gamma^2)^-1 (A^T y / sigma^2 + v / gamma^2). The inverse is
        computed once per gamma and kept, since the PnP iterations reuse it."""
        check_positive("gamma", gamma)
        _check_images("v", v, self.dim)
        if gamma not in self._inverses:
            eye = torch.eye(self.dim, dtype=v.dtype, device=v.device)
            self._inverses[gamma] = torch.linalg.inv(self._AtA() / self.sigma ** 2
                                                     + eye / gamma ** 2)
        inv = self._inverses[gamma]
        rhs = self._At(self.y) / self.sigma ** 2 + v / gamma ** 2
        return rhs @ inv if inv.ndim == 2 else torch.einsum("nde,ne->nd", inv, rhs)

    def back_projection(self):
        """A^T y (N, d): the observation in image space, the iterations' starting point (for a
        mask, the observed pixels and zeros; the authors' code starts from y)."""
        return self._At(self.y)


def blur_matrix(side: int, std: float, radius: int | None = None, dtype=torch.float32):
    """The (side^2, side^2) matrix of a normalized Gaussian blur of `std` pixels on side x side
    images (row-major), with zero padding outside the image."""
    check_int("side", side)
    check_positive("std", std)
    radius = math.ceil(2 * std) if radius is None else check_int("radius", radius, minimum=0)
    offs = torch.arange(-radius, radius + 1, dtype=dtype)
    k1 = torch.exp(-offs ** 2 / (2 * std ** 2))
    kernel = torch.outer(k1, k1) / torch.outer(k1, k1).sum()
    A = torch.zeros(side * side, side * side, dtype=dtype)
    for i in range(side):
        for j in range(side):
            for a in range(-radius, radius + 1):
                for b in range(-radius, radius + 1):
                    if 0 <= i + a < side and 0 <= j + b < side:
                        A[i * side + j, (i + a) * side + j + b] = kernel[a + radius, b + radius]
    return A


def inpainting_matrices(n: int, dim: int, missing: float, generator=None, dtype=torch.float32):
    """(n, dim, dim) diagonal masks, each keeping a random (1 - missing) share of the pixels
    (the missing rows are zero, so every image keeps the same dimension m = dim)."""
    check_int("n", n)
    check_int("dim", dim)
    if not 0 <= missing < 1:
        raise ValueError(f"missing == {missing}, must be in [0, 1)")
    keep = torch.rand(n, dim, generator=generator) >= missing
    return torch.diag_embed(keep.to(dtype))


def gradient_matrix(side: int, dtype=torch.float32):
    """The (2 side (side - 1), side^2) matrix of forward differences along rows and columns."""
    check_int("side", side, minimum=2)
    rows = []
    for i in range(side):
        for j in range(side):
            for di, dj in ((0, 1), (1, 0)):
                if i + di < side and j + dj < side:
                    r = torch.zeros(side * side, dtype=dtype)
                    r[i * side + j], r[(i + di) * side + j + dj] = -1.0, 1.0
                    rows.append(r)
    return torch.stack(rows)


@torch.no_grad()
def pnp_hvae(hvae: HierarchicalVAE, problem: LinearProblem, temperatures, iterations: int,
             gamma: float | None = None, x0=None):
    """PnP-HVAE: from x0 (default A^T y), alternate mu = hvae.regularize(x, T) and
    x = problem.data_step(mu, gamma) (gamma defaults to the decoder std). Returns the last decoder
    mean, the last x and the per-image step sizes |x_{k+1} - x_k| (iterations, N)."""
    check_int("iterations", iterations)
    gamma = hvae.decoder_std if gamma is None else gamma
    x = problem.back_projection() if x0 is None else x0
    mu = hvae.regularize(x, temperatures)
    steps = []
    for _ in range(iterations):
        x_new = problem.data_step(mu, gamma)
        steps.append((x_new - x).norm(dim=1))
        x = x_new
        mu = hvae.regularize(x, temperatures)
    return mu, x, torch.stack(steps)


@torch.no_grad()
def pnp_hqs(denoise, problem: LinearProblem, gamma: float, iterations: int, x0=None):
    """PnP half-quadratic splitting at one noise level: alternate v = denoise(x, gamma) and
    x = problem.data_step(v, gamma). Returns the last denoised image, the last x, and the per-image
    step sizes (iterations, N); x0 defaults to A^T y."""
    check_int("iterations", iterations)
    check_positive("gamma", gamma)
    x = problem.back_projection() if x0 is None else x0
    v = denoise(x, gamma)
    steps = []
    for _ in range(iterations):
        x_new = problem.data_step(v, gamma)
        steps.append((x_new - x).norm(dim=1))
        x = x_new
        v = denoise(x, gamma)
    return v, x, torch.stack(steps)


def tikhonov(problem: LinearProblem, lam: float, G):
    """argmin_x |A x - y|^2 / (2 sigma^2) + lam |G x|^2 / 2 (G a regularization matrix, e.g. the
    image gradient), in closed form."""
    check_positive("lam", lam)
    lhs = problem._AtA() / problem.sigma ** 2 + lam * G.T @ G
    rhs = problem._At(problem.y) / problem.sigma ** 2
    if lhs.ndim == 2:
        return torch.linalg.solve(lhs, rhs.T).T
    return torch.linalg.solve(lhs, rhs.unsqueeze(-1)).squeeze(-1)


def psnr(x, ref, peak: float = 1.0):
    """Per-image PSNR in dB of x against ref (both (N, d)), after clipping x to [0, peak]."""
    _check_images("x", x)
    _check_images("ref", ref, x.shape[1])
    check_positive("peak", peak)
    mse = ((x.clamp(0, peak) - ref) ** 2).mean(1)
    return 10 * torch.log10(peak ** 2 / mse)
