"""Idempotent generative networks (Shocher et al., 2023): one network f trained so that data are
its fixed points and noise lands on them, f(f(z)) = f(z).

With a distance D (the mean absolute difference here), data x and source samples z, the three
terms are

    L_rec   = D(f(x), x)                    data map to themselves;
    L_idem  = D(f'(f(z)), f(z))             gradient through the inner f only (f' a frozen copy):
                                            moves f(z) onto the current set of fixed points;
    L_tight = -D(f(sg[f(z)]), sg[f(z)])     gradient through the outer f only (sg: no gradient):
                                            makes f move points that are not data, so the set of
                                            fixed points stays tight around the data;

and L = lambda_r L_rec + lambda_i L_idem + lambda_t L_tight. The unbounded tightness term is
smoothly clamped, L_tight <- a L_rec tanh(L_tight / (a L_rec)), so that it can never outweigh the
reconstruction term by more than the factor a; here L_rec enters the clamp as a scale without a
gradient (our reading).

Introduced in: notebooks/generative-diffusion/idempotent-generative-network.ipynb
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..core.validation import check_positive


def l1_distance(a, b):
    """D(a, b): the mean absolute difference over the batch and the coordinates."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return (a - b).abs().mean()


def smooth_clamp(tight, scale, a: float = 1.5):
    """a * scale * tanh(tight / (a * scale)): ~tight when small, bounded by a * scale in size.
    `scale` (the reconstruction loss) enters without a gradient."""
    check_positive("a", a)
    scale = torch.as_tensor(scale).detach().clamp_min(1e-12)
    return a * scale * torch.tanh(tight / (a * scale))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters take no gradient (f' of the idempotence term)."""
    twin = copy.deepcopy(model)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def ign_terms(model: nn.Module, frozen: nn.Module, x, z, a: float | None = 1.5,
              distance: Callable = l1_distance) -> dict:
    """The three terms {'rec', 'idem', 'tight'} (unweighted; 'tight' clamped unless a is None).
    `frozen` must hold the current weights of `model` (see `IGNLoss`)."""
    if x.shape[1:] != z.shape[1:]:
        raise ValueError(f"x and z must have the same shape per sample, got {tuple(x.shape)} and "
                         f"{tuple(z.shape)}")
    fx = model(x)
    fz = model(z)
    fz_stop = fz.detach()
    rec = distance(fx, x)
    idem = distance(frozen(fz), fz)                    # gradient through the inner f only
    tight = -distance(model(fz_stop), fz_stop)         # gradient through the outer f only
    if a is not None:
        tight = smooth_clamp(tight, rec, a)
    return {"rec": rec, "idem": idem, "tight": tight}


class IGNLoss:
    """loss_fn(model, batch) for `repro.core.train.fit`: batch = (x,), noise z drawn by
    `source(n)`; lambda_r L_rec + lambda_i L_idem + lambda_t L_tight, the frozen copy refreshed
    from the model at every call. `last` holds the latest terms as floats."""

    def __init__(self, model: nn.Module, source: Callable, lambda_rec: float = 20.0,
                 lambda_idem: float = 20.0, lambda_tight: float = 2.5, a: float | None = 1.5,
                 distance: Callable = l1_distance):
        for name, value in (("lambda_rec", lambda_rec), ("lambda_idem", lambda_idem),
                            ("lambda_tight", lambda_tight)):
            check_positive(name, value)
        self.frozen = frozen_copy(model)
        self.source, self.a, self.distance = source, a, distance
        self.weights = {"rec": lambda_rec, "idem": lambda_idem, "tight": lambda_tight}
        self.last: dict = {}

    def __call__(self, model, batch):
        x = batch[0]
        self.frozen.load_state_dict(model.state_dict())
        terms = ign_terms(model, self.frozen, x, self.source(len(x)).to(x), self.a, self.distance)
        self.last = {k: float(v.detach()) for k, v in terms.items()}
        return sum(self.weights[k] * v for k, v in terms.items())


def reconstruction_loss(model, batch, distance: Callable = l1_distance):
    """The reconstruction term alone (the baseline: f(x) = x on the data, nothing on noise)."""
    x = batch[0]
    return distance(model(x), x)


@torch.no_grad()
def apply_repeatedly(model: nn.Module, z, times: int) -> list:
    """[z, f(z), f(f(z)), ...]: `times` applications of f, the input first."""
    if times < 1:
        raise ValueError(f"times == {times}, must be >= 1")
    out = [z]
    for _ in range(times):
        out.append(model(out[-1]))
    return out
