"""Normalizing flows for variational inference: planar and radial layers (Rezende & Mohamed 2015).

A flow pushes a standard normal z_0 through invertible maps f_1..f_K and tracks the density
(Rezende & Mohamed 2015, Sec. 3.1)::

    log q_K(z_K) = log N(z_0; 0, I) - sum_k log |det df_k/dz_{k-1}|

Each block below holds `length` layers of one kind, applied in turn: its `forward(z)` returns
(f(z), log|det J_f(z)|) and its `inverse(y)` undoes it, so a flow can both sample
(`Flow.sample_and_log_prob`) and evaluate its density at given points (`Flow.log_prob`, used to draw
the density on a grid). Keeping a block's layers in a few stacked tensors, rather than one module
per layer, makes a K = 32 flow several times cheaper to train on a CPU.

`copies=C` makes C independent flows that run side by side: every parameter gets a leading
dimension C and z has shape (C, N, D) instead of (N, D). Fitting one flow to each of several targets
then costs barely more than fitting one.

Fitting a flow to an unnormalized target p(z) ~ exp(-U(z)) minimises the free energy
E_q[log q(z) + beta U(z)], which equals KL(q || p) - log Z at beta = 1.

Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..core.validation import check_choice, check_int


def _prefix(copies):
    """The leading parameter shape: () for one flow, (C,) for C independent copies."""
    return () if copies is None else (check_int("copies", copies),)


class DiagonalAffine(nn.Module):
    """z -> mu + exp(log_sigma) z: turns the standard normal into a learned diagonal Gaussian q_0.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """

    def __init__(self, dim: int, copies: int | None = None):
        super().__init__()
        shape = _prefix(copies) + (check_int("dim", dim),)
        self.mu = nn.Parameter(torch.zeros(shape))
        self.log_sigma = nn.Parameter(torch.zeros(shape))

    def forward(self, z):                                            # z: (*C, N, D)
        log_det = self.log_sigma.sum(-1, keepdim=True).expand(z.shape[:-1])
        return self.mu.unsqueeze(-2) + self.log_sigma.exp().unsqueeze(-2) * z, log_det

    def inverse(self, y):
        return (y - self.mu.unsqueeze(-2)) * torch.exp(-self.log_sigma).unsqueeze(-2)


def planar_u_hat(w, u):
    """The constrained u of Appendix A, same shape as u (..., D): w . u_hat = -1 + softplus(w . u) > -1,
    so that the planar layer with parameters (w, u_hat) is invertible.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    wu = (w * u).sum(-1, keepdim=True)
    return u + (F.softplus(wu) - 1 - wu) * w / (w ** 2).sum(-1, keepdim=True)


