"""Blind, bias-free convolutional denoisers (Kadkhodaie, Guth, Simoncelli and Mallat): a network
D(y) trained to remove Gaussian noise of any level, without being told the level, whose layers have
no additive constants. Such a network is positively homogeneous, D(a y) = a D(y) for a > 0, hence
D(y) = J(y) y with J its Jacobian: it acts as a locally linear shrinkage in the eigenbasis of J.
Its residual gives the score of the noisy law by Tweedie's formula, score = (D(y) - y) / sigma^2.

- `StackedDenoisers`: K independent bias-free conv denoisers run in one pass (grouped
  convolutions), so that pairs of networks trained on disjoint sets, for several sizes N, train
  together at the cost of one. Model k sees only its own training set.
- `blind_denoising_loss`: E |D_k(x + sigma eps) - x|^2 with x drawn from model k's own set and
  sigma drawn log-uniformly in [sigma_min, sigma_max] (the network is not told sigma).
- `denoising_mse`: per-model mean squared error (per pixel) on fixed images at fixed sigmas.
- `stacked_score`: the score (D(y) - y) / sigma(t)^2 of every model at once, for the samplers.
- `cosine_similarity`, `nearest_cosine`: the paper's similarity between images, and the
  similarity of each image to its closest image in a set (memorization).
- `StackedNoiseDenoisers`: K independent noise-conditional MLP denoisers WITH biases, predicting
  the noise eps(x_t, t) for `objectives.noise_prediction_loss` under a variance-exploding process,
  preconditioned (Karras et al.'s c_skip, c_out, c_in with data scale sigma_data) so that a net
  can output one fixed image at every noise level: the nets of the memorization experiment.
- `jacobian`: the full Jacobian of one model's denoiser at one image; `sure`: Stein's unbiased
  estimate of the denoising MSE from |y - D(y)|^2 and the Jacobian's trace.

Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import check_int, check_positive
from .denoisers import TimeFeatures


class StackedDenoisers(nn.Module):
    """K bias-free conv denoisers D_k(y) = y - R_k(y), each R_k a stack of `depth` 3x3 convolutions
    (no bias) with ReLU between them, evaluated together: input and output (K, B, C, H, W).

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """

    def __init__(self, models: int, channels: int = 1, width: int = 32, depth: int = 4,
                 generator=None):
        super().__init__()
        self.models = check_int("models", models)
        self.channels = check_int("channels", channels)
        check_int("width", width)
        check_int("depth", depth, minimum=2)
        widths = [channels] + [width] * (depth - 1) + [channels]
        # one (K, out, in * 9) weight per layer, He-initialized; a 3x3 convolution with zero
        # padding is an unfold (im2col) followed by a batched matrix product over the K models
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn((models, b, a * 9), generator=generator)
                         * math.sqrt(2.0 / (a * 9)))
            for a, b in zip(widths, widths[1:]))

    def residual(self, y):
        if y.ndim != 5 or y.shape[0] != self.models or y.shape[2] != self.channels:
            raise ValueError(f"y has shape {tuple(y.shape)}, must be (models={self.models}, B, "
                             f"channels={self.channels}, H, W)")
        k, b, c, hgt, wid = y.shape
        h = y
        for i, w in enumerate(self.weights):
            cols = nn.functional.unfold(h.reshape(k * b, -1, hgt, wid), 3, padding=1)
            cols = cols.reshape(k, b, -1, hgt * wid).transpose(1, 2).reshape(k, -1, b * hgt * wid)
            h = torch.bmm(w.to(cols.dtype), cols)                        # (K, out, B * H * W)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
            h = h.reshape(k, -1, b, hgt, wid).transpose(1, 2)              # (K, B, out, H, W)
        return h

    def forward(self, y):
        return y - self.residual(y)


class StackedNoiseDenoisers(nn.Module):
    """K noise-prediction MLPs with biases, run in one batched pass. Rows of x (K * B, dim) belong
    to model k in the block k * B ... (k + 1) * B - 1 (so `noise_prediction_loss` and the samplers
    see one ordinary model). With sigma = process.sigma(t) and s = sigma_data, model k computes
    D_k = c_skip x + c_out F_k([c_in x, time features of t]), c_skip = s^2 / (sigma^2 + s^2),
    c_out = sigma s / sqrt(sigma^2 + s^2), c_in = 1 / sqrt(sigma^2 + s^2), and returns the noise
    eps_k = (x - D_k) / sigma (alpha = 1 for a variance-exploding process).

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """

    def __init__(self, models: int, dim: int, process, width: int = 64, depth: int = 3,
                 sigma_data: float = 0.1, time_features: int = 16, generator=None):
        super().__init__()
        self.models = check_int("models", models)
        self.dim = check_int("dim", dim)
        check_int("width", width)
        check_int("depth", depth)
        check_positive("sigma_data", sigma_data)
        self.sigma_data = float(sigma_data)
        self.process = process
        self.time = TimeFeatures(time_features)
        widths = [dim + 2 * (time_features // 2)] + [width] * depth + [dim]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn((models, a, b), generator=generator) / math.sqrt(a))
            for a, b in zip(widths, widths[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros((models, 1, b)))
                                       for b in widths[1:])

    def forward(self, x, t):
        n = len(x)
        if x.ndim != 2 or x.shape[1] != self.dim or n % self.models:
            raise ValueError(f"x has shape {tuple(x.shape)}, must be (models * B, dim={self.dim}) "
                             f"with models = {self.models}")
        sig = self.process.sigma(torch.as_tensor(t)).to(x).reshape(-1, 1).expand(n, 1)
        s2 = self.sigma_data ** 2
        c_in, c_skip = 1 / (sig ** 2 + s2).sqrt(), s2 / (sig ** 2 + s2)
        c_out = sig * self.sigma_data * c_in
        h = torch.cat([c_in * x, self.time(t, n).to(x)], 1).reshape(self.models, n // self.models,
                                                                    -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.to(h), h, w.to(h))
            if i < len(self.weights) - 1:
                h = nn.functional.gelu(h)
        return (x - c_skip * x - c_out * h.reshape(n, -1)) / sig


def _check_sets(train_sets, models):
    if len(train_sets) != models:
        raise ValueError(f"got {len(train_sets)} training sets, need one per model ({models})")
    for s in train_sets:
        if not torch.is_tensor(s) or s.ndim != 4 or len(s) < 1:
            raise ValueError("each training set must be a non-empty (N, C, H, W) tensor")


def blind_denoising_loss(model: StackedDenoisers, train_sets, batch_size: int, sigma_min: float,
                         sigma_max: float, generator=None):
    """Sum over models of the batch mean of |D_k(x + sigma eps) - x|^2 (summed over pixels), with
    x drawn with replacement from train_sets[k] and sigma log-uniform in [sigma_min, sigma_max]:
    the models' gradients are independent, so this trains K separate blind denoisers.

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """
    _check_sets(train_sets, model.models)
    check_int("batch_size", batch_size)
    check_positive("sigma_min", sigma_min)
    if not sigma_max > sigma_min:
        raise ValueError(f"sigma_max == {sigma_max}, must exceed sigma_min == {sigma_min}")
    ref = train_sets[0]
    x0 = torch.stack([s[torch.randint(len(s), (batch_size,), generator=generator).to(s.device)]
                      for s in train_sets])
    u = torch.rand((model.models, batch_size, 1, 1, 1), generator=generator, dtype=ref.dtype)
    sigma = (math.log(sigma_min) + u * math.log(sigma_max / sigma_min)).exp().to(ref.device)
    eps = torch.randn(x0.shape, generator=generator, dtype=ref.dtype).to(ref.device)
    err = ((model(x0 + sigma * eps) - x0) ** 2).flatten(2).sum(-1)
    return err.mean(1).sum()


@torch.no_grad()
def denoising_mse(model: StackedDenoisers, images, sigmas, generator=None):
    """(K, len(sigmas)) mean squared error per pixel of every model on the same noisy `images`
    (N, C, H, W): one fixed noise draw per image and sigma.

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """
    if not torch.is_tensor(images) or images.ndim != 4:
        raise ValueError("images must be an (N, C, H, W) tensor")
    out = []
    for s in sigmas:
        check_positive("sigma", s)
        eps = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
        y = (images + s * eps).expand(model.models, *images.shape)
        out.append(((model(y) - images) ** 2).flatten(1).mean(1))
    return torch.stack(out, 1)


def stacked_score(model: StackedDenoisers, process):
    """score(y, t) = (D_k(y_k) - y_k) / sigma(t)^2 for y (K, B, C, H, W): Tweedie's formula with
    every model's blind denoiser (the network never sees t; sigma(t) only scales the residual).

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """
    def score(y, t):
        with torch.no_grad():
            return -model.residual(y) / process.sigma(t).to(y) ** 2
    return score


def cosine_similarity(a, b):
    """Cosine of the angle between matching images of a and b (same shape, (..., C, H, W)):
    the paper's similarity between two samples.

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    a, b = a.flatten(-3), b.flatten(-3)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-30)


