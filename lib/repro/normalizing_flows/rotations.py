"""Flows on the rotation group SO(3) through unit quaternions (after Koehler, Invernizzi, de Haan &
Noe 2023, "Rigid Body Flows for Sampling Molecular Crystal Structures").

A rotation R is a unit quaternion q in S^3 up to sign: q and -q give the same R (S^3 double covers
SO(3)). A density on S^3 with p(q) = p(-q) is therefore a density on SO(3), and with respect to the
normalized Haar measures the two numbers agree. Every density here is written with respect to the
uniform probability measure on S^3 (so the uniform distribution has log density 0); the surface
measure has total volume 2 pi^2 (`LOG_VOLUME_S3`) and SO(3) with its matching metric pi^2.

The paper's layer is the double Moebius transformation. The Moebius map m(q; w) of a point q on the
sphere through a centre w (|w| < 1) is the second point where the line from q through w meets the
sphere; it is an involution and not antipodally symmetric. The double map
    T(q; w) = normalize(m(q; w) + m(q; -w))
is odd, T(-q) = -T(q), so it is a flow on SO(3). Working the sum out in the plane of q and w gives
    m(q; w) + m(q; -w)  proportional to  -A q,   A = (1 + |w|^2) I - 2 w w^T,
so T(q) = -A q / |A q|: a linear map followed by projection back onto S^3 (checked against the
definition in the tests). Its log|det| on S^3 is log det A - 4 log|A q|, and its inverse is the same
kind of map with A^{-1}. Because such maps compose into one such map, a stack of unconditioned
double Moebius layers gives only a unimodal (angular central Gaussian) density; expressive flows
condition the centre w on other variables. Here they are auxiliary Gaussian variables a in R^3
(an augmented flow): layers alternate q -> T(q; w(a)) and a -> a exp(s(q)) + t(q), with s, t even
functions of q (built from the entries of q q^T), so the joint density stays symmetric in q.
Importance weights use the joint target p(q) N(a; 0, I), whose normalizer is that of p(q).

Section numbers of the paper are not cited here: only its abstract and Fig. 1 caption could be read.
Introduced in: notebooks/normalizing-flows/rigid-body-flows-for-sampling-molecular.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_int, check_positive
from .coupling import FlowModel

LOG_VOLUME_S3 = math.log(2 * math.pi ** 2)       # surface measure of the unit 3-sphere
LOG_VOLUME_SO3 = math.log(math.pi ** 2)          # SO(3) = S^3 / {+1, -1}, same metric


def _check_quaternions(q):
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"q has shape {tuple(q.shape)}, must be (N, 4) unit quaternions")


def haar_log_prob(q):
    """log density of the uniform (normalized Haar) distribution w.r.t. the uniform probability
    measure on S^3: 0 for every q (N, 4); the density w.r.t. the surface measure is
    -LOG_VOLUME_S3."""
    _check_quaternions(q)
    return q.new_zeros(q.shape[0])


def uniform_quaternions(n: int, generator=None, dtype=torch.float32, device=None):
    """n unit quaternions (n, 4) uniform on S^3 (equivalently Haar-uniform rotations)."""
    x = torch.randn(check_int("n", n), 4, generator=generator, dtype=dtype, device=device)
    return x / x.norm(dim=1, keepdim=True)


def quaternion_multiply(p, q):
    """Hamilton product p q of quaternions (..., 4), scalar first."""
    w1, x1, y1, z1 = p.unbind(-1)
    w2, x2, y2, z2 = q.unbind(-1)
    return torch.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)


def quaternion_to_matrix(q):
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) (scalar first); q and -q give
    the same matrix."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1
    ).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(m):
    """A unit quaternion (..., 4) with scalar part >= 0 for each rotation matrix (..., 3, 3): the
    eigenvector of the 4x4 symmetric matrix of m with the largest eigenvalue (Bar-Itzhack)."""
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"m has shape {tuple(m.shape)}, must be (..., 3, 3)")
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    k = torch.stack([
        m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01,
        m21 - m12, m00 - m11 - m22, m01 + m10, m02 + m20,
        m02 - m20, m01 + m10, m11 - m00 - m22, m12 + m21,
        m10 - m01, m02 + m20, m12 + m21, m22 - m00 - m11], -1).reshape(*m.shape[:-2], 4, 4) / 3
    q = torch.linalg.eigh(k)[1][..., -1]
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


# --- Moebius maps on S^3 -------------------------------------------------------------------------

def moebius(q, w):
    """The single Moebius map m(q; w): the second intersection of the line from q (N, 4) through w
    (N, 4), |w| < 1, with S^3. An involution, not antipodally symmetric. Returns (m, log|det|) with
    log|det| = 3 log((1 - |w|^2) / |q - w|^2)."""
    d = w - q
    d2 = (d * d).sum(1, keepdim=True)
    y = q - 2 * (q * d).sum(1, keepdim=True) / d2 * d
    return y, 3 * (torch.log1p(-(w * w).sum(1)) - torch.log(d2[:, 0]))


def _double_moebius_matrix_apply(q, w, inverse: bool):
    """A q (or A^{-1} q) with A = (1 + |w|^2) I - 2 w w^T, without forming A."""
    r2 = (w * w).sum(1, keepdim=True)
    wq = (w * q).sum(1, keepdim=True)
    if not inverse:
        return (1 + r2) * q - 2 * wq * w
    return (q + 2 * wq * w / (1 - r2)) / (1 + r2)


def double_moebius(q, w):
    """The antipodally symmetric double Moebius map T(q; w) = normalize(m(q; w) + m(q; -w)) =
    -A q / |A q| of q (N, 4) with centres w (N, 4), |w| < 1. Returns (T(q), log|det dT| on S^3)."""
    aq = _double_moebius_matrix_apply(q, w, inverse=False)
    norm = aq.norm(dim=1)
    r2 = (w * w).sum(1)
    log_det_a = torch.log1p(-r2) + 3 * torch.log1p(r2)
    return -aq / norm[:, None], log_det_a - 4 * torch.log(norm)


def double_moebius_inverse(y, w):
    """The inverse of `double_moebius`: q with T(q; w) = y, and log|det| of the inverse map."""
    q = -_double_moebius_matrix_apply(y, w, inverse=True)
    q = q / q.norm(dim=1, keepdim=True)
    return q, -double_moebius(q, w)[1]


def _centre(v):
    """A point strictly inside the unit ball from any v (N, 4): v / sqrt(1 + |v|^2)."""
    return v / torch.sqrt(1 + (v * v).sum(1, keepdim=True))


def even_features(q):
    """The 10 distinct entries q_i q_j (i <= j) of q q^T: functions of the rotation, not of the
    sign of q."""
    i, j = torch.triu_indices(4, 4, device=q.device)
    return q[:, i] * q[:, j]


def _mlp(d_in, hidden, d_out):
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                        nn.Linear(hidden, d_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


# --- layers of the augmented flow: x = (q, a), shape (N, 7) --------------------------------------

class ConditionalMoebius(nn.Module):
    """q -> T(q; w(a)), a unchanged, with w(a) from a small network of the auxiliary a (N, 3).
    `double=True` is the paper's antipodally symmetric double Moebius map; `double=False` the single
    Moebius map, which ignores the double cover (a baseline). Convention: forward is
    data -> base."""

    def __init__(self, hidden: int = 32, double: bool = True):
        super().__init__()
        self.double = bool(double)
        self.net = _mlp(3, check_int("hidden", hidden), 4)
        # w = 0 (T = -identity) is a stationary point of every loss (A is even in w): start off it
        nn.init.normal_(self.net[-1].bias, std=0.3)

    def _w(self, a):
        return _centre(self.net(a))

    def forward(self, x):
        q, a = x[:, :4], x[:, 4:]
        w = self._w(a)
        y, ld = double_moebius(q, w) if self.double else moebius(q, w)
        return torch.cat([y, a], 1), ld

    def inverse(self, x):
        y, a = x[:, :4], x[:, 4:]
        w = self._w(a)
        q, ld = double_moebius_inverse(y, w) if self.double else moebius(y, w)
        return torch.cat([q, a], 1), ld


class ConditionalAffine(nn.Module):
    """a -> a exp(s(q)) + t(q), q unchanged; s, t from a network of `even_features(q)` when
    `even=True` (symmetric in q -> -q) or of q itself otherwise."""

    def __init__(self, hidden: int = 32, even: bool = True):
        super().__init__()
        self.even = bool(even)
        self.net = _mlp(10 if self.even else 4, check_int("hidden", hidden), 6)

    def _s_t(self, q):
        out = self.net(even_features(q) if self.even else q)
        return torch.tanh(out[:, :3]) * 2, out[:, 3:]

    def forward(self, x):
        q, a = x[:, :4], x[:, 4:]
        s, t = self._s_t(q)
        return torch.cat([q, a * torch.exp(s) + t], 1), s.sum(1)

    def inverse(self, x):
        q, b = x[:, :4], x[:, 4:]
        s, t = self._s_t(q)
        return torch.cat([q, (b - t) * torch.exp(-s)], 1), -s.sum(1)


class AugmentedRotationFlow(FlowModel):
    """A density on S^3 x R^3 over x = (q, a) (N, 7): base q uniform on S^3, a ~ N(0, I), and
    `blocks` pairs of (ConditionalMoebius, ConditionalAffine). `symmetric=True` uses the double
    Moebius map and even conditioners (a flow on SO(3) x R^3); False the single Moebius map and
    plain conditioners (a flow on S^3 that ignores the double cover). log_prob is w.r.t. the
    uniform probability measure on S^3 times Lebesgue measure on R^3."""

    def __init__(self, blocks: int = 4, hidden: int = 32, symmetric: bool = True):
        layers = []
        for _ in range(check_int("blocks", blocks)):
            layers += [ConditionalMoebius(hidden, double=symmetric),
                       ConditionalAffine(hidden, even=symmetric)]
        super().__init__(layers, dim=7)

    @staticmethod
    def base_log_prob(x):
        a = x[:, 4:]
        return -0.5 * (a * a).sum(1) - 1.5 * math.log(2 * math.pi)

    def sample_and_log_prob(self, n: int, generator=None):
        """n samples x (n, 7) and their log density (n,)."""
        dtype, device = self._anchor.dtype, self._anchor.device
        q = uniform_quaternions(check_int("n", n), generator, dtype, device)
        a = torch.randn(n, 3, generator=generator, dtype=dtype, device=device)
        x = torch.cat([q, a], 1)
        log_p = self.base_log_prob(x)
        for layer in reversed(self.layers):
            x, ld_inverse = layer.inverse(x)
            log_p = log_p - ld_inverse
        return x, log_p


# --- a multimodal target on SO(3) with an exact normalizer ---------------------------------------

class BinghamMixture:
    """p(q) proportional to sum_k exp(kappa ((q . mu_k)^2 - 1)): K antipodally symmetric modes on
    S^3, i.e. K modes on SO(3) at the rotations mu_k (K, 4). Density w.r.t. the uniform probability
    measure on S^3 (equivalently normalized Haar on SO(3)); the normalizer Z = K * Z_1 is exact up
    to a 1-D quadrature, Z_1 = E_uniform[exp(kappa (t^2 - 1))] with t = q . mu of density
    (2 / pi) sqrt(1 - t^2) on [-1, 1]."""

    def __init__(self, modes, kappa: float, grid: int = 200_001):
        modes = torch.as_tensor(modes, dtype=torch.float64)
        _check_quaternions(modes)
        self.modes = modes / modes.norm(dim=1, keepdim=True)
        check_positive("kappa", kappa)
        self.kappa = float(kappa)
        # t = cos(phi), phi in [0, pi]: density of phi is (2 / pi) sin^2(phi), smooth for the
        # trapezoid rule; the inverse CDF on this grid draws exact-enough samples of t
        phi = torch.linspace(0, math.pi, check_int("grid", grid, 101), dtype=torch.float64)
        bump = torch.exp(self.kappa * (torch.cos(phi) ** 2 - 1))
        dens = (2 / math.pi) * torch.sin(phi) ** 2 * bump
        cdf = torch.cat([dens.new_zeros(1), torch.cumsum((dens[1:] + dens[:-1]) / 2, 0)])
        cdf = cdf * (phi[1] - phi[0])
        self.log_z = math.log(len(self.modes)) + math.log(cdf[-1].item())
        self._phi, self._cdf = phi, cdf / cdf[-1]

    def log_prob_unnormalized(self, q):
        """log sum_k exp(kappa ((q . mu_k)^2 - 1)) for q (N, 4)."""
        _check_quaternions(q)
        t = q @ self.modes.to(q).T                                        # (N, K)
        return torch.logsumexp(self.kappa * (t * t - 1), 1)

    def log_prob(self, q):
        """Normalized log p(q) for q (N, 4)."""
        return self.log_prob_unnormalized(q) - self.log_z

    def sample(self, n: int, generator=None):
        """n exact samples (n, 4) (float64)."""
        n = check_int("n", n)
        k = torch.randint(len(self.modes), (n,), generator=generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        idx = torch.searchsorted(self._cdf, u).clamp(1, len(self._phi) - 1)
        c0, c1 = self._cdf[idx - 1], self._cdf[idx]
        p0, p1 = self._phi[idx - 1], self._phi[idx]
        phi = p0 + (u - c0) / (c1 - c0).clamp_min(1e-300) * (p1 - p0)
        mu = self.modes[k]
        v = torch.randn(n, 4, generator=generator, dtype=torch.float64)
        v = v - (v * mu).sum(1, keepdim=True) * mu
        v = v / v.norm(dim=1, keepdim=True)
        return torch.cos(phi)[:, None] * mu + torch.sin(phi)[:, None] * v