def planar_layers(z, w, u_hat, b):
    """Apply K planar layers z <- z + u_hat_k tanh(w_k . z + b_k), k = 1..K, to z of shape (*P, N, D),
    with parameters w, u_hat (*P, K, D) and b (*P, K) shared by the N points of each prefix entry.
    Returns (z_K, sum_k log|1 + u_hat_k . psi_k(z)|) of shapes (*P, N, D) and (*P, N).

    A layer whose u_hat is zero is the identity with log-determinant 0, so masking u_hat shortens a flow.
    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    wu = (w * u_hat).sum(-1).unsqueeze(-2)                          # (*P, 1, K), each > -1
    # Per-layer views, made once: a layer is then a few elementwise ops, which is what a CPU step
    # costs (a product and a sum beat a batch of tiny matrix products, forwards and backwards).
    w_rows = w.unsqueeze(-2).unbind(-3)                              # K x (*P, 1, D)
    u_rows = u_hat.unsqueeze(-2).unbind(-3)                          # K x (*P, 1, D)
    biases = b.unsqueeze(-1).unsqueeze(-1).unbind(-3)                # K x (*P, 1, 1)
    tanhs = []
    for w_k, u_k, b_k in zip(w_rows, u_rows, biases):
        t = torch.tanh((z * w_k).sum(-1, keepdim=True) + b_k)        # (*P, N, 1)
        z = torch.addcmul(z, t, u_k)                                 # z + u_hat tanh(w.z + b)
        tanhs.append(t)
    t = torch.cat(tanhs, -1)                                         # (*P, N, K)
    log_det = torch.log((1 + (1 - t ** 2) * wu).clamp_min(1e-30)).sum(-1)
    return z, log_det


class Planar(nn.Module):
    """`length` planar layers f(z) = z + u_hat tanh(w.z + b) (Sec. 4.1), each invertible (Appendix A).

    u_hat = u + (m(w.u) - w.u) w / |w|^2 with m(x) = -1 + softplus(x), so that w.u_hat > -1;
    log|det J| = log|1 + u_hat . psi(z)| with psi(z) = tanh'(w.z + b) w.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """

    def __init__(self, dim: int, length: int = 1, copies: int | None = None, init_scale: float = 0.1):
        super().__init__()
        shape = _prefix(copies) + (check_int("length", length), check_int("dim", dim))
        self.w = nn.Parameter(init_scale * torch.randn(shape))       # (*C, K, D)
        self.u = nn.Parameter(init_scale * torch.randn(shape))       # (*C, K, D)
        self.b = nn.Parameter(torch.zeros(shape[:-1]))               # (*C, K)

    def u_hat(self):
        """The constrained u of Appendix A, (*C, K, D): w . u_hat = -1 + softplus(w . u) > -1."""
        return planar_u_hat(self.w, self.u)

    def _layer(self, k, u_hat):
        return self.w[..., k, :], u_hat[..., k, :], self.b[..., k, None]  # (*C, D), (*C, D), (*C, 1)

    def forward(self, z):                                            # z: (*C, N, D)
        return planar_layers(z, self.w, self.u_hat(), self.b)

    @torch.no_grad()
    def inverse(self, y, iters: int = 40):
        """Undo the layers, last first: w.y = a + (w.u_hat) tanh(a + b) is solved for a = w.z by
        bisection (the left side is non-decreasing in a because w.u_hat >= -1), then
        z = y - u_hat tanh(a + b)."""
        u_hat = self.u_hat()
        for k in reversed(range(self.w.shape[-2])):
            w, u, b = self._layer(k, u_hat)
            c = (w * u).sum(-1, keepdim=True)                       # (*C, 1)
            target = (y @ w.unsqueeze(-1)).squeeze(-1)               # (*C, N)
            lo, hi = target - c.abs() - 1, target + c.abs() + 1     # |tanh| < 1 brackets the root
            for _ in range(iters):
                mid = (lo + hi) / 2
                above = mid + c * torch.tanh(mid + b) > target
                lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
            y = y - torch.tanh((lo + hi) / 2 + b).unsqueeze(-1) * u.unsqueeze(-2)
        return y


