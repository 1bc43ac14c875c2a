import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repro.core import plots  # noqa: E402


def test_style_and_loss_curves():
    plots.set_style()
    assert plt.rcParams["figure.figsize"] == [6.4, 3.6]
    history = pd.DataFrame({"step": [1, 2, 1, 2], "loss": [1.0, 0.5, 2.0, 1.0], "model": list("aabb")})
    ax = plots.loss_curves(history, title="t")
    assert ax.get_yscale() == "log" and ax.get_title() == "t" and len(ax.get_lines()) >= 2
    plt.close("all")


def test_loss_curves_needs_its_columns():
    with pytest.raises(ValueError):
        plots.loss_curves(pd.DataFrame({"step": [1], "loss": [1.0]}), hue="model")
