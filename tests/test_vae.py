import math

import pytest
import torch

from repro.optimization.vae import VAE


def test_negative_elbo_is_reconstruction_plus_closed_form_kl():
    torch.manual_seed(0)
    vae = VAE(6, hidden=8, latent=3)
    x = torch.rand(5, 6)
    torch.manual_seed(1)
    loss = vae(x)
    assert loss.shape == (5,) and torch.all(loss > 0)
    # the same noise, by hand
    torch.manual_seed(1)
    mean, log_var = vae.encoder(x).chunk(2, dim=-1)
    z = mean + (0.5 * log_var).exp() * torch.randn(mean.shape)
    nll = torch.nn.functional.binary_cross_entropy_with_logits(vae.decoder(z), x, reduction="none").sum(-1)
    torch.testing.assert_close(loss, nll + vae.kl(mean, log_var))


def test_kl_against_monte_carlo():
    vae = VAE(2, hidden=2, latent=2)
    mean, log_var = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.3, -0.7]])
    std = (0.5 * log_var).exp()
    z = mean + std * torch.randn(200000, 2, generator=torch.Generator().manual_seed(0))
    log_q = (-0.5 * ((z - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert vae.kl(mean, log_var).item() == pytest.approx((log_q - log_p).mean().item(), abs=0.01)


def test_invalid_sizes():
    with pytest.raises(ValueError, match="latent"):
        VAE(4, latent=0)