class Radial(nn.Module):
    """`length` radial layers f(z) = z + beta h(alpha, r) (z - z0), h = 1/(alpha + r), r = |z - z0|
    (Sec. 4.1), kept invertible by alpha = softplus(.) > 0 and beta = -alpha + softplus(.) > -alpha.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """

    def __init__(self, dim: int, length: int = 1, copies: int | None = None, init_scale: float = 0.1):
        super().__init__()
        shape = _prefix(copies) + (check_int("length", length), check_int("dim", dim))
        self.z0 = nn.Parameter(init_scale * torch.randn(shape))      # (*C, K, D)
        self.alpha_raw = nn.Parameter(torch.zeros(shape[:-1]))       # (*C, K)
        self.beta_raw = nn.Parameter(torch.zeros(shape[:-1]))        # (*C, K)

    def alpha_beta(self):
        alpha = F.softplus(self.alpha_raw)
        return alpha, -alpha + F.softplus(self.beta_raw)

    def forward(self, z):
        alpha, beta = self.alpha_beta()
        log_det = z.new_zeros(z.shape[:-1])
        for k in range(self.z0.shape[-2]):
            a, bt = alpha[..., k, None], beta[..., k, None]          # (*C, 1)
            diff = z - self.z0[..., k, :].unsqueeze(-2)
            r = diff.norm(dim=-1)                                    # (*C, N)
            h = 1 / (a + r)
            # det J = (1 + beta h)^(D-1) (1 + beta h + beta h'(r) r) with h' = -h^2 (Sec. 4.1)
            log_det = log_det + (z.shape[-1] - 1) * torch.log1p(bt * h) + torch.log1p(bt * h - bt * h ** 2 * r)
            z = z + (bt * h).unsqueeze(-1) * diff
        return z, log_det

    @torch.no_grad()
    def inverse(self, y):
        """Undo the layers, last first: |y - z0| = r (1 + beta / (alpha + r)) is a quadratic in r."""
        alpha, beta = self.alpha_beta()
        for k in reversed(range(self.z0.shape[-2])):
            a, bt = alpha[..., k, None], beta[..., k, None]
            diff = y - self.z0[..., k, :].unsqueeze(-2)
            ry = diff.norm(dim=-1)
            p = a + bt - ry
            r = (-p + torch.sqrt(p ** 2 + 4 * a * ry)) / 2
            y = self.z0[..., k, :].unsqueeze(-2) + diff / (1 + bt / (a + r)).unsqueeze(-1)
        return y


BLOCKS = {"planar": Planar, "radial": Radial}


class Flow(nn.Module):
    """A standard normal base pushed through a sequence of invertible blocks.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """

    def __init__(self, dim: int, blocks, copies: int | None = None):
        super().__init__()
        self.dim, self.copies = check_int("dim", dim), copies
        self.prefix = _prefix(copies)
        self.blocks = nn.ModuleList(blocks)
        self.register_buffer("_anchor", torch.zeros(()))            # follows .to(device) and dtype

    def base_log_prob(self, z):
        return -0.5 * (z ** 2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)

    def sample_and_log_prob(self, n: int, generator=None):
        """n samples z_K of the flow, (*C, n, D), and their log density log q_K(z_K), (*C, n)."""
        z = torch.randn(self.prefix + (check_int("n", n), self.dim), generator=generator,
                        device=self._anchor.device, dtype=self._anchor.dtype)
        log_q = self.base_log_prob(z)
        for block in self.blocks:
            z, log_det = block(z)
            log_q = log_q - log_det
        return z, log_q

    def select(self, index) -> "Flow":
        """A new flow made of the copies `index` (a list of copy numbers) of this one, in that order:
        e.g. the best of several restarts fitted side by side."""
        if not self.prefix:
            raise ValueError("select needs a flow with copies")
        index = torch.as_tensor(index, dtype=torch.long, device=self._anchor.device)
        chosen = copy.deepcopy(self)
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, p in chosen.named_parameters():
                p.data = params[name].data[index].clone()
        chosen.copies, chosen.prefix = len(index), (len(index),)
        return chosen

    @torch.no_grad()
    def log_prob(self, z):
        """log q_K at given points z, (*C, N, D) or (N, D) shared by all copies: run the blocks
        backwards to z_0, then forwards again for the log-determinants."""
        if z.shape[-1] != self.dim or z.ndim not in (2, 2 + len(self.prefix)):
            raise ValueError(f"z has shape {tuple(z.shape)}, must be (N, {self.dim})"
                             + (f" or {self.prefix + ('N', self.dim)}" if self.prefix else ""))
        z = z.to(self._anchor).expand(self.prefix + z.shape[-2:])
        inputs = []
        for block in reversed(self.blocks):
            z = block.inverse(z)
            inputs.append(z)
        log_q = self.base_log_prob(z)
        for block, z_in in zip(self.blocks, reversed(inputs)):
            log_q = log_q - block(z_in)[1]
        return log_q


