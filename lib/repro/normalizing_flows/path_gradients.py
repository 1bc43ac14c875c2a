"""Fast path gradients for normalizing flows, for the reverse and the forward KL (after Vaitl,
Winkler, Richter & Kessel 2024, "Fast and unified path gradient estimators for normalizing flows").

A path gradient keeps only the part of a Monte Carlo KL gradient that flows through the samples:
for the reverse KL, with x = T_theta(u) a sample of q_theta,
    G_path = mean_i [grad_x (log q_theta(x) + U(x))]|_(x_i, theta fixed) . dx_i / dtheta,
which has the same expectation as the standard reparameterized gradient (the dropped score term
has mean 0) and is exactly 0 per sample when q = p.

The slow, drop-in way (`sampling.reverse_kl_loss(path=True)`) evaluates log q(x) a second time with
detached parameters and differentiates through both passes. The fast way computes
v = grad_x log q(x) recursively while sampling, one layer at a time: with y the base-side input of
a layer and x = layer.inverse(y), log q_x(x) = log q_y(y) + log|det dy/dx|, so
    grad_x log q_x = (dy/dx)^T grad_y log q_y + grad_x log|det dy/dx|,
starting from grad_u log N(u; 0, I) = -u. Then one backward pass of the surrogate
mean_i (v_i + grad U(x_i)) . x_i (the bracket detached) through the sampling pass gives G_path.
For an affine coupling layer the recursion reuses the conditioner's output from the sampling pass
and needs one input-only vector-Jacobian product of the conditioner; any other layer falls back on
one extra evaluation of its `forward` (still no parameter gradient through it).

For the forward KL (maximum likelihood, samples x ~ p), KL(p || q_theta) equals the reverse KL
between the push-forward of p to the base, p_theta^0(u) = p(g(u)) |det dg/du| with u = f_theta(x)
and g = f^-1, and the base N(0, I). Its path gradient is
    G_path^ML = mean_i [grad_u (log p_theta^0(u) - log N(u))]|_(u_i, theta fixed) . du_i / dtheta,
which needs the target's force -grad U (the "regularizing" information of the target energy), and
whose bracket is computed by the same recursion run from x towards the base:
    grad_y log p_y = (dx/dy)^T grad_x log p_x + grad_y log|det dx/dy|,   y = layer(x).

Flows are `coupling.FlowModel`s (layers' `forward` maps data -> base). Equation and section numbers
of the paper are not cited: only its abstract could be read here; the formulas above are derived
from the change of variables, and the tests check them against autograd.
Introduced in: notebooks/normalizing-flows/fast-and-unified-path-gradient-estimators.ipynb
"""
from __future__ import annotations

import torch

from ..core.validation import check_int
from .coupling import AffineCoupling, FlowModel, Permute


def _check_flow(flow):
    if not isinstance(flow, FlowModel):
        raise ValueError(f"flow is a {type(flow).__name__}, must be a coupling.FlowModel")


def _force(energy, x):
    """grad U(x) (N, D), detached."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_()
        (grad,) = torch.autograd.grad(energy(x_in).sum(), x_in)
    return grad


def _vjp_generic(fn, point, v):
    """(d fn(point) / d point)^T v + grad_point log|det|, for fn(point) -> (out, log_det), with the
    parameters of fn left out of the gradient; detached."""
    with torch.enable_grad():
        p = point.detach().requires_grad_()
        out, log_det = fn(p)
        (g,) = torch.autograd.grad((v.detach() * out).sum() + log_det.sum(), p)
    return g


def _kept(layer, z):
    """z's conditioning coordinates, in the graph (a fresh leaf when z does not need a gradient),
    so the conditioner's vector-Jacobian product can be taken with respect to them."""
    kept = z * layer.mask
    return kept if kept.requires_grad else kept.detach().requires_grad_()


