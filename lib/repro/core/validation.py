"""Checks of arguments at the boundary, in one voice: the name, the value and the rule.

`check_choice("norm", "wieght", NORMS)` raises
``ValueError: norm == 'wieght', must be one of None, 'batch', 'layer'``.
"""
from __future__ import annotations

import numpy as np


def check_choice(name: str, value, valid) -> None:
    """Raise a ValueError naming the valid values when `value` is not one of them."""
    if value not in valid:
        raise ValueError(f"{name} == {value!r}, must be one of {', '.join(map(repr, valid))}")


def check_int(name: str, value, minimum: int = 1) -> int:
    """`value` itself when it is an int (not a bool) >= `minimum`; a ValueError otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} == {value!r}, must be an int >= {minimum}")
    return int(value)


def check_positive(name: str, value) -> None:
    """Raise a ValueError unless `value` (a number or an array) is finite and > 0 everywhere."""
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} == {value!r}, must be finite and > 0")
