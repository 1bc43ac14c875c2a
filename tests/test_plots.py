import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repro.core import plots  # noqa: E402


def test_loss_curves_draws_one_curve_per_run_on_a_log_axis():
    plots.set_style()
    history = pd.DataFrame({"step": [1, 2, 1, 2], "loss": [1.0, 0.5, 2.0, 1.0], "model": list("aabb")})
    ax = plots.loss_curves(history, title="t")
    # each run's own losses, not their average over runs
    curves = sorted(line.get_ydata().tolist() for line in ax.get_lines() if len(line.get_ydata()))
    assert curves == [[1.0, 0.5], [2.0, 1.0]]
    assert ax.get_yscale() == "log" and ax.get_title() == "t"
    plt.close("all")


def test_loss_curves_needs_its_columns():
    with pytest.raises(ValueError):
        plots.loss_curves(pd.DataFrame({"step": [1], "loss": [1.0]}), hue="model")
