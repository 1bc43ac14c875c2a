import math

import pytest

from repro.core.tuning import GridEdgeError, tune

GRID = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def bowl(lr):
    """A loss with its minimum at lr = 1e-2 (in log lr)."""
    return (math.log10(lr) + 2) ** 2


def test_the_best_setting_inside_the_grid_is_chosen():
    result = tune(bowl, GRID, name="lr")
    assert result.best == 1e-2 and result.score == 0.0
    assert list(result.table.lr) == GRID and not result.table.diverged.any()
    assert tune(lambda lr: -bowl(lr), GRID, maximize=True).best == 1e-2


@pytest.mark.parametrize("grid, side", [([1e-2, 3e-2, 1e-1], "smallest"), ([1e-4, 3e-4, 1e-3], "largest")])
def test_a_best_setting_at_the_edge_is_refused(grid, side):
    with pytest.raises(GridEdgeError, match=f"is the {side} of the grid"):
        tune(bowl, grid, name="lr")
    assert tune(bowl, grid, edge_ok=True).best in (grid[0], grid[-1])


def test_diverged_settings_are_recorded_and_never_chosen():
    def run(lr):
        if lr >= 3e-2:
            raise FloatingPointError("loss became nan")
        return -lr  # the larger the better, until it diverges
    with pytest.raises(GridEdgeError):  # 1e-2 is the best finite one, but the next one diverged:
        tune(run, GRID[:3])             # within GRID[:3] it is the edge
    result = tune(run, GRID)
    assert result.best == 1e-2 and list(result.table.diverged) == [False, False, False, True, True]
    assert tune(lambda lr: float("nan") if lr > 1e-2 else -lr, GRID).best == 1e-2


def test_bad_grids():
    with pytest.raises(ValueError, match="every lr in"):
        tune(lambda lr: float("inf"), GRID, name="lr")
    with pytest.raises(ValueError, match="at least 3 values"):
        tune(bowl, [1e-3, 1e-2])
