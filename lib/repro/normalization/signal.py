"""Signal propagation measured in a real network: how activations and gradients travel through the
layers, and how far the network's input-output map is from an isometry.

- `activation_statistics`: the mean and variance of every activation layer's outputs, pooled over
  samples and units (the mean-field quantities of `self_normalizing`), layer by layer.
- `gradient_statistics`: the norm of the loss's gradient with respect to each layer's output and
  to its weight, layer by layer: gradient explosion or vanishing shows as a trend with depth.
- `jacobian_singular_values` and `condition_number`: the spectrum of each example's input-output
  Jacobian; dynamical isometry is all singular values near one (condition number near one).
- `isometry`: the geometric over the arithmetic mean of the eigenvalues of a batch's Gram matrix
  (Joudaki et al., 2023), one exactly when the batch's representations are orthogonal and of equal
  norm, near zero when they collapse onto a few directions.

Introduced in: notebooks/normalization/towards-training-without-depth-limits.ipynb
(`activation_statistics`: self-normalizing-neural-networks.ipynb)
"""
from __future__ import annotations

import copy
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.func import jacrev, vmap

from ..core.models import AFFINE, layer_outputs

ACTIVATIONS = (nn.SELU, nn.ReLU, nn.Tanh, nn.ELU, nn.GELU)


@torch.no_grad()
def activation_statistics(model: nn.Module, x: torch.Tensor, layer_types=ACTIVATIONS,
                          training: bool = False) -> pd.DataFrame:
    """Mean and variance of the outputs of every module of `layer_types` in `model` on inputs x,
    pooled over samples and units (the ensemble over weights of the mean-field picture), and the
    average over units of the per-unit variance across samples.

    `training=True` runs a copy of the model in training mode (batch statistics in batch norm,
    dropout on), so that the model's own buffers stay as they were. Returns one row per such
    module, in the order they run: layer (1-based), mean, var, unit_var.
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    if training:
        model = copy.deepcopy(model)
    was_training = model.training
    model.train(training)
    try:
        outs = layer_outputs(model, x, layer_types)
    finally:
        model.train(was_training)
    rows = []
    for layer, out in enumerate(outs, start=1):
        a = out.double().flatten(1)
        rows.append({"layer": layer, "mean": a.mean().item(), "var": a.var(unbiased=False).item(),
                     "unit_var": a.var(0, unbiased=False).mean().item()})
    return pd.DataFrame(rows)


def gradient_statistics(model: nn.Module, loss_fn: Callable, batch, layer_types=AFFINE) -> pd.DataFrame:
    """The gradient of loss_fn(model, batch) with respect to the output of every module of
    `layer_types` (by default the affine layers: the pre-activations) and to its weight, in the
    order the modules run: layer (1-based), module (its class), grad_norm (Frobenius norm over the
    batch of d loss / d output), weight_grad_norm (NaN for a module without a weight). The model's
    mode and its parameters' .grad are left as they are (torch.autograd.grad)."""
    calls = []
    hooks = [m.register_forward_hook(lambda module, inputs, out: calls.append((module, out)))
             for m in model.modules() if isinstance(m, layer_types)]
    if not hooks:
        raise ValueError(f"{type(model).__name__} has no module of types "
                         f"{', '.join(t.__name__ for t in layer_types)}")
    try:
        loss = loss_fn(model, batch)
    finally:
        for h in hooks:
            h.remove()
    weights = [getattr(m, "weight", None) for m, _ in calls]
    with_weight = [w for w in weights if isinstance(w, torch.Tensor) and w.requires_grad]
    grads = torch.autograd.grad(loss, [out for _, out in calls] + with_weight, allow_unused=True)
    output_grads, weight_grads = grads[:len(calls)], iter(grads[len(calls):])
    rows = []
    for layer, ((module, _), g, w) in enumerate(zip(calls, output_grads, weights), start=1):
        has_weight = isinstance(w, torch.Tensor) and w.requires_grad
        gw = next(weight_grads) if has_weight else None
        rows.append({"layer": layer, "module": type(module).__name__,
                     "grad_norm": float("nan") if g is None else g.norm().item(),
                     "weight_grad_norm": float("nan") if gw is None else gw.norm().item()})
    return pd.DataFrame(rows)


def jacobian_singular_values(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The singular values of each example's input-output Jacobian d model(x_i) / d x_i, in
    descending order: a tensor (n_examples, min(d_in, d_out)). Each example passes through the
    model alone, in the model's current mode: a model with batch statistics in training mode would
    normalize a batch of one, so put it in eval mode first (or measure the batch as a whole)."""
    def single(xi):
        return model(xi.unsqueeze(0)).squeeze(0)

    jacobians = vmap(jacrev(single))(x)                    # (n, d_out, d_in...)
    return torch.linalg.svdvals(jacobians.flatten(2))


def condition_number(singular_values: torch.Tensor) -> torch.Tensor:
    """Largest over smallest singular value along the last dimension (inf where the smallest is 0)."""
    return singular_values.max(-1).values / singular_values.min(-1).values


def isometry(h: torch.Tensor) -> float:
    """The isometry of a batch of representations h (n, ...): det(G)^(1/n) / (tr(G) / n) for the Gram
    matrix G = h h^T of the flattened rows, the geometric over the arithmetic mean of G's
    eigenvalues. In [0, 1]: 1 exactly when the n rows are orthogonal with equal norms, 0 when they
    are linearly dependent (fewer than n dimensions, or a collapsed batch). Computed in float64."""
    h = h.detach().double().flatten(1)
    if h.shape[0] < 2:
        raise ValueError(f"need a batch of at least 2 representations, got {h.shape[0]}")
    eigenvalues = torch.linalg.eigvalsh(h @ h.T).clamp(min=0.0)
    arithmetic = eigenvalues.mean()
    if arithmetic == 0:
        return 0.0
    geometric = torch.exp(torch.log(eigenvalues).mean())   # log 0 = -inf gives 0
    return float(geometric / arithmetic)