def make_flow(kind: str, length: int, dim: int = 2, copies: int | None = None, learn_base: bool = True,
              **kw) -> Flow:
    """A flow of `length` layers of one kind ('planar' or 'radial'), preceded by a learned
    diagonal Gaussian q_0 when `learn_base` (the paper's initial density, Sec. 6.1).
    length = 0 gives the diagonal Gaussian alone.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    check_choice("kind", kind, tuple(BLOCKS))
    check_int("length", length, 0)
    blocks = [DiagonalAffine(dim, copies)] if learn_base else []
    if length:
        blocks.append(BLOCKS[kind](dim, length=length, copies=copies, **kw))
    return Flow(dim, blocks, copies)


def stack_energies(energies, repeats: int = 1):
    """One energy for C = repeats x len(energies) copies laid out as (repeat, energy): copy
    r * len(energies) + e is fitted to energies[e], so z (C, N, D) -> (C, N). Each energy is called
    once per step, on all of its repeats together.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    energies = list(energies)
    if not energies:
        raise ValueError("energies is empty: give one energy per copy")
    copies = check_int("repeats", repeats) * len(energies)

    def energy(z):
        if z.ndim != 3 or z.shape[0] != copies:
            raise ValueError(f"z has shape {tuple(z.shape)}, must be ({copies}, N, D)")
        grouped = z.reshape(repeats, len(energies), *z.shape[1:])   # (R, E, N, D)
        values = [u(grouped[:, e].reshape(-1, z.shape[-1])).reshape(repeats, -1)
                  for e, u in enumerate(energies)]                   # E x (R, N)
        return torch.stack(values, 1).reshape(copies, -1)
    return energy


def free_energy(flow: Flow, energy, n: int, beta: float = 1.0, generator=None):
    """Monte Carlo free energy E_q[log q(z) + beta U(z)] per copy (Sec. 4.2; beta < 1 anneals it, Sec. 6);
    it is KL(q || p) - log Z at beta = 1. Shape: () for one flow, (C,) for copies.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta == {beta!r}, must be in [0, 1]")
    z, log_q = flow.sample_and_log_prob(n, generator=generator)
    return (log_q + beta * energy(z)).mean(-1)


def reverse_kl(flow: Flow, energy, log_z, n: int = 100_000, generator=None, return_se: bool = False):
    """KL(q || p) = E_q[log q + U] + log Z, estimated with n samples of the flow (no gradient).
    log_z: a number, or one per copy. With `return_se`, also the Monte Carlo standard error of each
    estimate, std(log q + U) / sqrt(n).

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    with torch.no_grad():
        z, log_q = flow.sample_and_log_prob(n, generator=generator)
        terms = log_q + energy(z)
        kl = terms.mean(-1) + torch.as_tensor(log_z, dtype=terms.dtype, device=terms.device)
        return (kl, terms.std(-1) / math.sqrt(n)) if return_se else kl


def gaussian_flow(mu, log_sigma) -> Flow:
    """The K = 0 flow (a diagonal Gaussian) with the given mean and log standard deviation, each
    (D,) for one flow or (C, D) for C copies: e.g. the optimum that `potentials.best_diagonal_gaussian` found.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    mu, log_sigma = torch.as_tensor(mu), torch.as_tensor(log_sigma)
    if mu.shape != log_sigma.shape or mu.ndim not in (1, 2):
        raise ValueError(f"mu and log_sigma have shapes {tuple(mu.shape)} and {tuple(log_sigma.shape)}; "
                         "they must both be (D,) or (C, D)")
    flow = make_flow("planar", 0, dim=mu.shape[-1], copies=mu.shape[0] if mu.ndim == 2 else None)
    with torch.no_grad():
        flow.blocks[0].mu.copy_(mu)
        flow.blocks[0].log_sigma.copy_(log_sigma)
    return flow


def annealing(step: int, warmup: int = 10_000, start: float = 0.01) -> float:
    """The paper's inverse temperature beta_t = min(1, 0.01 + t / 10000) (Sec. 6);
    `warmup` stretches or shrinks the ramp for shorter runs.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    check_int("warmup", warmup)
    return min(1.0, start + step / warmup)
