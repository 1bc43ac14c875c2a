"""A deep latent Gaussian model (a VAE) whose approximate posterior is a planar flow with amortized
parameters (Rezende & Mohamed 2015; a small stand-in for the models of their Table 2).

The generative model is p(z) = N(0, I) and p(x | z) = Bernoulli(sigmoid(decoder(z))) over binary
pixels. The inference network maps x to the initial density q_0(z_0 | x) = N(mu(x), diag sigma(x)^2)
and to the parameters (w_k, u_k, b_k) of K planar layers, so that

    z_K = f_K o ... o f_1(z_0),   log q_K(z_K | x) = log q_0(z_0 | x) - sum_k log|det df_k/dz_{k-1}|

and the negative evidence lower bound, the free energy F(x) = E_q[log q_K(z_K | x) - log p(x, z_K)],
bounds -log p(x) from above.

`FlowVAE(64, lengths=[0, 0, 2, 2, 8, 8])` holds one independent model per entry of `lengths`, stacked in
the leading dimension of every weight, and trains them side by side in one vectorized step: every
model has max(lengths) planar layers, and the layers beyond its own length are switched off
(u_hat = 0 makes a planar layer the identity with log-determinant 0), so a model of length K is
exactly a K-layer flow. `tie_init` gives models of one replicate the same initial weights, so that
lengths are compared on paired starts.

Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..core import train
from ..core.stacked import StackedLinear
from ..core.validation import check_int
from .planar_radial import annealing, planar_layers, planar_u_hat


class FlowVAE(nn.Module):
    """One DLGM with an amortized planar-flow posterior per entry of `lengths` (see the module's
    docstring); `replicates` groups the entries into paired starts when `tie_init` is set.

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """

    def __init__(self, n_pixels: int, lengths, latent: int = 4, hidden: int = 64,
                 tie_init: bool = True):
        super().__init__()
        self.lengths = [check_int("length", k, 0) for k in lengths]
        if not self.lengths:
            raise ValueError("lengths is empty: give one flow length per model")
        self.latent, self.max_length = check_int("latent", latent), max(self.lengths)
        copies, d, k = len(self.lengths), self.latent, self.max_length
        self.enc1 = StackedLinear.uniform(copies, check_int("n_pixels", n_pixels), check_int("hidden", hidden))
        # read-out: mu, log sigma, then per layer w (d), u (d), b (1); small, so flows start near identity
        self.enc2 = StackedLinear.uniform(copies, hidden, 2 * d + k * (2 * d + 1), scale=0.1)
        self.dec1 = StackedLinear.uniform(copies, d, hidden)
        self.dec2 = StackedLinear.uniform(copies, hidden, n_pixels)
        mask = torch.tensor([[float(j < n) for j in range(k)] for n in self.lengths])
        self.register_buffer("mask", mask.view(copies, 1, k, 1))     # 1 for the layers a model uses
        self.flows_on = True                                         # False: every model is its K = 0 self
        self.tied = tie_init
        if tie_init:
            self._tie_init()

    def replicate_sources(self) -> list[int]:
        """For every model, the first model with the same replicate number (its i-th of its length):
        tied models start from that model's weights."""
        count: dict[int, int] = {}
        first: dict[int, int] = {}
        sources = []
        for c, k in enumerate(self.lengths):
            i = count[k] = count.get(k, -1) + 1                      # replicate number within its length
            sources.append(first.setdefault(i, c))
        return sources

    def _tie_init(self):
        """Replicate i starts from the same weights whatever its flow length."""
        with torch.no_grad():
            for c, source in enumerate(self.replicate_sources()):
                for p in self.parameters():
                    p[c].copy_(p[source])

    def posterior(self, x, samples: int = 1, index=None):
        """z_K ~ q_K(. | x) and log q_K(z_K | x) for every model (or the models `index` only): x (N, P)
        shared by the models or (C, N, P); returns (C, N, S, D) and (C, N, S) with S = samples."""
        copies = len(self.lengths) if index is None else len(index)
        d, k = self.latent, self.max_length
        x = x.expand(copies, *x.shape[-2:]) if x.ndim == 2 else x
        out = self.enc2(torch.tanh(self.enc1(x, index)), index)      # (C, N, 2d + k(2d + 1))
        mu, log_sigma = out[..., :d], out[..., d:2 * d]
        # one draw of the base noise shared by all models: common random numbers for paired comparisons
        eps = torch.randn(x.shape[1], check_int("samples", samples), d, device=x.device, dtype=x.dtype)
        z = mu.unsqueeze(-2) + log_sigma.exp().unsqueeze(-2) * eps
        log_q = (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1) - log_sigma.sum(-1, keepdim=True)
        if k and self.flows_on:
            flow = out[..., 2 * d:].reshape(copies, x.shape[1], k, 2 * d + 1)
            w, u, b = flow[..., :d], flow[..., d:2 * d], flow[..., 2 * d]
            mask = self.mask if index is None else self.mask[index]
            u_hat = planar_u_hat(w, u) * mask                        # switched-off layers: identity
            z, log_det = planar_layers(z, w, u_hat, b)
            log_q = log_q - log_det
        return z, log_q

    def log_joint(self, x, z, index=None):
        """log p(x, z) = log p(x | z) + log N(z; 0, I) for z (C, N, S, D) and x (N, P) or (C, N, P)."""
        copies, n, s, d = z.shape
        hidden = torch.tanh(self.dec1(z.reshape(copies, n * s, d), index))
        logits = self.dec2(hidden, index).reshape(copies, n, s, -1)
        x = x.expand(copies, *x.shape[-2:]) if x.ndim == 2 else x
        log_lik = -F.binary_cross_entropy_with_logits(logits, x.unsqueeze(-2).expand_as(logits),
                                                      reduction="none").sum(-1)
        return log_lik + (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)

    def free_energy(self, x, samples: int = 1, beta: float = 1.0, index=None):
        """The Monte Carlo free energy per data point, (C, N): E_q[log q_K - beta log p(x, z_K)];
        at beta = 1 it is the negative ELBO, an upper bound on -log p(x). `index`: those models only."""
        if not 0 <= beta <= 1:
            raise ValueError(f"beta == {beta!r}, must be in [0, 1]")
        z, log_q = self.posterior(x, samples, index)
        return (log_q - beta * self.log_joint(x, z, index)).mean(-1)

    @torch.no_grad()
    def bound(self, x, samples: int = 64, chunk: int = 256):
        """-ELBO of every model on every row of x, (C, N), averaged over `samples` draws of q."""
        return torch.cat([self.free_energy(x[i:i + chunk], samples) for i in range(0, len(x), chunk)], -1)


