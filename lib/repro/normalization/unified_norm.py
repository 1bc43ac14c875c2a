"""Unified Normalization (UN; Yang et al., ACM MM 2022, arXiv 2208.01313): an offline normalization
for transformers that replaces LayerNorm and folds into the next linear layer at inference.

For an input of shape (..., C) every feature c is divided by a quadratic-mean statistic computed
over all the other axes (batch and tokens), without centering, then scaled and shifted:

    y = gamma * x / sqrt(s + eps) + beta.

In training, with q_t = mean(x^2) of the current batch (per feature) at iteration t and a window of
the last W values q_{t-W+1..t}:

* fluctuation smoothing, forward: s_t is the geometric mean of the window (q_t itself during the
  first W iterations and before `warmup`), and the running statistic used at inference is the
  exponential average r <- m r + (1 - m) s_t;
* fluctuation smoothing, backward: the exact gradient of x / sqrt(s) with s the batch statistic is
  (g - mean(g z) z) / sqrt(s) with g the gradient reaching z = x / sqrt(s); UN replaces mean(g z)
  by an exponential average (decay m) of its arithmetic mean over a window of the last W_b
  iterations;
* adaptive outlier filtration (after `warmup`): when, for some feature, the window's arithmetic
  mean exceeds its geometric mean by more than W times the variance of sqrt(q) over the previous
  window (all features and entries together), the iteration is treated as an outlier: it is
  normalized with its own batch statistic and exact gradient, and its window entries are replaced
  by the running statistics, so that it never enters the smoothed statistics;
* gradient compensation: after max(1000, warmup) iterations the backward pass is scaled by
  r_t = sqrt(s_t + eps) / sqrt(running + eps), clipped to [1/5, 5].

The paper's text was not readable here: the algorithm, its defaults and its details follow the
authors' code (github.com/hikvision-research/Unified-Normalization, `UN1d`), written anew.
With W = 1 (no smoothing) and no filtration the layer is batch normalization without centering:
forward and exact gradients of y = gamma x / sqrt(mean(x^2) + eps) + beta.
Introduced in: notebooks/normalization/unified-normalization-for-accelerating-and-stabilizing.ipynb
"""
from __future__ import annotations

import torch
from torch import nn

from repro.core.validation import check_int

__all__ = ["UnifiedNorm", "unified_norm", "TokenBatchNorm", "token_batch_norm", "fold_into_linear",
           "fold_transformer"]


class _UNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2d, weight, bias, layer):
        # x2d: (N, C), the input with every axis but the features flattened
        it = int(layer.iters.item())
        win_f = layer.window_forward
        q = (x2d * x2d).mean(0)                                   # batch quadratic mean, (C,)
        skip = win_f <= 1
        buf = layer.buffer_q
        recorded = torch.var(torch.sqrt(buf)) if win_f > 1 else buf.new_zeros(())
        buf[it % win_f] = q
        if layer.outlier_filtration and it >= layer.warmup and win_f > 1:
            gap = buf.mean(0) - torch.exp(torch.log(buf).mean(0))   # AM - GM >= 0, per feature
            if bool((gap > recorded * win_f).any()):
                buf[it % win_f] = layer.running_var
                skip = True
                layer.outliers += 1
        if it <= win_f or it < layer.warmup or skip:
            s = q
        else:
            s = torch.exp(torch.log(buf).mean(0))                  # geometric mean of the window
        scale = torch.ones_like(s)
        if not skip and it > max(layer.compensate_after, layer.warmup):
            scale = ((s + layer.eps).sqrt() / (layer.running_var + layer.eps).sqrt()).clamp(0.2, 5.0)
        z = x2d / (s + layer.eps).sqrt()
        layer.running_var.mul_(layer.momentum).add_((1 - layer.momentum) * s)
        layer.last_batch, layer.last_stat, layer.last_skip = q.detach().clone(), s.detach().clone(), skip
        ctx.layer, ctx.skip, ctx.it = layer, skip, it
        ctx.save_for_backward(z, s, weight, scale)
        return z * weight + bias

    @staticmethod
    def backward(ctx, grad_out):
        layer, skip, it = ctx.layer, ctx.skip, ctx.it
        z, s, weight, scale = ctx.saved_tensors
        win_b = layer.window_backward
        g = grad_out * weight * scale
        gz = (g * z).mean(0)
        layer.buffer_gz[it % win_b] = layer.ema_gz if skip else gz
        if it <= win_b or it < layer.warmup or skip:
            mean_gz = gz
        else:
            mean_gz = layer.buffer_gz.mean(0)
        layer.ema_gz.mul_(layer.momentum).add_((1 - layer.momentum) * mean_gz)
        proj = mean_gz if skip else layer.ema_gz
        grad_x = (g - proj * z) / (s + layer.eps).sqrt()
        return grad_x, (grad_out * z * scale).sum(0), grad_out.sum(0), None


