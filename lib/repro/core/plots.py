"""One plotting style for the whole book, and the few figures several notebooks draw."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns


def set_style() -> None:
    """Seaborn's whitegrid style at a size that reads well in the book's column."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind",
                  rc={"figure.figsize": (6.4, 3.6), "figure.dpi": 100, "savefig.dpi": 100,
                      "axes.titlesize": "medium"})


def loss_curves(history, *, x="step", y="loss", hue="model", ax=None, logy=True, title=None):
    """Training curves of several runs from one long-form DataFrame (one row per step and run)."""
    ax = ax or plt.subplots()[1]
    sns.lineplot(data=history, x=x, y=y, hue=hue, ax=ax, errorbar=None)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    return ax
