"""What the optimizers of this theme share: checks of their settings (with
`repro.core.validation.check_positive`), each raising a ValueError that names the setting, its
value and what is valid; and the evaluation of the closure that `step(closure)` may be given."""
from __future__ import annotations

import math

import torch


def check_nonnegative(name: str, value) -> None:
    """A finite number >= 0 (eps, weight decay, damping).
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} == {value!r}, must be a finite number >= 0")


def check_fraction(name: str, value) -> None:
    """A number in [0, 1) (a momentum or an averaging coefficient).
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} == {value!r}, must be a number in [0, 1)")


def check_betas(betas, count: int = 2) -> tuple:
    """`count` numbers in [0, 1), returned as a tuple.
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    betas = tuple(betas)
    if len(betas) != count or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                      and 0 <= b < 1 for b in betas):
        raise ValueError(f"betas == {betas!r}, must be {count} number(s) in [0, 1)")
    return betas


def closure_loss(closure):
    """The loss `closure()` returns, evaluated with gradients on (step() itself runs under
    no_grad), or None without a closure.
    Introduced in: notebooks/optimization/cautious-optimizers.ipynb"""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