def nearest_cosine(images, reference):
    """For each of `images` (B, C, H, W): the largest cosine similarity to an image of `reference`
    (N, C, H, W), and that image's index.

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """
    if images.ndim != 4 or reference.ndim != 4 or images.shape[1:] != reference.shape[1:]:
        raise ValueError("images and reference must be (B, C, H, W) and (N, C, H, W) tensors "
                         "of the same image shape")
    a = images.flatten(1)
    r = reference.flatten(1)
    cos = (a / a.norm(dim=1, keepdim=True).clamp_min(1e-30)) @ \
          (r / r.norm(dim=1, keepdim=True).clamp_min(1e-30)).T
    best, idx = cos.max(1)
    return best, idx


def jacobian(model: StackedDenoisers, k: int, y):
    """The (D, D) Jacobian of model k's denoiser at the image y (C, H, W), D = C H W, and D_k(y).

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """
    check_int("k", k, minimum=0)
    if k >= model.models:
        raise ValueError(f"k == {k}, must be < models == {model.models}")
    if y.ndim != 3:
        raise ValueError(f"y has shape {tuple(y.shape)}, must be (C, H, W)")

    def one(v):
        full = torch.zeros((model.models, 1, *y.shape), dtype=v.dtype, device=v.device)
        full[k, 0] = v.reshape(y.shape)
        return model(full)[k, 0].flatten()

    flat = y.flatten()
    jac = torch.autograd.functional.jacobian(one, flat)
    return jac, one(flat).detach().reshape(y.shape)


def sure(residual_norm2, trace, sigma: float, dim: int):
    """Stein's unbiased estimate of E|D(y) - x|^2 for y = x + sigma eps:
    |y - D(y)|^2 + 2 sigma^2 tr J(y) - sigma^2 dim (per image; average over images).

    Introduced in: notebooks/generative-diffusion/generalization-in-diffusion-models-arises-from.ipynb
    """
    check_positive("sigma", sigma)
    check_int("dim", dim)
    return residual_norm2 + 2 * sigma ** 2 * trace - sigma ** 2 * dim
