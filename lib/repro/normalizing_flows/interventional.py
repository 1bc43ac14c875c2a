"""Interventional normalizing flows (after Melnychuk, Frauen & Feuerriegel 2023): the density of a
potential outcome Y^a estimated from confounded observations (X, A, Y).

Under the usual assumptions (consistency, overlap, no hidden confounding) the interventional
density is the covariate-adjusted mixture p(y^a) = E_X[p(y | X, a)], not the conditional
p(y | A = a). Two flows estimate it:

- the *nuisance flow* (`NuisanceFlow`): a representation of x feeds a propensity head
  pi(x) = P(A = 1 | x) and a conditional flow p(y | x, a), trained jointly by maximum likelihood
  plus alpha times the propensity's binary cross-entropy;
- the *target flow*: an unconditional flow p_theta(y) fitted to the nuisance flow by the one-step
  bias-corrected cross-entropy (`bias_corrected_weights` + `weighted_nll`):

    L(theta) = 1/n sum_i [ CE_i(theta) + 1{A_i = a} / pi_a(X_i) (-log p_theta(Y_i) - CE_i(theta)) ],
    CE_i(theta) = -int p(y | X_i, a) log p_theta(y) dy        (the cross-entropy of unit i),

  CE_i on a grid of K outcomes (rectangle rule, as the authors' code does in one dimension).
  Without the correction term, L is the "covariate-adjusted" cross-entropy to the plug-in mixture.

L is linear in log p_theta, so it is the negative log-likelihood of a signed measure of unit mass:
grid weights c_k on the K grid outcomes and data weights d_i on the observed outcomes, computed
once from the fixed nuisance. Conditional layers take (y, context) and follow the chapter's
convention: `forward` maps data to base and returns log|det dy_base/dy|.

Introduced in: notebooks/normalizing-flows/normalizing-flows-for-interventional-density-estimation.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_int, check_positive
from .splines import rational_quadratic_spline
from .targets import GaussianMixture


def _check_pair(y, context, dim: int, context_dim: int):
    if y.ndim != 2 or y.shape[1] != dim:
        raise ValueError(f"y has shape {tuple(y.shape)}, must be (N, {dim})")
    if context.ndim != 2 or context.shape != (y.shape[0], context_dim):
        raise ValueError(f"context has shape {tuple(context.shape)}, "
                         f"must be ({y.shape[0]}, {context_dim})")


def _zero_last(net: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class ConditionalAffine(nn.Module):
    """u = (y - m(c)) exp(-s(c)) per coordinate, m and s from an MLP of the context c;
    log|det du/dy| = -sum s. Starts at the identity."""

    def __init__(self, dim: int, context_dim: int, hidden: int = 32):
        super().__init__()
        self.dim, self.context_dim = check_int("dim", dim), check_int("context_dim", context_dim)
        self.net = _zero_last(nn.Sequential(nn.Linear(context_dim, check_int("hidden", hidden)),
                                            nn.Tanh(), nn.Linear(hidden, 2 * dim)))

    def forward(self, y, context):
        _check_pair(y, context, self.dim, self.context_dim)
        m, s = self.net(context).chunk(2, dim=1)
        return (y - m) * torch.exp(-s), -s.sum(1)

    def inverse(self, u, context):
        _check_pair(u, context, self.dim, self.context_dim)
        m, s = self.net(context).chunk(2, dim=1)
        return u * torch.exp(s) + m, s.sum(1)


class ConditionalSpline(nn.Module):
    """A rational-quadratic spline per coordinate (`splines.rational_quadratic_spline`, identity
    tails outside [-bound, bound]) whose bins and slopes come from an MLP of the context.
    Starts at the identity."""

    def __init__(self, dim: int, context_dim: int, bins: int = 8, hidden: int = 32,
                 bound: float = 3.0):
        super().__init__()
        self.dim, self.context_dim = check_int("dim", dim), check_int("context_dim", context_dim)
        self.bins, self.bound = check_int("bins", bins, 2), bound
        check_positive("bound", bound)
        self.net = _zero_last(nn.Sequential(nn.Linear(context_dim, check_int("hidden", hidden)),
                                            nn.Tanh(), nn.Linear(hidden, dim * (3 * bins - 1))))
        unit = math.log(math.expm1(1 - 1e-3))                         # softplus^-1 of slope 1
        self.register_buffer("offset", torch.cat([torch.zeros(2 * bins),
                                                  torch.full((bins - 1,), unit)]))

    def _transform(self, y, context, inverse):
        _check_pair(y, context, self.dim, self.context_dim)
        raw = self.net(context).view(-1, self.dim, 3 * self.bins - 1) + self.offset  # (N, D, 3K-1)
        w, h, d = raw.split([self.bins, self.bins, self.bins - 1], dim=-1)
        out, log_deriv = rational_quadratic_spline(y, w, h, d, inverse=inverse, bound=self.bound)
        return out, log_deriv.sum(1)

    def forward(self, y, context):
        return self._transform(y, context, False)

    def inverse(self, u, context):
        return self._transform(u, context, True)


class ConditionalFlow(nn.Module):
    """p(y | c) = N(u; 0, I) |det du/dy| with u = layers(y, c) applied in order (data -> base)."""

    def __init__(self, layers, dim: int):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.layers = nn.ModuleList(layers)

    def log_prob(self, y, context):
        """log p(y | c) for y (N, D) and context (N, C), (N,)."""
        log_det = y.new_zeros(y.shape[0])
        for layer in self.layers:
            y, ld = layer(y, context)
            log_det = log_det + ld
        return -0.5 * (y ** 2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + log_det

    def sample(self, context, generator=None):
        """One sample of y per row of the context, (N, D)."""
        u = torch.randn(context.shape[0], self.dim, generator=generator, dtype=context.dtype,
                        device=context.device)
        for layer in reversed(self.layers):
            u, _ = layer.inverse(u, context)
        return u


class NuisanceFlow(nn.Module):
    """The nuisance flow of INFs: a representation r(x) (one tanh layer), a propensity head
    logit P(A = 1 | x) = w . r(x) + b, and a conditional flow p(y | r(x), a) (a conditional spline
    then a conditional affine layer, both fed [r(x), a]).

    covariates=False drops r(x) from the outcome model's context, p(y | x, a) = p(y | a): a
    deliberately misspecified outcome model (the propensity head still sees x).
    """

    def __init__(self, x_dim: int, y_dim: int = 1, hidden: int = 32, bins: int = 8,
                 bound: float = 3.0, covariates: bool = True):
        super().__init__()
        self.covariates = bool(covariates)
        self.repr = nn.Sequential(nn.Linear(check_int("x_dim", x_dim), check_int("hidden", hidden)),
                                  nn.Tanh())
        self.prop_head = nn.Linear(hidden, 1)
        context = hidden + 1 if self.covariates else 1
        self.flow = ConditionalFlow([ConditionalSpline(y_dim, context, bins, hidden, bound),
                                     ConditionalAffine(y_dim, context, hidden)], y_dim)

    def _context(self, x, a):
        a = torch.as_tensor(a, dtype=x.dtype, device=x.device).expand(x.shape[0])[:, None]
        return torch.cat([self.repr(x), a], 1) if self.covariates else a

    def log_prob(self, y, x, a):
        """log p(y | x, a), (N,); a a scalar treatment or (N,) treatments."""
        return self.flow.log_prob(y, self._context(x, a))

    def propensity(self, x):
        """P(A = 1 | x), (N,)."""
        return torch.sigmoid(self.prop_head(self.repr(x))).squeeze(1)

    def loss(self, x, a, y, alpha: float = 1.0):
        """-mean log p(y | x, a) + alpha * the propensity's binary cross-entropy."""
        logits = self.prop_head(self.repr(x)).squeeze(1)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, a.to(logits.dtype))
        return -self.log_prob(y, x, a).mean() + alpha * bce