class UnifiedNorm(nn.Module):
    """Unified Normalization over every axis but the last (features): input (..., C).
    `window` is W (an int, or (W_forward, W_backward)); `warmup` the iterations before smoothing
    and filtration start (the authors' 4000); `outlier_filtration` switches the adaptive filter on
    (the authors: on for vision, off for translation); `momentum` the decay of the running
    statistic and of the backward average; `compensate_after` the iteration after which the
    gradient compensation starts (the authors' 1000). In eval mode the layer is the affine map
    gamma x / sqrt(running + eps) + beta, per feature."""

    def __init__(self, num_features: int, window: int | tuple = 4, warmup: int = 4000,
                 outlier_filtration: bool = False, eps: float = 1e-5, momentum: float = 0.9,
                 compensate_after: int = 1000):
        super().__init__()
        check_int("num_features", num_features)
        win_f, win_b = (window, window) if isinstance(window, int) else tuple(window)
        check_int("window", win_f)
        check_int("window", win_b)
        if warmup < 0 or compensate_after < 0:
            raise ValueError(f"warmup == {warmup}, compensate_after == {compensate_after}, must be >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum == {momentum}, must be in [0, 1)")
        if not eps >= 0.0:
            raise ValueError(f"eps == {eps}, must be >= 0")
        self.num_features, self.window_forward, self.window_backward = num_features, win_f, win_b
        self.warmup, self.outlier_filtration = int(warmup), bool(outlier_filtration)
        self.eps, self.momentum, self.compensate_after = float(eps), float(momentum), int(compensate_after)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("ema_gz", torch.zeros(num_features))
        self.register_buffer("buffer_q", torch.zeros(win_f, num_features))
        self.register_buffer("buffer_gz", torch.zeros(win_b, num_features))
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.register_buffer("outliers", torch.zeros((), dtype=torch.long))
        # the last training iteration's batch statistic q_t, the statistic used s_t, and whether
        # the filter treated the iteration as an outlier (for diagnostics; not state)
        self.last_batch = self.last_stat = None
        self.last_skip = False

    def extra_repr(self):
        return (f"{self.num_features}, window=({self.window_forward}, {self.window_backward}), "
                f"warmup={self.warmup}, outlier_filtration={self.outlier_filtration}, "
                f"momentum={self.momentum}")

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of the inference map y = a * x + b, per feature."""
        a = self.weight / (self.running_var + self.eps).sqrt()
        return a, self.bias

    def forward(self, x):
        if x.shape[-1] != self.num_features:
            raise ValueError(f"input has {x.shape[-1]} features, the layer {self.num_features}")
        if not self.training:
            a, b = self.affine()
            return x * a + b
        self.iters += 1
        flat = x.reshape(-1, self.num_features)
        return _UNFunction.apply(flat, self.weight, self.bias, self).reshape(x.shape)


def unified_norm(**kwargs):
    """A factory width -> UnifiedNorm(width, **kwargs), for the models' `norm=`.
    Introduced in: notebooks/normalization/unified-normalization-for-accelerating-and-stabilizing.ipynb"""
    return lambda width: UnifiedNorm(width, **kwargs)


class TokenBatchNorm(nn.BatchNorm1d):
    """torch's BatchNorm1d over every axis but the last: input (..., C), statistics over batch and
    tokens (the batch-normalization baseline of a transformer).
    Introduced in: notebooks/normalization/unified-normalization-for-accelerating-and-stabilizing.ipynb"""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def token_batch_norm(**kwargs):
    """A factory width -> TokenBatchNorm(width, **kwargs)."""
    return lambda width: TokenBatchNorm(width, **kwargs)


def fold_into_linear(norm: nn.Module, linear: nn.Linear) -> nn.Linear:
    """The linear layer equal to linear(norm(x)) for a normalization in eval mode whose map is
    x -> a * x + b per feature (UnifiedNorm, TokenBatchNorm): W' = W diag(a), b' = W b + bias."""
    if isinstance(norm, UnifiedNorm):
        a, b = norm.affine()
    elif isinstance(norm, nn.BatchNorm1d):
        a = norm.weight / (norm.running_var + norm.eps).sqrt()
        b = norm.bias - norm.running_mean * a
    else:
        raise TypeError(f"cannot fold {type(norm).__name__}: not an offline per-feature affine map")
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True).to(linear.weight)
    with torch.no_grad():
        fused.weight.copy_(linear.weight * a)
        fused.bias.copy_(linear.weight @ b + (linear.bias if linear.bias is not None else 0.0))
    return fused


def fold_transformer(model: nn.Module) -> nn.Module:
    """Fold every normalization of a repro.core.transformer.TinyTransformer into the linear layer
    that reads it (attention's qkv, the MLP's first layer, the read-out), in place; the norms
    become nn.Identity. Call it on a model in eval mode; returns the model."""
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv = fold_into_linear(block.norm1, block.attn.qkv)
            block.mlp[0] = fold_into_linear(block.norm2, block.mlp[0])
            block.norm1, block.norm2 = nn.Identity(), nn.Identity()
        model.head = fold_into_linear(model.final_norm, model.head)
        model.final_norm = nn.Identity()
    return model
