"""Marginal tail-adaptive flows (mTAF, after Laszkiewicz, Lederer & Fischer 2022): estimate each
marginal's tail from the data, give the heavy-tailed marginals a Student-t base coordinate with
that many degrees of freedom and the light-tailed ones a Gaussian, and let only permutations that
keep the two groups apart mix the coordinates.

Why it works with this chapter's layers: `coupling.AffineCoupling` has a bounded log-scale and a
tanh MLP, so each data coordinate is its base coordinate times a bounded factor plus a bounded
shift; its tail index is the base coordinate's. A Gaussian base therefore gives light-tailed
marginals whatever the training (vanilla flows), one shared Student-t gives every marginal the same
heavy tail (TAF, after Jaini et al. 2020), and a per-coordinate base gives each its own (mTAF).

Pieces: `hill_estimator` and `moment_estimator` (extreme-value estimators of the tail of |x|),
`estimate_tails` (the classification and the degrees of freedom per column), `StudentTBase` (a
product of Student-t and Gaussian coordinates, per-dimension dof, optionally one shared learnable
dof), `TailAdaptiveFlow` (a `FlowModel` with that base), `group_permutation`, `GaussianCopula` (a
target with exact log density and samples whose marginals are Gaussian or Student-t), and
`loglog_tail_area` (the authors' tail metric with exact quantiles).

Introduced in: notebooks/normalizing-flows/marginal-tail-adaptive-normalizing-flows.ipynb
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special
from torch import nn

from ..core.validation import check_int
from .coupling import FlowModel

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _top_order_statistics(x, k: int) -> np.ndarray:
    """The k + 1 largest values of |x|, descending, as float64 (x: a 1-D array or tensor)."""
    a = np.abs(np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64)).ravel()
    check_int("k", k, 2)
    if k >= a.size:
        raise ValueError(f"k == {k}, must be smaller than the sample size {a.size}")
    top = -np.sort(-np.partition(a, a.size - k - 1)[a.size - k - 1:])
    if top[-1] <= 0:
        raise ValueError("the (k+1)-th largest |x| is 0: take a smaller k")
    return top


def hill_estimator(x, k: int) -> float:
    """Hill's estimate of the tail index alpha of |x| (P(|X| > r) ~ r^-alpha) from its k largest
    values: 1 / mean_i log(X_(i) / X_(k+1)). For a Student-t with nu dof, alpha = nu; asymptotic
    standard error alpha / sqrt(k).
    Introduced in: notebooks/normalizing-flows/marginal-tail-adaptive-normalizing-flows.ipynb"""
    top = _top_order_statistics(x, k)
    return float(1.0 / np.mean(np.log(top[:-1] / top[-1])))


def moment_estimator(x, k: int) -> tuple[float, float]:
    """Dekkers-Einmahl-de Haan moment estimate of the extreme-value index xi of |x| (xi = 1/alpha
    for a power tail, xi = 0 for Gaussian-like tails) from the k largest values, and its asymptotic
    standard error sqrt(1 + xi^2) / sqrt(k) (valid for xi >= 0; xi is clipped at 0 there).
    Introduced in: notebooks/normalizing-flows/marginal-tail-adaptive-normalizing-flows.ipynb"""
    top = _top_order_statistics(x, k)
    logs = np.log(top[:-1] / top[-1])
    m1, m2 = logs.mean(), (logs ** 2).mean()
    xi = m1 + 1.0 - 0.5 / (1.0 - m1 ** 2 / m2)
    return float(xi), float(math.sqrt(1.0 + max(xi, 0.0) ** 2) / math.sqrt(k))


def default_k(n: int) -> int:
    """The number of upper order statistics used by `estimate_tails`: 2 sqrt(n), at least 10."""
    return max(10, int(2 * math.sqrt(check_int("n", n, 20))))


def estimate_tails(x, k: int | None = None, sigmas: float = 2.0):
    """Classify each column of x (N, D) as heavy- or light-tailed and estimate its degrees of
    freedom: heavy when the moment estimate of xi exceeds `sigmas` standard errors above 0 (the
    light-tail value), then dof = Hill's alpha; light columns get dof = inf (a Gaussian).
    Returns a (D,) float64 tensor of dof. k: upper order statistics (default `default_k(N)`).
    Introduced in: notebooks/normalizing-flows/marginal-tail-adaptive-normalizing-flows.ipynb"""
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, D)")
    k = default_k(x.shape[0]) if k is None else k
    df = []
    for column in x.T:
        xi, se = moment_estimator(column, k)
        df.append(hill_estimator(column, k) if xi > sigmas * se else math.inf)
    return torch.tensor(df, dtype=torch.float64)


def _check_df(df) -> torch.Tensor:
    df = torch.as_tensor(df, dtype=torch.float64).reshape(-1)
    valid = bool(((df > 0) | torch.isinf(df)).all()) and not bool(torch.isnan(df).any())
    if df.numel() == 0 or not valid:
        raise ValueError(f"df == {df.tolist()!r}, must be positive numbers or inf (a Gaussian)")
    return df


def student_t_log_prob(u, df):
    """log density of independent standard Student-t coordinates, (N, D) -> (N, D); df (D,) or a
    scalar tensor, inf entries giving the standard normal."""
    df = torch.as_tensor(df, dtype=u.dtype, device=u.device).expand(u.shape[-1])
    gauss = -0.5 * u ** 2 - _LOG_SQRT_2PI
    finite = torch.isfinite(df)
    nu = torch.where(finite, df, torch.ones_like(df))
    t = (torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(math.pi * nu)
         - 0.5 * (nu + 1) * torch.log1p(u ** 2 / nu))
    return torch.where(finite, t, gauss)


class StudentTBase(nn.Module):
    """A product base density: coordinate i is a standard Student-t with df_i dof (df_i = inf: a
    standard normal). shared_learnable=True keeps one dof for every coordinate and learns it
    (TAF's base; stored as log(df - 1) so that df > 1 and the mean exists).

    df: a (D,) sequence of positive numbers or inf, or one number with `dim`.
    """

    def __init__(self, df, dim: int | None = None, shared_learnable: bool = False):
        super().__init__()
        df = _check_df(df)
        if df.numel() == 1:
            df = df.expand(check_int("dim", dim if dim is not None else 1)).clone()
        elif dim is not None and check_int("dim", dim) != df.numel():
            raise ValueError(f"dim == {dim}, but df has length {df.numel()}")
        self.dim = df.numel()
        self.shared_learnable = shared_learnable
        if shared_learnable:
            if not torch.isfinite(df).all() or not bool((df == df[0]).all()) or df[0] <= 1:
                raise ValueError("a shared learnable dof needs one finite value > 1, "
                                 f"got {df.tolist()}")
            self.raw_df = nn.Parameter(torch.log(df[:1] - 1).to(torch.get_default_dtype()))
        else:
            self.register_buffer("fixed_df", df.to(torch.get_default_dtype()))

    @property
    def df(self) -> torch.Tensor:
        """The (D,) dof in use."""
        if self.shared_learnable:
            return (1 + torch.exp(self.raw_df)).expand(self.dim)
        return self.fixed_df

    def log_prob(self, u):
        """log p(u) of shape (N,) for u (N, D)."""
        return student_t_log_prob(u, self.df.to(u.dtype)).sum(1)

    def sample(self, n: int, generator=None, dtype=torch.float64, device=None):
        """n exact samples (n, D): inverse CDFs of uniforms drawn from `generator`."""
        df = self.df.detach().cpu().double().numpy()
        v = torch.rand(check_int("n", n), self.dim, generator=generator, dtype=torch.float64)
        v = v.clamp(1e-300, 1 - 1e-16).numpy()
        finite = np.isfinite(df)
        out = special.ndtri(v)
        out[:, finite] = special.stdtrit(df[finite], v[:, finite])
        return torch.from_numpy(out).to(dtype=dtype, device=device)


class TailAdaptiveFlow(FlowModel):
    """`FlowModel` whose base is a `StudentTBase` instead of N(0, I): p(x) = p_base(u) |du/dx| with
    u = layers(x). base: a StudentTBase of the same dimension."""

    def __init__(self, layers, dim: int, base: StudentTBase):
        super().__init__(layers, dim)
        if base.dim != self.dim:
            raise ValueError(f"base has dimension {base.dim}, the flow {self.dim}")
        self.base = base

    def base_log_prob(self, u):
        return self.base.log_prob(u)

    def sample_and_log_prob(self, n: int, generator=None):
        u = self.base.sample(n, generator, dtype=self._anchor.dtype, device=self._anchor.device)
        log_p = self.base_log_prob(u)
        for layer in reversed(self.layers):
            u, ld_inverse = layer.inverse(u)
            log_p = log_p - ld_inverse
        return u, log_p


def group_permutation(groups, generator=None) -> torch.Tensor:
    """A random permutation of 0..D-1 that maps every group of coordinates onto itself (mTAF's
    permutations between layers, which never move a heavy-tailed coordinate to a light one).
    groups: lists of indices that together cover 0..D-1 exactly once."""
    flat = sorted(i for g in groups for i in g)
    if flat != list(range(len(flat))):
        raise ValueError(f"groups == {groups!r}, must cover 0..D-1 exactly once")
    perm = torch.arange(len(flat))
    for g in groups:
        g = torch.as_tensor(list(g), dtype=torch.long)
        perm[g] = g[torch.randperm(len(g), generator=generator)]
    return perm


class GaussianCopula:
    """A target with Gaussian-copula dependence and Student-t (df_i finite) or Gaussian (df_i inf)
    marginals of scale s_i, centred at 0: x_i = s_i F_i^-1(Phi(z_i)), z ~ N(0, R). Exact log
    density log p(x) = log N(z; 0, R) - sum log phi(z_i) + sum log f_i(x_i) and exact samples.

    df: (D,) dof (inf = Gaussian); corr: (D, D) correlation matrix; scale: (D,) or a number.
    """

    def __init__(self, df, corr, scale=1.0):
        self.df = _check_df(df)
        self.dim = self.df.numel()
        self.corr = torch.as_tensor(corr, dtype=torch.float64)
        ones = torch.ones(self.dim, dtype=torch.float64)
        if self.corr.shape != (self.dim, self.dim) or not torch.allclose(self.corr, self.corr.T) \
                or not torch.allclose(self.corr.diagonal(), ones):
            raise ValueError(f"corr must be a symmetric ({self.dim}, {self.dim}) matrix "
                             "with unit diagonal")
        self.chol = torch.linalg.cholesky(self.corr)           # raises if not positive definite
        self.scale = torch.as_tensor(scale, dtype=torch.float64).expand(self.dim).clone()
        if not bool((self.scale > 0).all()):
            raise ValueError(f"scale == {self.scale.tolist()!r}, must be positive")

    def _to_normal(self, y: np.ndarray) -> np.ndarray:
        """z_i = Phi^-1(F_i(y_i)) for standardised y (N, D), computed in the lower tail."""
        z = np.empty_like(y)
        for i, nu in enumerate(self.df.numpy()):
            if math.isinf(nu):
                z[:, i] = y[:, i]
            else:
                lower = special.ndtri(special.stdtr(nu, -np.abs(y[:, i])))
                z[:, i] = -np.sign(y[:, i]) * lower
        return z

    def log_prob(self, x):
        """Exact log p(x), (N, D) -> (N,) in float64."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {self.dim})")
        y = x / self.scale
        z = torch.from_numpy(self._to_normal(y.numpy()))
        w = torch.linalg.solve_triangular(self.chol, z.T, upper=False).T
        log_copula = (-0.5 * (w ** 2).sum(1) - self.chol.diagonal().log().sum()
                      + 0.5 * (z ** 2).sum(1))
        return log_copula + student_t_log_prob(y, self.df).sum(1) - self.scale.log().sum()

    def sample(self, n: int, generator=None):
        """n exact samples (n, D) in float64."""
        z = torch.randn(check_int("n", n), self.dim, generator=generator, dtype=torch.float64)
        z = (z @ self.chol.T).numpy()
        y = np.empty_like(z)
        for i, nu in enumerate(self.df.numpy()):
            y[:, i] = z[:, i] if math.isinf(nu) else -np.sign(z[:, i]) * special.stdtrit(
                nu, special.ndtr(-np.abs(z[:, i])))
        return torch.from_numpy(y) * self.scale

    def abs_quantile(self, p, i: int):
        """The exact p-quantile of |x_i| (p an array in (0, 1))."""
        p = np.asarray(p, dtype=np.float64)
        nu = float(self.df[i])
        q = special.ndtri((1 + p) / 2) if math.isinf(nu) else special.stdtrit(nu, (1 + p) / 2)
        return float(self.scale[i]) * q


def loglog_tail_area(samples, abs_quantile) -> float:
    """The authors' tail metric for one marginal: sum_i |log Q(1 - i/n) - log Qhat(1 - i/n)|
    log((i + 1) / i) over i = 1..n-1, where Qhat(1 - i/n) is the i-th largest |sample| and Q the
    exact quantile function of |x| (`abs_quantile(p)`). 0 for a perfect quantile match; the weights
    stress the most extreme quantiles.
    Introduced in: notebooks/normalizing-flows/marginal-tail-adaptive-normalizing-flows.ipynb"""
    a = np.sort(np.abs(np.asarray(torch.as_tensor(samples).detach().cpu(), dtype=np.float64)))[::-1]
    n = a.size
    if n < 10:
        raise ValueError(f"{n} samples, need at least 10")
    i = np.arange(1, n)
    exact = abs_quantile(1 - i / n)
    return float(np.sum(np.abs(np.log(exact) - np.log(a[:-1])) * np.log((i + 1) / i)))