class IndependentFlows(nn.Module):
    """M independent one-dimensional flows trained side by side (the target flows): flow m maps
    y -> u = exp(log_scale_m) spline_m(y) + shift_m, with a rational-quadratic spline on
    [-bound, bound] (identity tails) and a standard normal base. Starts at the identity.

    Their losses add up, and no parameter is shared, so one optimizer on the sum trains each flow
    exactly as alone (Adam works coordinate by coordinate).
    """

    def __init__(self, m: int, bins: int = 16, bound: float = 4.0):
        super().__init__()
        self.m, self.bound = check_int("m", m), bound
        check_positive("bound", bound)
        self.widths = nn.Parameter(torch.zeros(m, check_int("bins", bins, 2)))
        self.heights = nn.Parameter(torch.zeros(m, bins))
        self.derivatives = nn.Parameter(torch.full((m, bins - 1), math.log(math.expm1(1 - 1e-3))))
        self.log_scale = nn.Parameter(torch.zeros(m))
        self.shift = nn.Parameter(torch.zeros(m))

    def _check(self, y):
        if y.ndim != 2 or y.shape[1] != self.m:
            raise ValueError(f"input has shape {tuple(y.shape)}, must be (P, {self.m}): "
                             "column m goes to flow m")

    def forward(self, y):
        """(u, log|du/dy|), both (P, M)."""
        self._check(y)
        z, log_deriv = rational_quadratic_spline(y, self.widths, self.heights, self.derivatives,
                                                 bound=self.bound)
        return z * self.log_scale.exp() + self.shift, log_deriv + self.log_scale

    def inverse(self, u):
        """(y, log|dy/du|), both (P, M)."""
        self._check(u)
        z = (u - self.shift) * torch.exp(-self.log_scale)
        y, log_deriv = rational_quadratic_spline(z, self.widths, self.heights, self.derivatives,
                                                 inverse=True, bound=self.bound)
        return y, log_deriv - self.log_scale

    def log_prob(self, y):
        """log p_m(y[:, m]) for y (P, M), (P, M)."""
        u, log_det = self.forward(y)
        return -0.5 * u ** 2 - 0.5 * math.log(2 * math.pi) + log_det