def binarize(x, threshold: float):
    """Binary pixels: 1 where x > threshold, else 0 (float tensor).

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    return (x > threshold).to(torch.get_default_dtype())


def fit(model: FlowVAE, x, *, steps: int, batch_size: int, lr: float, shared_steps: int = 0,
        warmup: int = 1, seed: int = 0):
    """Train every model of `model` side by side on binary data x (N, P): Adam with a cosine-decayed
    learning rate on the annealed free energy E_q[log q_K - beta_t log p(x, z_K)] with
    beta_t = `annealing(t, warmup)`, one sample of q per data point. For the first `shared_steps`
    steps the flows are off, so models with tied initial weights would train identically on the same
    batches and noise: a warm start shared by all lengths. Only one model per replicate trains then,
    and its weights and optimizer state are copied to its tied models when the flows switch on.
    Returns the loss curve (summed over the models that train).

    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb
    """
    check_int("steps", steps)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = zip(range(steps), train.batches(x, batch_size=batch_size, seed=seed))
    sources = model.replicate_sources() if model.tied else list(range(len(model.lengths)))
    shared = torch.tensor(sorted(set(sources)), device=model.mask.device)

    def spread():
        """Copy each source model's weights and Adam moments to the models tied to it."""
        src = torch.tensor(sources, device=model.mask.device)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p[src])
                for moment in ("exp_avg", "exp_avg_sq"):
                    if moment in opt.state[p]:
                        opt.state[p][moment].copy_(opt.state[p][moment][src])

    def loss(m, item):
        step, (batch,) = item
        if step == shared_steps and step > 0:
            spread()
        m.flows_on = step >= shared_steps
        index = shared if step < shared_steps else None
        return m.free_energy(batch, 1, annealing(step, warmup), index=index).mean(-1).sum()

    try:
        curve = train.fit(model, loss, opt, steps=steps, data=data,
                          scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps))
        if shared_steps >= steps:
            spread()
        return curve
    finally:
        model.flows_on = True
