"""Adaptive batch sizes for adaptive gradient methods (AdAdaGrad, Lau, Liu and Kolar 2024).

A batch-size test asks, after each step, whether the minibatch gradient was accurate enough, and
grows the next batch when it was not. From the per-example gradients G_i (i in the batch B,
|B| = b) and their mean g, each test returns the batch size it asks for (the next batch is
max(b, ceil(demand)), capped at the training set's size):

- norm test (Byrd et al. 2012): sum of the coordinate-wise sample variances of G_i, divided by
  eta^2 ||g||^2 (the estimated variance of g must be at most eta^2 ||g||^2);
- inner-product test (Bollapragada et al. 2018): the sample variance of <G_i, g>, divided by
  theta^2 ||g||^4;
- orthogonality test: the summed sample variance of the part of G_i orthogonal to g, divided by
  nu^2 ||g||^2; the augmented inner-product test asks for the larger of the last two.

The sample variances use the 1/(b - 1) correction, as the authors' code does. Per-example gradients
come from torch.func (vmap of grad of a functional_call), so a model with batch statistics does
not fit here.

`AdaGradNorm` is AdaGrad with one scalar step size (Ward, Wu and Bottou 2019):
    v_k = v_{k-1} + ||g_k||^2,   x_{k+1} = x_k - lr * g_k / (sqrt(v_k) + eps),
the norm taken over all parameters. Coordinate-wise AdaGrad is torch.optim.Adagrad.

`train` runs one optimizer with a constant batch or with a batch grown by a test, until a budget
of samples (gradient evaluations) is spent, recording the step, the samples processed, the batch
size, the training loss, and at evaluation points the held-out loss and accuracy and the squared
norm of the full training gradient. `compare` tunes each scheme's learning rate with
`repro.core.tuning.tune` on grids of one length (the same budget), by the final held-out loss on
the first seed, and runs the chosen rate on every seed, as `benchmark.compare` does for constant
batches. The data are the benchmark's digits (`benchmark.task(name)` gives the model, the loss and
the held-out evaluation; the training set is the same 1347 images).

Introduced in: notebooks/optimization/adadagrad.ipynb
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from ..core.data import sklearn_dataset
from ..core.tuning import GridEdgeError, tune
from ..core.validation import check_int, check_positive
from . import benchmark
from .common import closure_loss


class AdaGradNorm(torch.optim.Optimizer):
    """AdaGrad-Norm: one scalar accumulator v of the squared gradient norms over all parameters,
    and the step x <- x - lr * g / (sqrt(v) + eps), v starting at `initial_accumulator_value`.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""

    def __init__(self, params, lr: float = 1e-2, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10):
        check_positive("lr", lr)
        if initial_accumulator_value < 0 or eps < 0:
            raise ValueError("initial_accumulator_value and eps must be >= 0")
        super().__init__(params, dict(lr=lr, eps=eps))
        self.accumulator = torch.tensor(float(initial_accumulator_value))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return loss
        self.accumulator = self.accumulator.to(grads[0]) + sum((q * q).sum() for q in grads)
        root = self.accumulator.sqrt()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad / (root + group["eps"]), alpha=-group["lr"])
        return loss


def per_example_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          loss: Callable = F.cross_entropy) -> torch.Tensor:
    """The gradient of loss(model(x_i), y_i) for every example i, flattened: a (b, d) tensor whose
    columns follow model.parameters(). Introduced in: notebooks/optimization/adadagrad.ipynb"""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one(p, xi, yi):
        return loss(functional_call(model, (p, buffers), (xi[None],)), yi[None])

    per = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([per[k].reshape(len(x), -1) for k in params], dim=1)