@torch.no_grad()
def conditional_density_grid(nuisance: NuisanceFlow, x, a: int, grid):
    """p(y_k | x_i, a) for the K outcomes of a 1-D grid (K,) and N covariates x (N, Dx): (K, N)."""
    if grid.ndim != 1:
        raise ValueError(f"grid has shape {tuple(grid.shape)}, must be (K,) (one-dimensional y)")
    k, n = grid.shape[0], x.shape[0]
    ys = grid[:, None].expand(k, n).reshape(-1, 1)                 # (K N, 1)
    xs = x.repeat(k, 1)                                             # (K N, Dx)
    return nuisance.log_prob(ys, xs, a).exp().view(k, n)


def plugin_log_prob(cond_density):
    """The plug-in interventional density log (1/N sum_i p(y_k | x_i, a)) on the grid, (K,), from
    `conditional_density_grid`'s (K, N)."""
    return cond_density.mean(1).log()


def bias_corrected_weights(cond_density, a_obs, prop_a, a: int, bin_size: float, *,
                           correct: bool = True, clip: float = 0.05):
    """Grid weights c (K,) and data weights d (N,) such that the bias-corrected cross-entropy is
    L(theta) = -sum_k c_k log p_theta(y_k) - sum_i d_i log p_theta(Y_i).

    cond_density: p(y_k | X_i, a), (K, N); a_obs: the observed treatments (N,); prop_a: the
    estimated P(A = a | X_i), (N,); bin_size: the grid's spacing. correct=False gives the
    covariate-adjusted cross-entropy alone (d = 0). Units with prop_a < clip get no correction
    term (the authors' code drops them the same way).
    """
    k, n = cond_density.shape
    if a_obs.shape != (n,) or prop_a.shape != (n,):
        raise ValueError(f"a_obs and prop_a have shapes {tuple(a_obs.shape)}, "
                         f"{tuple(prop_a.shape)}, must both be ({n},)")
    check_positive("bin_size", bin_size)
    ratio = ((a_obs == a) & (prop_a >= clip)).to(prop_a.dtype) / prop_a if correct \
        else torch.zeros_like(prop_a)                               # 1{A_i = a} / pi_a(X_i)
    c = bin_size * (cond_density * (1 - ratio)).mean(1)             # (K,)
    return c, ratio / n


def weighted_nll(flow, grid, c, y, d):
    """-sum_k c_k log p(y_k) - sum_i d_i log p(y_i) for a 1-D flow with `log_prob` of (N, 1)."""
    return -(c * flow.log_prob(grid[:, None])).sum() - (d * flow.log_prob(y)).sum()


def confounded_gaussians(n: int, shift: float, coef0, coef1, noise: float = 1.0,
                         generator=None):
    """Confounded data whose interventional densities are exact Gaussian mixtures.

    A ~ Bernoulli(1/2); X | A = 1 ~ N(0, 1), X | A = 0 ~ N(shift, 1), so the propensity is
    P(A = 1 | x) = sigmoid(shift^2 / 2 - shift x); Y = b0_A + b1_A X + noise * eps with
    (b0_a, b1_a) = coef_a. Then p(y^a) = 1/2 N(b0_a, b1_a^2 + noise^2)
    + 1/2 N(b0_a + b1_a shift, b1_a^2 + noise^2), while p(y | A = a) is the first component only.
    Returns (x (n, 1), a (n,), y (n, 1), {a: GaussianMixture of p(y^a)}), float64.
    """
    n = check_int("n", n, 2)
    check_positive("noise", noise)
    a = (torch.rand(n, generator=generator, dtype=torch.float64) < 0.5).long()
    x = torch.randn(n, 1, generator=generator, dtype=torch.float64) + shift * (1 - a[:, None])
    coefs = torch.tensor([list(coef0), list(coef1)], dtype=torch.float64)    # (2, 2)
    if coefs.shape != (2, 2):
        raise ValueError("coef0 and coef1 must each be (intercept, slope)")
    b0, b1 = coefs[a, 0:1], coefs[a, 1:2]
    y = b0 + b1 * x + noise * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    truth = {t: GaussianMixture([[coefs[t, 0].item()],
                                 [(coefs[t, 0] + coefs[t, 1] * shift).item()]],
                                [math.hypot(coefs[t, 1].item(), noise)] * 2) for t in (0, 1)}
    return x, a, y, truth


def mixture_log_prob(mixture: GaussianMixture, y):
    """log density of a normalized `GaussianMixture` at y (N, D), (N,)."""
    return -mixture.energy(y) - mixture.log_z


def grid_kl(log_p, log_q, bin_size: float) -> float:
    """KL(p || q) = sum_k p_k (log p_k - log q_k) dy on a uniform grid (rectangle rule)."""
    p = log_p.exp()
    return float((p * (log_p - log_q)).sum() * bin_size)
