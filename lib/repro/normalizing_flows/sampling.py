"""Stochastic blocks with importance weights (after Wu, Koehler & Noe 2020, "Stochastic Normalizing
Flows"), and reverse-KL gradient estimators: reparameterized and path (after Roeder et al. 2017,
"Sticking the landing", and Vaitl et al. 2022, "Gradients should stay on path").

A stochastic normalizing flow maps a prior sample z ~ p_Z = exp(-u_Z) through deterministic layers
and stochastic blocks to x. Every step t adds
    Delta S_t = log [mu_b(y_{t+1} -> y_t) / mu_f(y_t -> y_{t+1})],
the log ratio of the backward and forward transition densities (= log|det J| for a deterministic
layer), and the path's importance weight towards p_X = exp(-u_X) / Z is
    log w = u_Z(z) - u_X(x) + sum_t Delta S_t,
so E[w] = Z and sum_i w_i f(x_i) / sum_i w_i is a consistent estimate of E_p[f].
A block that keeps exp(-u) invariant by detailed balance (Metropolis, MALA) has
Delta S_t = u(y_{t+1}) - u(y_t); unadjusted Langevin has Delta S_t = (|eta|^2 - |eta~|^2) / 2, with
eta the forward noise and eta~ the noise that would take the step back.

Here a deterministic layer's `forward(x)` and a block's `forward(x, generator)` both return
(y, increment of shape (N,)), so `flow_log_weights` runs any list of them.
Equation numbers are not cited: only the papers' abstracts could be read here; the formulas above
are derived from detailed balance and the Gaussian transition densities, and the tests check them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_int, check_positive


def _check_batch(x):
    if x.ndim != 2:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, D)")


def _normal(x, generator):
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _log_uniform(u, generator):
    """log of uniforms shaped like u: the Metropolis test is log U < log acceptance ratio."""
    return torch.rand(u.shape, generator=generator, dtype=u.dtype, device=u.device).log()


def _energy_and_grad(energy, x):
    """u(x) (N,) and grad u(x) (N, D); differentiable further when x requires grad."""
    with torch.enable_grad():
        x_in = x if x.requires_grad else x.detach().requires_grad_()
        u = energy(x_in)
        (grad,) = torch.autograd.grad(u.sum(), x_in, create_graph=x.requires_grad)
    return (u if x.requires_grad else u.detach()), grad


class StochasticBlock(nn.Module):
    """A Markov step towards exp(-energy) of a batch x (N, D): `forward(x, generator=None)`
    returns (y (N, D), Delta S (N,))."""

    def __init__(self, energy, step: float, steps: int = 1):
        super().__init__()
        check_positive("step", step)
        self.energy, self.step, self.steps = energy, float(step), check_int("steps", steps)


class Metropolis(StochasticBlock):
    """`steps` random-walk Metropolis steps y' = y + step * eta, accepted with probability
    min(1, exp(u(y) - u(y'))). Detailed balance gives Delta S = u(y_end) - u(x) over the steps.
    Gradients flow through y as through a random walk; the accept decision itself is held fixed.
    """

    def forward(self, x, generator=None):
        _check_batch(x)
        u_x = self.energy(x)
        y, u_y = x, u_x
        for _ in range(self.steps):
            proposal = y + self.step * _normal(y, generator)
            u_prop = self.energy(proposal)
            accept = _log_uniform(u_y, generator) < u_y - u_prop
            y = torch.where(accept[:, None], proposal, y)
            u_y = torch.where(accept, u_prop, u_y)
        return y, u_y - u_x


class Langevin(StochasticBlock):
    """`steps` overdamped Langevin steps y' = y - step grad u(y) + sqrt(2 step) eta, eta ~ N(0, I).

    Without `metropolis`, every step is taken and Delta S += (|eta|^2 - |eta~|^2) / 2 with
    eta~ = (y - y' + step grad u(y')) / sqrt(2 step): the path ratio of the unadjusted chain, whose
    stationary law is only close to exp(-u), made exact by the weights. With `metropolis` (MALA)
    the step is accepted with probability min(1, exp(u(y) - u(y') + Delta S_step)), which makes
    exp(-u) invariant, and Delta S = u(y_end) - u(x).
    Unadjusted steps are differentiable (reparameterized noise): an SNF can be trained through them.
    """

    def __init__(self, energy, step: float, steps: int = 1, metropolis: bool = False):
        super().__init__(energy, step, steps)
        self.metropolis = bool(metropolis)

    def forward(self, x, generator=None):
        _check_batch(x)
        eps, scale = self.step, math.sqrt(2 * self.step)
        u_x, grad = _energy_and_grad(self.energy, x)
        y, u_y = x, u_x
        delta_s = torch.zeros_like(u_x)
        for _ in range(self.steps):
            eta = _normal(y, generator)
            proposal = y - eps * grad + scale * eta
            u_prop, grad_prop = _energy_and_grad(self.energy, proposal)
            eta_back = (y - proposal + eps * grad_prop) / scale
            log_ratio = 0.5 * ((eta ** 2).sum(-1) - (eta_back ** 2).sum(-1))  # log mu_b / mu_f
            if self.metropolis:
                accept = _log_uniform(u_y, generator) < u_y - u_prop + log_ratio
                y = torch.where(accept[:, None], proposal, y)
                u_y = torch.where(accept, u_prop, u_y)
                grad = torch.where(accept[:, None], grad_prop, grad)
            else:
                y, u_y, grad = proposal, u_prop, grad_prop
                delta_s = delta_s + log_ratio
        return y, (u_y - u_x) if self.metropolis else delta_s


def flow_log_weights(layers, z, prior_energy, target_energy, generator=None):
    """Push z (N, D), drawn from the normalized prior exp(-prior_energy), through `layers` in turn:
    deterministic ones as layer(x) -> (y, log|det J|), `StochasticBlock`s as block(x, generator).
    Returns x (N, D) and log w = u_Z(z) - u_X(x) + sum_t Delta S_t (N,), with E[w] = Z of the
    target."""
    _check_batch(z)
    x, log_w = z, prior_energy(z)
    for layer in layers:
        x, increment = layer(x, generator) if isinstance(layer, StochasticBlock) else layer(x)
        log_w = log_w + increment
    return x, log_w - target_energy(x)


def log_z_estimate(log_w):
    """log of the mean importance weight, an estimate of log Z (biased by O(1/N), consistent), and
    its delta-method standard error std(w) / (sqrt(N) mean(w))."""
    n = check_int("len(log_w)", log_w.numel(), 2)
    w = torch.exp(log_w - log_w.max())                               # rescaled: same ratio
    se = w.std() / (math.sqrt(n) * w.mean())
    return (torch.logsumexp(log_w, 0) - math.log(n)).item(), se.item()


def ess_fraction(log_w) -> float:
    """The effective sample size of importance weights, (sum w)^2 / sum w^2, divided by N."""
    log_w = log_w.detach()
    return (torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))
            / log_w.numel()).item()


def weighted_mean(values, log_w):
    """The self-normalized importance estimate sum_i w_i f_i / sum_i w_i of E_p[f], from values
    f_i (N, ...) and log_w (N,)."""
    p = torch.softmax(log_w, 0)
    return (p.reshape(-1, *[1] * (values.ndim - 1)) * values).sum(0)


class _LogProb(nn.Module):
    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def forward(self, x):
        return self.flow.log_prob(x)


def reverse_kl_loss(flow, energy, n: int, path: bool = False, generator=None):
    """A Monte Carlo free energy mean_i [log q(x_i) + U(x_i)] = KL(q || p) - log Z with x_i ~ q by
    reparameterization; its gradient with respect to the flow's parameters is
      - path=False: the standard estimator (the total derivative of log q(x_theta), score term
        included);
      - path=True: the path gradient (Roeder et al. 2017; Vaitl et al. 2022), log q evaluated with
        detached parameters so only d/dx [log q(x) + U(x)] dx/dtheta remains. Its expectation is the
        same (the score term has mean 0) and it is 0 when q = p.
    The flow needs `sample_and_log_prob(n, generator=...)`, and for path=True a `log_prob(x)`
    differentiable in x; `planar_radial.Flow.log_prob` is not (it runs under no_grad, and its
    inverse is iterative), so the path estimator needs a flow with a differentiable inverse.
    """
    check_int("n", n)
    kwargs = {} if generator is None else {"generator": generator}
    x, log_q = flow.sample_and_log_prob(n, **kwargs)
    if path:
        frozen = {"flow." + name: p.detach() for name, p in flow.named_parameters()}
        log_q = torch.func.functional_call(_LogProb(flow), frozen, (x,))
        if x.requires_grad and not log_q.requires_grad:
            raise ValueError("flow.log_prob(x) is not differentiable in x (run under no_grad?); "
                             "the path estimator needs one that is")
    return (log_q + energy(x)).mean()


def gradient_samples(loss_fn, params, repeats: int):
    """The gradients of `repeats` independent calls loss_fn() (each a fresh Monte Carlo loss) with
    respect to `params`, flattened and stacked: (repeats, number of parameter entries)."""
    params = list(params)
    rows = []
    for _ in range(check_int("repeats", repeats, 2)):
        grads = torch.autograd.grad(loss_fn(), params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for p, g in zip(params, grads)]))
    return torch.stack(rows)


def gradient_variance(loss_fn, params, repeats: int) -> float:
    """The variance of each gradient entry over `repeats` independent draws of loss_fn(), summed
    over entries: the trace of the estimator's covariance, the number Vaitl et al. compare."""
    return gradient_samples(loss_fn, params, repeats).var(0).sum().item()
