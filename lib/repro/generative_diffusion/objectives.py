"""Training objectives for diffusion models: denoising score matching in its noise-prediction
form, and the conversions between the three ways to read a trained network.

With x_t = alpha x_0 + sigma eps, the minimiser of E|eps_theta(x_t, t) - eps|^2 is
E[eps | x_t] = -sigma grad log p_t(x_t), so score = -eps / sigma and
E[x_0 | x_t] = (x_t - sigma eps) / alpha (Tweedie)."""
from __future__ import annotations

import torch

from .processes import Process, _per_row


def sample_times(n: int, t_min: float, t_max: float, generator=None, dtype=None):
    """n times uniform on [t_min, t_max]."""
    if not 0 <= t_min < t_max:
        raise ValueError(f"need 0 <= t_min < t_max, got t_min={t_min}, t_max={t_max}")
    u = torch.rand(n, generator=generator, dtype=dtype)
    return t_min + (t_max - t_min) * u


def noise_prediction_loss(model, x0, process: Process, t_min: float = 1e-3, t_max: float | None = None,
                          generator=None):
    """Mean over the batch of |eps_theta(x_t, t) - eps|^2 (summed over coordinates), with one
    uniform time per sample: denoising score matching weighted by sigma(t)^2."""
    t = sample_times(len(x0), t_min, process.t_max if t_max is None else t_max, generator,
                     x0.dtype).to(x0.device)
    xt, eps = process.perturb(x0, t, generator=generator)
    return ((model(xt, t) - eps) ** 2).flatten(1).sum(1).mean()


def score_from_noise(eps, process: Process, t):
    """grad log p_t = -eps / sigma(t)."""
    return -eps / _per_row(torch.as_tensor(process.sigma(t)).to(eps), eps)


def denoised_from_noise(xt, eps, process: Process, t):
    """E[x_0 | x_t] = (x_t - sigma eps) / alpha."""
    a = _per_row(torch.as_tensor(process.alpha(t)).to(xt), xt)
    s = _per_row(torch.as_tensor(process.sigma(t)).to(xt), xt)
    return (xt - s * eps) / a


def score_model(model, process: Process):
    """The score function (x, t) -> -eps_theta(x, t) / sigma(t) of a noise-prediction network."""
    def score(x, t):
        return score_from_noise(model(x, t), process, t)
    return score