def _moments(grads: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    """b, ||g||^2, the per-example squared norms ||G_i||^2 and the inner products <G_i, g> (float64
    scalars from float32 products: one pass over the (b, d) matrix)."""
    if grads.ndim != 2 or len(grads) < 2:
        raise ValueError(f"need per-example gradients of shape (b >= 2, d), got {tuple(grads.shape)}")
    g = grads.mean(0)
    return (len(grads), g.double().square().sum(), grads.square().sum(1).double(),
            (grads @ g).double())


def norm_test(grads: torch.Tensor, eta: float) -> float:
    """The batch size the norm test asks for: sum_j Var_i(G_ij) / (eta^2 ||g||^2), with
    sum_j Var_i(G_ij) = (sum_i ||G_i||^2 - b ||g||^2) / (b - 1).
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    b, norm2, squares, _ = _moments(grads)
    return float((squares.sum() - b * norm2) / (b - 1) / (eta ** 2 * norm2))


def inner_product_test(grads: torch.Tensor, theta: float) -> float:
    """The batch size the inner-product test asks for: Var_i(<G_i, g>) / (theta^2 ||g||^4).
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    _, norm2, _, inner = _moments(grads)
    return float(inner.var(correction=1) / (theta ** 2 * norm2 ** 2))


def orthogonality_test(grads: torch.Tensor, nu: float) -> float:
    """The batch size the orthogonality test asks for: sum_j Var_i of the part of G_i orthogonal
    to g, over nu^2 ||g||^2 (those parts average to zero, so the summed variance is
    sum_i (||G_i||^2 - <G_i, g>^2 / ||g||^2) / (b - 1)).
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    b, norm2, squares, inner = _moments(grads)
    return float((squares - inner.square() / norm2).sum() / (b - 1) / (nu ** 2 * norm2))


def augmented_inner_product_test(grads: torch.Tensor, theta: float, nu: float) -> float:
    """The larger of the inner-product and the orthogonality tests' batch sizes.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    return max(inner_product_test(grads, theta), orthogonality_test(grads, nu))


def next_batch_size(current: int, demand: float, largest: int) -> int:
    """max(current, ceil(demand)), capped at `largest` (a non-finite demand asks for `largest`).
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    if not math.isfinite(demand):
        return largest
    return int(min(largest, max(current, math.ceil(demand - 1e-9))))


def digits_training_set() -> tuple[torch.Tensor, torch.Tensor]:
    """The benchmark's digits training images (flattened, standardized) and labels.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    split = sklearn_dataset("digits")
    return split.x_train.reshape(-1, 64), split.y_train


def _full_gradient_norm2(model, x, y) -> float:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    total = sum(float(p.grad.square().sum()) for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    return total


def _eval_steps(last: int) -> set:
    steps, s = set(), 1.0
    while s <= last:
        steps.add(int(s))
        s *= 1.15
    return steps


def train(task: benchmark.Task, x: torch.Tensor, y: torch.Tensor, make_optimizer: Callable, lr: float,
          *, seed: int, samples: int, batch_size: int, test: Callable | None = None,
          max_batch_size: int | None = None, evals: int = 20,
          diverge_factor: float = 10.0) -> tuple[pd.DataFrame, bool]:
    """One run of make_optimizer(params, lr) on `task`'s model, on batches drawn uniformly without
    replacement from (x, y), until `samples` examples have been processed. With `test`, a function
    of the per-example gradients that returns the batch size it asks for, the batch grows by
    `next_batch_size` after every step (capped at `max_batch_size`, default len(x)); without it
    the batch stays `batch_size`. The held-out loss and accuracy and the squared norm of the full
    training gradient are recorded at about `evals` points evenly spread in samples and at
    geometrically spaced steps. Returns the curve and whether the run diverged.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    n = len(x)
    largest = n if max_batch_size is None else check_int("max_batch_size", max_batch_size)
    check_int("samples", samples)
    if not 2 <= batch_size <= largest <= n:
        raise ValueError(f"need 2 <= batch_size ({batch_size}) <= max_batch_size ({largest}) <= {n}")
    torch.manual_seed(seed)
    model = task.make_model()
    optimizer = make_optimizer(model.parameters(), lr)
    gen = torch.Generator().manual_seed(seed)
    geometric = _eval_steps(samples // batch_size + 1)
    every = samples / evals
    rows, seen, step, b, first, diverged = [], 0, 0, batch_size, None, False
    while seen < samples:
        step += 1
        b_used = b  # the last batch is whole: a run may pass `samples` by less than a batch
        idx = torch.randperm(n, generator=gen)[:b_used]
        xb, yb = x[idx], y[idx]
        optimizer.zero_grad(set_to_none=True)
        if test is None or b_used >= largest:  # a full-size batch cannot grow: no test
            loss = task.loss(model, (xb, yb))
            loss.backward()
            demand = largest
        else:
            grads = per_example_gradients(model, xb, yb)
            with torch.no_grad():
                loss = F.cross_entropy(model(xb), yb)
            mean = grads.mean(0)
            offset = 0
            for p in model.parameters():
                p.grad = mean[offset:offset + p.numel()].view_as(p).clone()
                offset += p.numel()
            demand = test(grads)
        optimizer.step()
        loss = float(loss.detach())
        before = seen
        seen += b_used
        first = loss if first is None else first
        row = {"step": step, "samples": seen, "batch_size": b_used, "loss": loss,
               "eval_loss": math.nan, "eval_accuracy": math.nan, "grad_norm2": math.nan}
        diverged = not math.isfinite(loss) or loss > diverge_factor * first
        if not diverged and (step in geometric or seen >= samples
                             or math.floor(seen / every) > math.floor(before / every)):
            row.update(task.evaluate(model))
            row["grad_norm2"] = _full_gradient_norm2(model, x, y)
            diverged = not math.isfinite(row["eval_loss"])
        rows.append(row)
        if diverged:
            break
        if test is not None:
            b = next_batch_size(b, demand, largest)
    return pd.DataFrame(rows), diverged


@dataclass
class Scheme:
    """A batch-size scheme: an optimizer factory make(params, lr), the (initial) batch size, and
    the test that grows it (None: a constant batch).
    Introduced in: notebooks/optimization/adadagrad.ipynb"""

    optimizer: Callable
    batch_size: int
    test: Callable | None = None


@dataclass
class SchemeComparison:
    """What `compare` returns: curves (scheme, lr, seed, step, samples, batch_size, loss,
    eval_loss, eval_accuracy, grad_norm2, diverged), grid (scheme, lr, score, diverged) and chosen
    (scheme, lr, score). Introduced in: notebooks/optimization/adadagrad.ipynb"""

    curves: pd.DataFrame
    grid: pd.DataFrame
    chosen: pd.DataFrame
    samples: int
    names: list = field(default_factory=list)

    def finals(self, column: str = "eval_loss") -> pd.DataFrame:
        """The last value of `column` of every run: seeds x schemes (NaN where a run diverged)."""
        last = self.curves.groupby(["seed", "scheme"]).tail(1).set_index(["seed", "scheme"])
        return last[column].where(~last.diverged).unstack()[self.names]


def compare(schemes: dict[str, Scheme], task: benchmark.Task, x, y, *, lr_grids: dict, seeds,
            samples: int, evals: int = 20) -> SchemeComparison:
    """Tune every scheme's learning rate on its grid (all grids one length) by the final held-out
    loss on seeds[0] (GridEdgeError at an edge), then run the chosen rate on every seed.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    if set(lr_grids) != set(schemes) or len({len(g) for g in lr_grids.values()}) != 1:
        raise ValueError("lr_grids must give every scheme a grid, all of one length")
    seeds = [int(s) for s in seeds]
    curves, grids, chosen = [], [], []
    for name, scheme in schemes.items():
        settings = dict(samples=samples, batch_size=scheme.batch_size, test=scheme.test, evals=evals)
        runs = {}

        def score(lr):
            runs[lr] = train(task, x, y, scheme.optimizer, lr, seed=seeds[0], **settings)
            curve, diverged = runs[lr]
            return math.nan if diverged else float(curve.eval_loss.iloc[-1])

        try:
            tuned = tune(score, list(lr_grids[name]), name="lr")
        except GridEdgeError as edge:
            finals = {lr: round(score_of(run), 4) for lr, run in runs.items()}
            raise GridEdgeError(f"{name}: {edge}; final eval losses {finals}") from edge
        grids.append(tuned.table.assign(scheme=name))
        chosen.append({"scheme": name, "lr": tuned.best, "score": tuned.score})
        for seed in seeds:
            curve, diverged = (runs[tuned.best] if seed == seeds[0] else
                               train(task, x, y, scheme.optimizer, tuned.best, seed=seed, **settings))
            curves.append(curve.assign(scheme=name, lr=tuned.best, seed=seed, diverged=diverged))
    return SchemeComparison(curves=pd.concat(curves, ignore_index=True),
                            grid=pd.concat(grids, ignore_index=True)[["scheme", "lr", "score", "diverged"]],
                            chosen=pd.DataFrame(chosen), samples=samples, names=list(schemes))


def score_of(run) -> float:
    """The final held-out loss of a (curve, diverged) run, NaN when it diverged.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    curve, diverged = run
    return math.nan if diverged else float(curve.eval_loss.iloc[-1])


def steps_to(curves: pd.DataFrame, target, column: str = "eval_loss") -> pd.DataFrame:
    """Per seed and scheme, the first step and the samples processed at which `column` is at most
    `target` (a number, or a Series of one target per seed); NaN where never reached.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    rows = []
    for (seed, name), run in curves.groupby(["seed", "scheme"], sort=False):
        level = target[seed] if isinstance(target, pd.Series) else target
        hit = run[run[column] <= level]
        rows.append({"seed": seed, "scheme": name,
                     "step": hit.step.iloc[0] if len(hit) else math.nan,
                     "samples": hit.samples.iloc[0] if len(hit) else math.nan})
    return pd.DataFrame(rows)


def plot_schemes(result: SchemeComparison, loss: str = "eval_loss") -> plt.Figure:
    """Four panels: `loss` against samples processed and against optimizer steps (mean over seeds,
    range shaded), the batch size against steps, and each scheme's learning-rate grid.
    Introduced in: notebooks/optimization/adadagrad.ipynb"""
    colors = dict(zip(result.names, sns.color_palette(n_colors=len(result.names))))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for name in result.names:
        runs = result.curves[result.curves.scheme == name]
        evaluated = runs[np.isfinite(runs[loss])]
        for ax, x in ((axes[0], "samples"), (axes[1], "step")):
            stats = evaluated.groupby(x)[loss].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], color=colors[name], label=name)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colors[name], alpha=0.2,
                            linewidth=0)
        batch = runs.groupby("step").batch_size.mean()
        axes[2].plot(batch.index, batch.values, color=colors[name], label=name)
        grid = result.grid[(result.grid.scheme == name) & ~result.grid.diverged]
        axes[3].plot(grid.lr, grid.score, "o-", color=colors[name])
        best = result.chosen[result.chosen.scheme == name].iloc[0]
        axes[3].plot(best.lr, best.score, "*", color=colors[name], markersize=14, markeredgecolor="k")
    label = "held-out loss" if loss == "eval_loss" else "training loss"
    axes[0].set(xlabel="samples processed (gradient evaluations)", ylabel=label, yscale="log")
    axes[1].set(xlabel="optimizer steps", ylabel=label, xscale="log", yscale="log")
    axes[2].set(xlabel="optimizer steps", ylabel="batch size", xscale="log", yscale="log",
                title="batch size (mean over seeds)")
    axes[3].set(xscale="log", xlabel="learning rate", ylabel="final held-out loss, first seed",
                title="star: chosen rate")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return fig
