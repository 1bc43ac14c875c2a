"""Fair tuning: every method and every baseline picks its setting (a learning rate, say) from a grid
by the same rule and on the same budget, and a best setting at the grid's edge is refused, because
the grid did not bracket it and a baseline tuned that way may simply be tuned badly.

    result = tuning.tune(lambda lr: final_loss(method, lr), [1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    result.best, result.table

A setting whose run diverges (raises FloatingPointError, or scores a non-finite number) is recorded
as diverged and can never be the best; it does not stop the others. A diverged neighbour bounds the
grid as well as a finite one does, so a best setting next to diverged ones is not at the edge.

Introduced in: notebooks/normalization/weight-normalization.ipynb
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd


class GridEdgeError(ValueError):
    """The best setting is the first or the last of the grid: the grid does not bracket the optimum."""


@dataclass
class Tuned:
    """The outcome of `tune`: the best setting, its score, and every setting's score."""

    best: object
    score: float
    table: pd.DataFrame  # one row per setting: value, score, diverged


def tune(run: Callable[[object], float], grid, *, name: str = "setting", maximize: bool = False,
         edge_ok: bool = False) -> Tuned:
    """Score every value of `grid` with `run(value)` (lower is better unless `maximize`) and pick
    the best. Raises GridEdgeError when the best is the first or last value (unless `edge_ok`, for a
    grid that is the whole range, like the two values of a switch), and ValueError when every run
    diverged."""
    grid = list(grid)
    if len(grid) < 3 and not edge_ok:
        raise ValueError(f"a grid of {name} needs at least 3 values to bracket an optimum, got {grid}")
    rows = []
    for value in grid:
        try:
            score = float(run(value))
        except FloatingPointError:
            score = math.nan
        rows.append({name: value, "score": score, "diverged": not math.isfinite(score)})
    table = pd.DataFrame(rows)
    finite = table[~table.diverged]
    if finite.empty:
        raise ValueError(f"every {name} in {grid} diverged")
    best = finite.score.idxmax() if maximize else finite.score.idxmin()
    if not edge_ok and best in (0, len(grid) - 1):
        side = "smallest" if best == 0 else "largest"
        raise GridEdgeError(f"the best {name}, {grid[best]!r}, is the {side} of the grid {grid}: "
                            "extend the grid beyond it")
    return Tuned(best=grid[best], score=float(table.score[best]), table=table)
