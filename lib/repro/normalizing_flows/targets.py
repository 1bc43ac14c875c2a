"""Target densities p(x) = exp(-U(x)) / Z with an exact log Z, for checking samplers and flows.

Each target is a small class with `dim`, `energy(x)` (the unnormalized U, x of shape (N, D) -> (N,))
and `log_z` (a float, exact or by 1-D adaptive quadrature), and `sample(n, generator)` where exact
sampling is possible. An importance-weighted estimate of log Z, or a KL(q || p) = E_q[log q + U] +
log Z, can then be compared with the truth.
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_int, check_positive


def _check_points(x, dim: int):
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {dim})")


class GaussianMixture:
    """sum_k w_k N(x; m_k, diag s_k^2) in D dimensions, with weights w_k > 0 that need not sum to 1:
    U(x) = -log sum_k w_k exp(-|(x - m_k) / s_k|^2 / 2) / prod_i s_ki, so that
    log Z = log sum_k w_k + (D / 2) log 2 pi exactly. Samples are exact (pick k, then a Gaussian).

    means (K, D); scales (K,) for isotropic components or (K, D) for diagonal ones; weights (K,),
    equal by default.
    """

    def __init__(self, means, scales, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim != 2:
            raise ValueError(f"means has shape {tuple(self.means.shape)}, must be (K, D)")
        k, self.dim = self.means.shape
        scales = torch.as_tensor(scales, dtype=torch.float64)
        if scales.shape not in ((k,), (k, self.dim)):
            raise ValueError(f"scales has shape {tuple(scales.shape)}, "
                             f"must be ({k},) or ({k}, {self.dim})")
        check_positive("scales", scales.numpy())
        self.scales = scales.reshape(k, -1).expand(k, self.dim)     # (K, D)
        weights = torch.as_tensor([1.0] * k if weights is None else weights, dtype=torch.float64)
        if weights.shape != (k,):
            raise ValueError(f"weights has shape {tuple(weights.shape)}, must be ({k},)")
        check_positive("weights", weights.numpy())
        self.weights = weights
        log_total = torch.logsumexp(weights.log(), 0).item()
        self.log_z = log_total + 0.5 * self.dim * math.log(2 * math.pi)

    def energy(self, x):
        _check_points(x, self.dim)
        m, s, w = self.means.to(x), self.scales.to(x), self.weights.to(x)
        sq = (((x[:, None, :] - m) / s) ** 2).sum(-1)                # (N, K)
        return -torch.logsumexp(w.log() - 0.5 * sq - s.log().sum(-1), 1)

    def sample(self, n: int, generator=None):
        """n exact samples, (n, D) in float64."""
        n = check_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.scales[k] * noise


class DoubleWell:
    """U(x) = a x_1^4 - b x_1^2 + c x_1 + sum_{i>1} x_i^2 / 2: two wells along x_1 (tilted by c),
    unit harmonic in the other D - 1 coordinates. The defaults a, b, c = 1, 6, 1 are the kind of
    tilted double well used in Wu, Koehler & Noe (2020); we did not check them against the paper.

    log Z = log of the 1-D integral of exp(-U_1) by `scipy.integrate.quad` (relative error ~1e-10)
    plus (D - 1)/2 log 2 pi. No sampler: exact samples would need a 1-D inverse CDF.
    """

    def __init__(self, a: float = 1.0, b: float = 6.0, c: float = 1.0, dim: int = 2):
        check_positive("a", a)
        self.a, self.b, self.c, self.dim = float(a), float(b), float(c), check_int("dim", dim)
        self.log_z = self._log_z_first() + 0.5 * (self.dim - 1) * math.log(2 * math.pi)

    def energy_first(self, x1):
        """The 1-D energy a x^4 - b x^2 + c x of the first coordinate, elementwise."""
        return self.a * x1 ** 4 - self.b * x1 ** 2 + self.c * x1

    def energy(self, x):
        _check_points(x, self.dim)
        return self.energy_first(x[:, 0]) + 0.5 * (x[:, 1:] ** 2).sum(-1)

    def _log_z_first(self):
        from scipy.integrate import quad

        # Shift by the minimum (found on a grid) so exp(-U) neither overflows nor underflows.
        scale = max(abs(self.b) / self.a, abs(self.c) / self.a, 1.0) ** 0.5
        lim = 2 * scale + (60 / self.a) ** 0.25                      # beyond: exp(-U) < e^-60 peak
        grid = torch.linspace(-lim, lim, 20001, dtype=torch.float64)
        u_min = self.energy_first(grid).min().item()
        wells = [w for w in (-scale, scale) if -lim < w < lim]
        value, _ = quad(lambda t: math.exp(-(self.energy_first(t) - u_min)), -lim, lim,
                        points=wells, epsabs=0, epsrel=1e-12, limit=200)
        return math.log(value) - u_min


class StudentT:
    """A product of D Student-t marginals (df nu_i, loc mu_i, scale s_i), with heavy tails
    P(|x_i| > r) ~ r^-nu_i.
    U(x) = sum_i (nu_i + 1)/2 log(1 + ((x_i - mu_i) / s_i)^2 / nu_i) and
    log Z = sum_i [lgamma(nu_i / 2) - lgamma((nu_i + 1) / 2) + log(pi nu_i) / 2 + log s_i], exactly.
    Samples are exact: the inverse CDF (`scipy.special.stdtrit`) of uniforms from `generator`.

    df, loc, scale: numbers or (D,) sequences; dim: D, needed when all three are numbers.
    """

    def __init__(self, df, loc=0.0, scale=1.0, dim: int | None = None):
        df, loc, scale = (torch.as_tensor(v, dtype=torch.float64) for v in (df, loc, scale))
        shapes = {t.shape for t in (df, loc, scale) if t.ndim}
        if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
            raise ValueError("df, loc and scale must be numbers or (D,) sequences of one length, "
                             f"not shapes {sorted(tuple(s) for s in shapes)}")
        d = next(iter(shapes))[0] if shapes else check_int("dim", dim if dim is not None else 1)
        if dim is not None and check_int("dim", dim) != d:
            raise ValueError(f"dim == {dim}, but df, loc, scale have length {d}")
        check_positive("df", df.numpy())
        check_positive("scale", scale.numpy())
        self.dim = d
        self.df, self.loc, self.scale = (t.expand(d).clone() for t in (df, loc, scale))
        nu = self.df
        self.log_z = (torch.lgamma(nu / 2) - torch.lgamma((nu + 1) / 2)
                      + 0.5 * torch.log(math.pi * nu) + self.scale.log()).sum().item()

    def energy(self, x):
        _check_points(x, self.dim)
        nu, mu, s = self.df.to(x), self.loc.to(x), self.scale.to(x)
        return (0.5 * (nu + 1) * torch.log1p(((x - mu) / s) ** 2 / nu)).sum(-1)

    def sample(self, n: int, generator=None):
        """n exact samples, (n, D) in float64."""
        from scipy.special import stdtrit

        u = torch.rand(check_int("n", n), self.dim, generator=generator, dtype=torch.float64)
        t = torch.from_numpy(stdtrit(self.df.numpy(), u.numpy()))
        return self.loc + self.scale * t