def _sample_step(layer, y, v):
    """One layer of the sampling pass: x = layer.inverse(y) (differentiable in the parameters) and
    v_x = grad_x log q_x(x) from v = grad_y log q_y(y)."""
    if isinstance(layer, Permute):
        x, _ = layer.inverse(y)
        return x, v[:, layer.inverse_perm]
    if isinstance(layer, AffineCoupling):
        kept = _kept(layer, y)                                      # = x * mask
        s, t = layer._scale_shift(kept)                             # one conditioner evaluation
        x = (y - t) * torch.exp(-s)
        # grad_x [v . (x e^s + t) + sum s]: the free part is v e^s; the kept part adds the
        # conditioner's vector-Jacobian product (x and v held fixed, parameters not differentiated)
        phi = (v.detach() * (x.detach() * torch.exp(s) + t)).sum() + s.sum()
        (g,) = torch.autograd.grad(phi, kept, retain_graph=True)
        return x, (v * torch.exp(s) + layer.mask * g).detach()
    x, _ = layer.inverse(y)
    return x, _vjp_generic(layer, x, v)


def sample_with_score(flow, n: int, generator=None):
    """n samples x (n, D) of the flow, differentiable in its parameters, and grad_x log q(x) (n, D),
    detached, from the recursion run alongside sampling."""
    _check_flow(flow)
    u = torch.randn(check_int("n", n), flow.dim, generator=generator,
                    device=flow._anchor.device, dtype=flow._anchor.dtype)
    x, v = u, -u
    for layer in reversed(flow.layers):
        x, v = _sample_step(layer, x, v)
    return x, v


def fast_path_loss(flow, energy, n: int, generator=None):
    """A surrogate whose gradient in the flow's parameters is the reverse-KL path gradient
    G_path (same samples as `sampling.reverse_kl_loss(flow, energy, n, path=True)` for the same
    generator state), from one sampling pass and one backward pass. Its value is not the KL."""
    x, v = sample_with_score(flow, n, generator)
    bracket = v + _force(energy, x)
    return (bracket * x).sum(1).mean()


def _density_step(layer, x, w):
    """One layer from the data side: y = layer(x) (differentiable in the parameters) and
    w_y = grad_y log p_y(y) of the push-forward, from w = grad_x log p_x(x)."""
    if isinstance(layer, Permute):
        y, _ = layer(x)
        return y, w[:, layer.perm]
    if isinstance(layer, AffineCoupling):
        kept = _kept(layer, x)
        s, t = layer._scale_shift(kept)
        y = x * torch.exp(s) + t
        # x = (y - t) e^-s, log|det dx/dy| = -sum s: grad_y [w . x(y) - sum s]
        phi = (w.detach() * (y.detach() - t) * torch.exp(-s)).sum() - s.sum()
        (g,) = torch.autograd.grad(phi, kept, retain_graph=True)
        return y, (w * torch.exp(-s) + layer.mask * g).detach()
    y, _ = layer(x)
    return y, _vjp_generic(layer.inverse, y, w)


def forward_path_loss(flow, energy, x):
    """A surrogate whose gradient in the flow's parameters is the forward-KL (maximum-likelihood)
    path gradient G_path^ML at target samples x (N, D), using the target's energy U (only its
    gradient). Same expectation as the gradient of -mean log q(x); 0 per sample when q = p."""
    _check_flow(flow)
    if x.ndim != 2 or x.shape[1] != flow.dim:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, {flow.dim})")
    u, w = x, -_force(energy, x)
    for layer in flow.layers:
        u, w = _density_step(layer, u, w)
    bracket = w + u.detach()                                        # - grad_u log N(u) = u
    return (bracket * u).sum(1).mean()


def ml_loss(flow, x):
    """The standard maximum-likelihood loss -mean log q(x) (its gradient: the standard estimator)."""
    return -flow.log_prob(x).mean()


def conditioner_evaluations(flow, estimator: str) -> int:
    """Coupling-conditioner (network) evaluations one gradient of `estimator` costs, counted from
    the code paths above: 'standard' and 'fast' evaluate each coupling network once in the sampling
    pass; 'slow' (drop-in) evaluates it again in log q(x). Backward passes are not counted."""
    n = sum(isinstance(layer, AffineCoupling) for layer in flow.layers)
    counts = {"standard": n, "fast": n, "slow": 2 * n}
    if estimator not in counts:
        raise ValueError(f"estimator == {estimator!r}, must be one of {sorted(counts)}")
    return counts[estimator]
