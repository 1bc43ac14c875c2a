"""A variational auto-encoder (Kingma & Welling, 2014) as the Adam paper trains one for its
bias-correction experiment (Sec. 6.4): one hidden layer of softplus units in the encoder and in the
decoder, a spherical Gaussian latent variable, and a Bernoulli likelihood of the inputs (intensities
in [0, 1]). `VAE(x)` is the negative evidence lower bound of each input, estimated with one sample
of the latent variable (the reparameterization trick), in nats.

Introduced in: notebooks/optimization/adam.ipynb
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.validation import check_int


class VAE(nn.Module):
    """-ELBO(x) = E_q[-log p(x | z)] + KL(q(z | x) || N(0, I)), one sample of z per input.
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, d_in: int, hidden: int = 500, latent: int = 50):
        super().__init__()
        for name, value in [("d_in", d_in), ("hidden", hidden), ("latent", latent)]:
            check_int(name, value)
        self.encoder = nn.Sequential(nn.Linear(d_in, hidden), nn.Softplus(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Softplus(), nn.Linear(hidden, d_in))

    def kl(self, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, exp(log_var)) || N(0, I)) per input, in closed form."""
        return 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).sum(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        z = mean + (0.5 * log_var).exp() * torch.randn(mean.shape, device=mean.device)
        logits = self.decoder(z)
        nll = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return nll + self.kl(mean, log_var)
