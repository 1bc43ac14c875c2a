"""Elementwise monotone transforms: rational-quadratic splines, smooth ramp mixtures, circle flows.

Scalar bijections, each as a function of unnormalized parameters (so a conditioner can supply
them later) and as a layer holding them as `nn.Parameter`s, one set per dimension:

- `rational_quadratic_spline` / `RationalQuadraticSpline`: Durkan et al. 2019, "Neural Spline Flows",
  Sec. 3.1 and App. A; monotone on [-B, B], identity outside, analytic inverse.
- `smooth_ramp_mixture` / `SmoothRampMixture`: after Koehler, Kraemer & Noe 2021, "Smooth Normalizing
  Flows": a C-infinity monotone map of [0, 1] built from bump-based ramps, inverted by bisection, with
  gradients of the inverse from the inverse function theorem (`monotone_inverse`).
- `mobius_circle` / `MobiusCircle` and `circular_spline` / `CircularSpline`: after Rezende et al. 2020,
  "Normalizing Flows on Tori and Spheres": convex combinations of Moebius maps of the unit circle, and
  a spline with matching end slopes; applied to every coordinate of (N, D) angles each is a product
  flow on the torus T^D.

Layers follow the flows convention: `forward(x) -> (y, log_det)`, `inverse(y) -> (x, log_det_inverse)`,
log_det of shape (N,). The functions return elementwise log|dy/dx| instead (same shape as x).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..core.validation import check_int, check_positive

MIN_BIN, MIN_DERIVATIVE = 1e-3, 1e-3   # nflows' defaults: keep bins and slopes away from zero
BISECTION_STEPS = 64                   # halves the bracket below float64 spacing on [0, 2 pi]


def _check_batch(x, dim):
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {dim})")


def _take(params, index):
    """params (..., K) broadcast against index (...), gathered at index along the last axis."""
    params = params.expand(index.shape + params.shape[-1:])
    return params.gather(-1, index.unsqueeze(-1)).squeeze(-1)


# --- rational-quadratic spline ----------------------------------------------------------------------

def _knots(unnormalized, lo, hi):
    """K bin sizes (softmax, each >= MIN_BIN of the interval) -> K + 1 knots from lo to hi."""
    k = unnormalized.shape[-1]
    sizes = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(unnormalized, -1)
    inner = lo + (hi - lo) * torch.cumsum(sizes, -1)[..., :-1]
    return torch.cat([torch.full_like(inner[..., :1], lo), inner, torch.full_like(inner[..., :1], hi)], -1)


def _check_bins(widths, heights, derivatives, interior):
    k = widths.shape[-1]
    if heights.shape[-1] != k or derivatives.shape[-1] != k - interior:
        raise ValueError(f"widths, heights, derivatives have last sizes {k}, {heights.shape[-1]}, "
                         f"{derivatives.shape[-1]}; they must be K, K and K - {interior}")


def _rq_spline(x, widths, heights, slopes, inverse, lo, hi):
    """The spline of Durkan et al. 2019 (App. A) on [lo, hi] with knot slopes `slopes` (..., K + 1),
    already positive; the identity outside [lo, hi]."""
    k = widths.shape[-1]
    xk, yk = _knots(widths, lo, hi), _knots(heights, lo, hi)
    inside = (x >= lo) & (x <= hi)
    z = x.clamp(lo, hi)
    index = ((z[..., None] >= (yk if inverse else xk)[..., 1:k]).sum(-1))         # bin of each point
    x0, w = _take(xk, index), _take(xk.diff(dim=-1), index)
    y0, h = _take(yk, index), _take(yk.diff(dim=-1), index)
    d0, d1 = _take(slopes, index), _take(slopes, index + 1)
    s = h / w
    if inverse:
        dy = z - y0
        a = h * (s - d0) + dy * (d1 + d0 - 2 * s)
        b = h * d0 - dy * (d1 + d0 - 2 * s)
        c = -s * dy
        xi = (2 * c) / (-b - torch.sqrt((b ** 2 - 4 * a * c).clamp_min(0)))
    else:
        xi = (z - x0) / w
    mix = xi * (1 - xi)
    denom = s + (d1 + d0 - 2 * s) * mix
    log_deriv = (2 * torch.log(s) + torch.log(d1 * xi ** 2 + 2 * s * mix + d0 * (1 - xi) ** 2)
                 - 2 * torch.log(denom))                                             # App. A, dy/dx
    if inverse:
        out = x0 + xi * w
        log_deriv = -log_deriv
    else:
        out = y0 + h * (s * xi ** 2 + d0 * mix) / denom
    return torch.where(inside, out, x), torch.where(inside, log_deriv, torch.zeros_like(log_deriv))


def rational_quadratic_spline(x, widths, heights, derivatives, inverse: bool = False, bound: float = 3.0):
    """The monotone rational-quadratic spline of Durkan et al. 2019 (Sec. 3.1, App. A): K bins on
    [-bound, bound] whose widths and heights come from softmax(`widths`), softmax(`heights`) and
    whose K - 1 interior knot slopes come from softplus(`derivatives`); the slopes at -bound and
    bound are 1, so the identity tails outside join with a continuous first derivative.

    x: (...); widths, heights: (..., K); derivatives: (..., K - 1), all broadcastable against x[..., None].
    Returns (y, log|dy/dx|) elementwise, or with `inverse` (x, log|dx/dy|) by the quadratic root of
    App. A (the numerically stable form 2c / (-b - sqrt(b^2 - 4ac))).
    """
    _check_bins(widths, heights, derivatives, 1)
    check_positive("bound", bound)
    slopes = F.pad(MIN_DERIVATIVE + F.softplus(derivatives), (1, 1), value=1.0)   # (..., K + 1)
    return _rq_spline(x, widths, heights, slopes, inverse, -bound, bound)


def circular_spline(theta, widths, heights, derivatives, inverse: bool = False):
    """A rational-quadratic spline of the circle, after Rezende et al. 2020 (circular splines): the
    Durkan et al. spline on [0, 2 pi] with f(0) = 0, f(2 pi) = 2 pi and one slope shared by both ends,
    so f extends to a diffeomorphism of the circle (f and f' match across the seam).

    theta: (...) in [0, 2 pi]; widths, heights: (..., K); derivatives: (..., K), the K - 1 interior
    slopes then the end slope, each softplus(.). Returns what `rational_quadratic_spline` returns.
    """
    _check_bins(widths, heights, derivatives, 0)
    slopes = MIN_DERIVATIVE + F.softplus(derivatives)
    slopes = torch.cat([slopes[..., -1:], slopes], -1)                             # (..., K + 1)
    return _rq_spline(theta, widths, heights, slopes, inverse, 0.0, 2 * math.pi)


class RationalQuadraticSpline(nn.Module):
    """An unconditional rational-quadratic spline per dimension (Durkan et al. 2019, Sec. 3.1),
    starting at the identity: equal bins and unit slopes."""

    def __init__(self, dim: int, bins: int = 8, bound: float = 3.0):
        super().__init__()
        self.dim, self.bound = check_int("dim", dim), bound
        check_int("bins", bins)
        check_positive("bound", bound)
        self.widths = nn.Parameter(torch.zeros(dim, bins))
        self.heights = nn.Parameter(torch.zeros(dim, bins))
        unit = math.log(math.expm1(1 - MIN_DERIVATIVE))                  # softplus^-1 of slope 1
        self.derivatives = nn.Parameter(torch.full((dim, bins - 1), unit))

    def _transform(self, x, inverse):
        _check_batch(x, self.dim)
        y, log_deriv = rational_quadratic_spline(x, self.widths, self.heights, self.derivatives,
                                                 inverse=inverse, bound=self.bound)
        return y, log_deriv.sum(-1)

    def forward(self, x):
        return self._transform(x, False)

    def inverse(self, y):
        return self._transform(y, True)


class CircularSpline(nn.Module):
    """An unconditional circular spline (`circular_spline`) on each of D angles: a product flow on the
    torus T^D, starting at the identity. Angles in [0, 2 pi]; compose with `MobiusCircle` for a
    rotation, since this map fixes the angle 0."""

    def __init__(self, dim: int, bins: int = 8):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.widths = nn.Parameter(torch.zeros(dim, check_int("bins", bins)))
        self.heights = nn.Parameter(torch.zeros(dim, bins))
        self.derivatives = nn.Parameter(torch.full((dim, bins), math.log(math.expm1(1 - MIN_DERIVATIVE))))

    def _transform(self, x, inverse):
        _check_batch(x, self.dim)
        y, log_deriv = circular_spline(x, self.widths, self.heights, self.derivatives, inverse=inverse)
        return y, log_deriv.sum(-1)

    def forward(self, x):
        return self._transform(x, False)

    def inverse(self, y):
        return self._transform(y, True)


# --- inverse by bisection, differentiated by the inverse function theorem ---------------------------

class _MonotoneInverse(torch.autograd.Function):
    """x = f^{-1}(y; params) for an elementwise increasing f on [lo, hi], found by bisection. Its
    gradient never runs through the iterations: dx/dy = 1 / f'(x) and dx/dparams = -(df/dparams) / f'(x)
    (inverse function theorem), evaluated once at the root. First derivatives only."""

    @staticmethod
    def forward(ctx, fn, y, lo, hi, *params):
        lower, upper = torch.full_like(y, lo), torch.full_like(y, hi)
        for _ in range(BISECTION_STEPS):
            mid = (lower + upper) / 2
            above = fn(mid, *params)[0] > y
            lower, upper = torch.where(above, lower, mid), torch.where(above, mid, upper)
        x = (lower + upper) / 2
        ctx.fn = fn
        ctx.save_for_backward(x, *params)
        return x

    @staticmethod
    def backward(ctx, grad_x):
        x, *params = ctx.saved_tensors
        with torch.enable_grad():
            params = [p.detach().requires_grad_() for p in params]
            y, log_deriv = ctx.fn(x, *params)
            grad_y = grad_x / log_deriv.exp()
            grads = torch.autograd.grad(y, params, grad_outputs=-grad_y, allow_unused=True) if params else ()
        return (None, grad_y.detach(), None, None, *[None if g is None else g.detach() for g in grads])


def monotone_inverse(fn, y, lo: float, hi: float, *params):
    """Solve fn(x, *params)[0] = y for x in [lo, hi], where fn(x, *params) -> (f(x), log f'(x)) is
    elementwise and increasing in x. Differentiable in y and params by the inverse function theorem."""
    return _MonotoneInverse.apply(fn, y, lo, hi, *params)


# --- smooth ramp mixture ----------------------------------------------------------------------------

def _ramp(t, alpha):
    """The C-infinity step sigma(t) = rho(t) / (rho(t) + rho(1 - t)), rho(t) = exp(-alpha / t) for t > 0
    and 0 otherwise: 0 for t <= 0, 1 for t >= 1, all derivatives vanishing at both ends. Returns
    (sigma, sigma'). Within alpha / 40 of either end sigma is within exp(-38) of its limit and is set
    to it, which keeps 1 / t finite."""
    edge = alpha / 40
    inside = (t > edge) & (t < 1 - edge)
    u = torch.where(inside, t, torch.full_like(t, 0.5))
    s = torch.sigmoid(alpha * (1 / (1 - u) - 1 / u))             # log rho(u) - log rho(1 - u)
    ds = s * (1 - s) * alpha * (1 / u ** 2 + 1 / (1 - u) ** 2)
    return torch.where(inside, s, (t >= 0.5).to(t.dtype)), torch.where(inside, ds, torch.zeros_like(ds))


def smooth_ramp_mixture(x, locations, slopes, weights, inverse: bool = False, alpha: float = 1.0,
                        linear: float = 0.01):
    """A C-infinity increasing bijection of [0, 1] after Koehler, Kraemer & Noe 2021 ("Smooth
    Normalizing Flows"): f(x) = (1 - linear) sum_k w_k r_k(x) + linear x, where each r_k rescales the
    smooth ramp sigma(a_k (x - b_k) + 1/2) to run from 0 at x = 0 to 1 at x = 1. The `linear` share
    keeps f' > 0 everywhere. Unnormalized parameters, (..., K) broadcastable against x[..., None]:
    b_k = sigmoid(`locations`), a_k = 1 + softplus(`slopes`), w = softmax(`weights`).

    Returns (y, log f'(x)) elementwise, or with `inverse` (x, -log f'(x)) where x is found by
    bisection (`monotone_inverse`). x must lie in [0, 1]. The ramp's form (rho = exp(-alpha / t), i.e.
    beta = 1) and the affine rescaling are ours after the paper; its equation numbers were not checked.
    """
    check_positive("alpha", alpha)
    if not alpha < 20:
        raise ValueError(f"alpha == {alpha!r}, must be < 20 (the ramp's cutoff is alpha / 40)")
    if not 0 < linear < 1:
        raise ValueError(f"linear == {linear!r}, must be in (0, 1)")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("x has values outside [0, 1], the domain of smooth_ramp_mixture")

    def transform(z, locations, slopes, weights):
        b, a, w = torch.sigmoid(locations), 1 + F.softplus(slopes), torch.softmax(weights, -1)
        at_0, _ = _ramp(0.5 - a * b, alpha)
        at_1, _ = _ramp(0.5 + a * (1 - b), alpha)
        r, dr = _ramp(a * (z[..., None] - b) + 0.5, alpha)
        scale = w / (at_1 - at_0)
        y = (1 - linear) * (scale * (r - at_0)).sum(-1) + linear * z
        deriv = (1 - linear) * (scale * a * dr).sum(-1) + linear
        return y, torch.log(deriv)

    if not inverse:
        return transform(x, locations, slopes, weights)
    z = monotone_inverse(transform, x, 0.0, 1.0, locations, slopes, weights)
    return z, -transform(z, locations, slopes, weights)[1]


class SmoothRampMixture(nn.Module):
    """An unconditional smooth ramp mixture per dimension on [0, 1] (after Koehler, Kraemer & Noe 2021):
    `components` ramps with learned location, slope and weight; parameters start at zero (all ramps
    centred at 1/2)."""

    def __init__(self, dim: int, components: int = 4, alpha: float = 1.0, linear: float = 0.01):
        super().__init__()
        self.dim, self.alpha, self.linear = check_int("dim", dim), alpha, linear
        check_int("components", components)
        self.locations = nn.Parameter(torch.zeros(dim, components))
        self.slopes = nn.Parameter(torch.zeros(dim, components))
        self.weights = nn.Parameter(torch.zeros(dim, components))

    def _transform(self, x, inverse):
        _check_batch(x, self.dim)
        y, log_deriv = smooth_ramp_mixture(x, self.locations, self.slopes, self.weights, inverse=inverse,
                                           alpha=self.alpha, linear=self.linear)
        return y, log_deriv.sum(-1)

    def forward(self, x):
        return self._transform(x, False)

    def inverse(self, y):
        return self._transform(y, True)


# --- Moebius maps of the circle ---------------------------------------------------------------------

def _mobius_angle(theta, w):
    """The angle of h_w(e^{i theta}), h_w(z) = (1 - |w|^2) / |z - w|^2 (z - w) - w, as a continuous
    function of theta with g(0) = 0 and g(theta + 2 pi) = g(theta) + 2 pi. theta (...), w (..., K, 2)
    broadcastable -> (..., K); also returns g' = (1 - |w|^2) / |e^{i theta} - w|^2 (a Poisson kernel).

    On the circle h_w(z) = (z - w) / (1 - conj(w) z), whose angle is 2 arg(z - w) - theta, and
    arg(z - w) = theta + arg(1 - w e^{-i theta}) with the last term in (-pi/2, pi/2): no branch cuts."""
    wx, wy = w[..., 0], w[..., 1]
    t = theta[..., None]
    c, s = torch.cos(t), torch.sin(t)
    bend = torch.atan2(wx * s - wy * c, 1 - wx * c - wy * s)         # arg(1 - w e^{-i theta})
    g = t + 2 * (bend - torch.atan2(-wy, 1 - wx))
    deriv = (1 - wx ** 2 - wy ** 2) / ((c - wx) ** 2 + (s - wy) ** 2)
    return g, deriv


def mobius_circle(theta, w, weights, inverse: bool = False):
    """A convex combination of K Moebius maps of the circle, after Rezende et al. 2020 ("Normalizing
    Flows on Tori and Spheres"): f(theta) = sum_k softmax(weights)_k g_k(theta), where g_k is the
    Moebius map with centre w_k (inside the unit disk) read as an angle and shifted so that g_k(0) = 0.
    Each g_k is an increasing bijection of [0, 2 pi] with g_k(theta + 2 pi) = g_k(theta) + 2 pi, so f
    is one too, and f' = sum_k rho_k g_k' is 2 pi-periodic. theta: (...) in [0, 2 pi]; w: (..., K, 2);
    weights: (..., K).

    Returns (f(theta), log f'(theta)) elementwise, or with `inverse` the preimage and -log f' there
    (bisection, `monotone_inverse`).
    """
    if w.shape[-1] != 2 or w.shape[-2] != weights.shape[-1]:
        raise ValueError(f"w has shape {tuple(w.shape)} and weights {tuple(weights.shape)}; "
                         "they must be (..., K, 2) and (..., K)")
    if w.numel() and not (w.norm(dim=-1) < 1).all():
        raise ValueError("w has points with |w| >= 1; Moebius centres must lie inside the unit disk")

    def transform(t, w, weights):
        g, dg = _mobius_angle(t, w)
        rho = torch.softmax(weights, -1)
        return (rho * g).sum(-1), torch.log((rho * dg).sum(-1))

    if not inverse:
        return transform(theta, w, weights)
    t = monotone_inverse(transform, theta, 0.0, 2 * math.pi, w, weights)
    return t, -transform(t, w, weights)[1]


class MobiusCircle(nn.Module):
    """A Moebius mixture on each of D angles followed by a learned rotation: the product of D circle
    flows, a flow on the torus T^D (after Rezende et al. 2020). Centres w = v / (1 + |v|) from raw
    v, so |w| < 1; parameters start at zero (the identity). Inputs are reduced mod 2 pi, outputs lie
    in [0, 2 pi) (a point within rounding of 2 pi may come back as 0, the same angle)."""

    def __init__(self, dim: int, components: int = 2):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.centres = nn.Parameter(torch.zeros(dim, check_int("components", components), 2))
        self.weights = nn.Parameter(torch.zeros(dim, components))
        self.rotation = nn.Parameter(torch.zeros(dim))

    def w(self):
        return self.centres / (1 + self.centres.norm(dim=-1, keepdim=True))

    def forward(self, theta):
        _check_batch(theta, self.dim)
        y, log_deriv = mobius_circle(torch.remainder(theta, 2 * math.pi), self.w(), self.weights)
        return torch.remainder(y + self.rotation, 2 * math.pi), log_deriv.sum(-1)

    def inverse(self, y):
        _check_batch(y, self.dim)
        theta, log_deriv = mobius_circle(torch.remainder(y - self.rotation, 2 * math.pi), self.w(),
                                         self.weights, inverse=True)
        return theta, log_deriv.sum(-1)
