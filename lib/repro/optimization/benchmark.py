"""The chapter's benchmark: a few small tasks and one procedure that compares optimizers on them.

Comparisons of optimizers are where unfair tuning hides, so every notebook of the chapter compares
the same way (`compare`):

1. each optimizer's learning rate is tuned by `repro.core.tuning.tune` on the first seed, on its own
   grid, every grid as long as the others (the same budget for every optimizer); the score is the
   final held-out loss; a best rate at the edge of its grid is refused (GridEdgeError), a rate whose
   run diverged is recorded and never chosen. (The held-out set that tunes is the one the summary
   reports: at this size there is no third split. The rate is tuned on the first seed only; the
   other seeds measure the spread at that rate.)
2. each optimizer then runs at its chosen rate on every seed (the first seed's run is the tuning
   run itself), and the curves, the grids, the chosen rates and a summary come back as tidy tables.

A run diverges when its training loss (>= 0, a cross-entropy here) becomes non-finite or exceeds
`diverge_factor` times its first value, or when its held-out loss becomes non-finite: it stops
there and is reported as diverged.
The wall time of a run counts the training steps only (forward, backward and update, timed with
time.perf_counter), neither drawing the batches nor evaluating.

The tasks (`tasks()`, `task(name)`), each with a smoke-size step budget. "One run" gives the
seconds of one run at that budget with Adam on one CPU thread of the shared 2-core machine (load
about 8): the training steps, then the whole run with its 10 evaluations. The first run in a
process adds about 3 s of torch's one-time start-up.

| name             | model                           | data                  | steps | one run  |
| ---------------- | ------------------------------- | --------------------- | ----- | -------- |
| logistic         | logistic regression             | digits, batch 64      | 100   | 0.1, 0.1 |
| mlp              | MLP, 2 hidden layers of 64      | digits, batch 64      | 100   | 0.1, 0.2 |
| cnn              | SmallCNN, 16 channels           | digits as 1x8x8, b 64 | 60    | 0.4, 0.6 |
| char-transformer | TinyTransformer, 2 layers x 64  | Markov text, b 16x32  | 40    | 1.0, 1.7 |
| mlp-bn           | the mlp, batch norm after each  | digits, batch 64      | 100   | 0.1, 0.2 |
|                  | hidden linear layer             |                       |       |          |

The digits tasks evaluate the cross-entropy and accuracy on the held-out quarter of sklearn's
digits (`repro.core.data.sklearn_dataset("digits")`). The transformer reads 16 windows of 32
characters a step from 100,000 characters of an order-2 chain over 8 symbols, and is evaluated on
128 held-out windows; the chain's entropy rate (0.94 nats per character, against log 8 = 2.08) is
the task's `floor`: no model gets below it.

Introduced in: notebooks/optimization/adahessian.ipynb
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import nn
from torch.nn import functional as F

from ..core import train
from ..core.data import sklearn_dataset
from ..core.models import MLP, SmallCNN
from ..core.text import MarkovText, fixed_windows, windows
from ..core.transformer import TinyTransformer, next_token_loss
from ..core.tuning import GridEdgeError, Tuned, tune
from ..core.validation import check_int, check_positive

CURVE_COLUMNS = ["optimizer", "lr", "seed", "step", "time_s", "loss", "eval_loss"]
GRID_COLUMNS = ["optimizer", "lr", "score", "diverged"]
SUMMARY_COLUMNS = ["optimizer", "lr", "seeds", "diverged", "final_eval_loss_mean",
                   "final_eval_loss_sd", "time_per_step_ms"]


@dataclass
class Task:
    """One benchmark task: `make_model()` builds a fresh model (the caller seeds torch first),
    `batches(seed)` yields the training batches of a run, `loss(model, batch)` is the training
    loss, `evaluate(model)` returns {"eval_loss": ...} and, where it means something,
    {"eval_accuracy": ...} on held-out data, and `steps` is the smoke-size step budget. `floor`
    is a known lower bound of the eval loss (the text's entropy rate), or None.
    Introduced in: notebooks/optimization/adahessian.ipynb
    """

    name: str
    make_model: Callable[[], nn.Module]
    batches: Callable[[int], Iterator]
    loss: Callable[[nn.Module, object], torch.Tensor]
    evaluate: Callable[[nn.Module], dict]
    steps: int
    floor: float | None = None


def _classification_eval(x, y) -> Callable[[nn.Module], dict]:
    def evaluate(model):
        with train.evaluating(model):
            logits = model(x)
        return {"eval_loss": F.cross_entropy(logits, y).item(),
                "eval_accuracy": (logits.argmax(-1) == y).float().mean().item()}
    return evaluate


def digits_task(make_model: Callable[[], nn.Module], *, image: bool = False, batch_size: int = 64,
                steps: int = 100, name: str = "digits", device="cpu") -> Task:
    """sklearn's digits (1347 training, 450 held-out images, standardized pixels) as a Task for
    the model `make_model()`: flat 64-vectors, or 1x8x8 images with `image`, in shuffled batches
    of `batch_size`, cross-entropy loss, held-out loss and accuracy. The data and each new model
    live on `device`. One Task per model compares models (normalization layers, say) with
    `compare(..., task={name: Task})`.
    Introduced in: notebooks/optimization/adahessian.ipynb (public: the normalization chapter)
    """
    check_int("batch_size", batch_size)
    check_int("steps", steps)
    split = sklearn_dataset("digits")
    shape = (-1, 1, 8, 8) if image else (-1, 64)
    x_train, x_test = (x.reshape(shape).to(device) for x in (split.x_train, split.x_test))
    y_train, y_test = split.y_train.to(device), split.y_test.to(device)
    return Task(name, lambda: make_model().to(device),
                batches=lambda seed: train.batches(x_train, y_train, batch_size=batch_size,
                                                   seed=seed),
                loss=train.cross_entropy, evaluate=_classification_eval(x_test, y_test),
                steps=steps)


def _text_task() -> Task:
    # 8 symbols rather than 16: with 16 the tiny transformer sits on the symbol frequencies'
    # plateau for ~300 steps before it learns to attend to the previous character; with 8 it
    # learns from the first steps, so even the smoke budget compares something
    chain = MarkovText.random(vocab_size=8, order=2, concentration=0.2, seed=0)
    context = 32
    train_ids = chain.sample(100_000, seed=0)
    x_test, y_test = fixed_windows(chain.sample(128 * context + 1, seed=1), context)

    def evaluate(model):
        with train.evaluating(model):
            return {"eval_loss": next_token_loss(model, (x_test, y_test)).item()}

    return Task("char-transformer", lambda: TinyTransformer(chain.vocab_size, context=context),
                batches=lambda seed: windows(train_ids, context, batch_size=16, seed=seed),
                loss=next_token_loss, evaluate=evaluate, steps=40, floor=chain.entropy_rate())


_TASKS = {
    "logistic": lambda: digits_task(lambda: nn.Linear(64, 10), steps=100, name="logistic"),
    "mlp": lambda: digits_task(lambda: MLP(64, 10, width=64, depth=2), steps=100, name="mlp"),
    "cnn": lambda: digits_task(lambda: SmallCNN(1, 10, length=8, dims=2, channels=16), steps=60,
                               image=True, name="cnn"),
    "char-transformer": _text_task,
    # the mlp with batch normalization, which lets SGD take much larger rates (super-convergence)
    "mlp-bn": lambda: digits_task(lambda: MLP(64, 10, width=64, depth=2, norm="batch"),
                                  steps=100, name="mlp-bn"),
}


def _build(name: str) -> Task:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(map(repr, _TASKS))}")
    return _TASKS[name]()


def task(name: str) -> Task:
    """The benchmark task called `name` (see `tasks()`).
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    return _build(name)


def tasks() -> dict[str, Task]:
    """Every benchmark task by name, in the order of the module's table.
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    return {name: build() for name, build in _TASKS.items()}


@dataclass
class Comparison:
    """What `compare` returns: tidy tables, one row per observation.

    - curves: optimizer, lr, seed, step, time_s (cumulative training time), loss (training, on the
      step's batch, before its update), eval_loss (every `eval_every` steps and at the last, NaN
      between) and eval_accuracy when the task has it; a diverged run stops at its last step.
    - grid: optimizer, lr, score (final eval loss on the first seed, NaN when diverged), diverged.
    - chosen: optimizer, lr, score: the tuned rate.
    - summary: per optimizer at its rate: seeds, diverged (how many seeds), final_eval_loss_mean and
      _sd over the seeds that did not diverge, final_eval_accuracy_mean when the task has it,
      time_per_step_ms; with a target, steps_to_target_mean (over the seeds that reached it, at the
      resolution of eval_every), time_to_target_s_mean and reached_target (how many seeds).
    Introduced in: notebooks/optimization/adahessian.ipynb
    """

    task: str
    curves: pd.DataFrame
    grid: pd.DataFrame
    chosen: pd.DataFrame
    summary: pd.DataFrame
    floor: float | None = None
    target: float | None = None

    def finals(self, column: str = "eval_loss") -> pd.DataFrame:
        """The last evaluated `column` of every run at its chosen rate: one row per seed, one column
        per optimizer (NaN where a run diverged), the table a paired comparison over seeds reads."""
        if column not in self.curves:
            raise ValueError(f"no column {column!r} in the curves; they have {list(self.curves.columns)}")
        evaluated = self.curves.dropna(subset=["eval_loss"])
        table = evaluated.groupby(["seed", "optimizer"])[column].last().unstack()
        diverged = self.curves.groupby(["seed", "optimizer"]).eval_loss.apply(
            lambda x: not math.isfinite(x.iloc[-1]))
        return table.mask(diverged.unstack().reindex_like(table).astype(bool))


def _run(task: Task, make_optimizer: Callable, lr: float, seed: int, *, steps: int, eval_every: int,
         diverge_factor: float, create_graph: bool, takes_model: bool,
         make_schedule: Callable | None = None,
         loss_fn: Callable | None = None) -> tuple[pd.DataFrame, bool]:
    """Train one model; return its curve and whether it diverged. With `make_schedule`, the
    scheduler make_schedule(optimizer, steps) steps after every update and the curve gets the
    column step_lr (the rate of the first parameter group that the step used). `loss_fn` replaces
    the task's loss; when it returns a tuple of losses, the closure returns them undifferentiated
    (for an optimizer that takes their gradients apart) and the step returns their total."""
    loss_fn = task.loss if loss_fn is None else loss_fn
    torch.manual_seed(seed)
    model = task.make_model()
    optimizer = make_optimizer(model if takes_model else model.parameters(), lr)
    schedule = None if make_schedule is None else make_schedule(optimizer, steps)
    data = task.batches(seed)
    rows, elapsed, first = [], 0.0, None
    for step in range(1, steps + 1):
        batch = next(data)

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            if isinstance(loss, tuple):   # several losses: the optimizer differentiates them
                return loss
            loss.backward(create_graph=create_graph)
            return loss

        step_lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        loss = optimizer.step(closure)
        if loss is None:
            raise TypeError(f"{type(optimizer).__name__}.step(closure) returned None: the "
                            "benchmark needs an optimizer that calls the closure and returns "
                            "its loss")
        loss = loss.item()  # .item() waits for the step to finish
        if schedule is not None:
            schedule.step()
        elapsed += time.perf_counter() - start
        first = loss if first is None else first
        row = {"step": step, "time_s": elapsed, "loss": loss, "eval_loss": math.nan}
        if schedule is not None:
            row["step_lr"] = step_lr
        diverged = not math.isfinite(loss) or loss > diverge_factor * first
        if not diverged and (step % eval_every == 0 or step == steps):
            row.update(task.evaluate(model))
            diverged = not math.isfinite(row["eval_loss"])
        rows.append(row)
        if diverged:
            break
    optimizer.zero_grad(set_to_none=True)  # a create_graph gradient holds a cycle to its parameter
    return pd.DataFrame(rows), diverged


def _final_eval_loss(curve: pd.DataFrame, diverged: bool) -> float:
    return math.nan if diverged else float(curve.eval_loss.iloc[-1])


def _check_grids(optimizers: dict, lr_grids: dict) -> None:
    if not optimizers or not all(callable(make) for make in optimizers.values()):
        raise ValueError("optimizers must map each name to a factory make(params, lr) -> optimizer")
    if set(lr_grids) != set(optimizers):
        raise ValueError(f"lr_grids must have one grid per optimizer: optimizers "
                         f"{sorted(optimizers)}, grids {sorted(lr_grids)}")
    lengths = {name: len(list(lr_grids[name])) for name in optimizers}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every optimizer's grid must have the same length (the same tuning "
                         f"budget), got {lengths}")
    for name in optimizers:
        grid = np.asarray(list(lr_grids[name]), dtype=float)
        valid = np.all(np.isfinite(grid) & (grid > 0)) and np.all(np.diff(grid) > 0)
        if len(grid) < 3 or not valid:
            raise ValueError(f"lr_grids[{name!r}] == {list(lr_grids[name])}, must be at least 3 "
                             "increasing rates > 0")


def compare(optimizers: dict[str, Callable], task: Task | str | dict[str, Task], *, lr_grids: dict,
            seeds,
            steps: int | None = None, eval_every: int | None = None, target: float | None = None,
            diverge_factor: float = 10.0, create_graph=(), takes_model=(),
            schedules: dict | None = None, fixed: dict | None = None,
            losses: dict | None = None) -> Comparison:
    """Compare optimizers on `task` (a Task or a task's name) with the same tuning budget.
    `task` may also map every name of `optimizers` to its own Task: then each name trains its own
    model (a normalization layer, an architecture) on the same data, and the comparison's rows
    named "optimizer" name those models.

    `optimizers` maps a name to a factory make(params, lr); `lr_grids` maps the same names to
    increasing grids of learning rates, all of one length. Each optimizer's rate is tuned on
    seeds[0] by its final eval loss (GridEdgeError when the best is at its grid's edge), then it
    runs at that rate on every seed. `steps` defaults to the task's budget; the eval loss is
    measured every `eval_every` steps (default steps // 10) and at the last. `target` (an eval
    loss) adds steps-to-target to the summary. `create_graph` names the optimizers whose backward
    must build the graph for Hessian-vector products (loss.backward(create_graph=True)), and
    `takes_model` those whose factory is make(model, lr), for an optimizer that needs the model
    itself (parameters split by role, or hooks on the layers).
    `schedules` maps some of the names to make_schedule(optimizer, steps) -> a torch lr scheduler
    (OneCycleLR, MultiStepLR, ...), stepped after every update; the tuned lr is then the rate the
    optimizer is created with (the scheduler reads it from its param group: OneCycleLR's max_lr,
    say), and the curves of those optimizers get the column step_lr, the rate each step used.
    Every step goes through optimizer.step(closure), so optimizers that need a closure work too.
    `fixed` maps some of the names to a rate they run at without tuning (a method at its default
    setting, against baselines tuned on their grids): those names take no grid, and their grid
    table holds the one rate with its first-seed score.
    `losses` maps some of the names to a loss(model, batch) that replaces the task's loss for
    them (a distilled student's objective, say); a loss that returns a tuple of tensors is handed
    to optimizer.step(closure) undifferentiated, for an optimizer that differentiates each term
    itself (DOT, `repro.optimization.distillation`), whose step returns the total.
    Introduced in: notebooks/optimization/adahessian.ipynb (schedules: super-convergence.ipynb;
    fixed: doubly-adaptive-scaled-algorithm-for-machine.ipynb; losses: dot.ipynb; a Task per
    name: online-normalization-for-training-neural-networks.ipynb)
    """
    tasks = _tasks_by_name(task, optimizers)
    fixed = dict(fixed or {})
    _names("fixed", set(fixed), optimizers)
    for name, lr in fixed.items():
        check_positive(f"fixed[{name!r}]", lr)
    tuned_optimizers = {name: make for name, make in optimizers.items() if name not in fixed}
    if tuned_optimizers or lr_grids:
        _check_grids(tuned_optimizers, lr_grids)
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds == {seeds}, must be distinct ints, at least one")
    seeds = [int(s) for s in seeds]
    if steps is not None:
        check_int("steps", steps)
    if eval_every is not None:
        check_int("eval_every", eval_every)
    check_positive("diverge_factor", diverge_factor)
    if target is not None:
        check_positive("target", target)
    create_graph, takes_model = (_names(arg, value, optimizers) for arg, value in
                                 (("create_graph", create_graph), ("takes_model", takes_model)))
    schedules = dict(schedules or {})
    _names("schedules", set(schedules), optimizers)
    if not all(callable(make) for make in schedules.values()):
        raise ValueError("schedules must map each name to a factory make(optimizer, steps) -> "
                         "scheduler")
    losses = dict(losses or {})
    _names("losses", set(losses), optimizers)

    curves, grids, chosen = [], [], []
    for name, make in optimizers.items():
        task = tasks[name]
        run_steps = task.steps if steps is None else steps
        settings = dict(steps=run_steps, eval_every=eval_every or max(1, run_steps // 10),
                        diverge_factor=diverge_factor, create_graph=name in create_graph,
                        takes_model=name in takes_model, make_schedule=schedules.get(name),
                        loss_fn=losses.get(name))
        tuning_runs = {}

        def score(lr):
            tuning_runs[lr] = _run(task, make, lr, seeds[0], **settings)
            return _final_eval_loss(*tuning_runs[lr])

        if name in fixed:  # one run at the given rate, scored like a one-point grid
            lr = fixed[name]
            tuned = Tuned(best=lr, score=score(lr), table=pd.DataFrame(
                [{"lr": lr, "score": _final_eval_loss(*tuning_runs[lr]),
                  "diverged": tuning_runs[lr][1]}]))
        else:
            try:
                tuned = tune(score, list(lr_grids[name]), name="lr")
            except GridEdgeError as edge:
                scores = {lr: round(_final_eval_loss(*run), 4) for lr, run in tuning_runs.items()}
                raise GridEdgeError(f"{name} on {task.name}: {edge}; final eval losses {scores}"
                                    ) from edge
            except ValueError as every_diverged:
                raise ValueError(f"{name} on {task.name}: {every_diverged}") from every_diverged
        grids.append(tuned.table.assign(optimizer=name))
        chosen.append({"optimizer": name, "lr": tuned.best, "score": tuned.score})
        for seed in seeds:
            curve, diverged = (tuning_runs[tuned.best] if seed == seeds[0] else
                               _run(task, make, tuned.best, seed, **settings))
            curves.append(curve.assign(optimizer=name, lr=tuned.best, seed=seed, diverged=diverged))

    curves = pd.concat(curves, ignore_index=True)
    summary = _summary(curves, target)
    curves = curves.drop(columns="diverged")
    extra = [c for c in curves.columns if c not in CURVE_COLUMNS]
    names = list(dict.fromkeys(t.name for t in tasks.values()))
    floors = {t.floor for t in tasks.values()}
    return Comparison(task=", ".join(names), curves=curves[CURVE_COLUMNS + extra],
                      grid=pd.concat(grids, ignore_index=True)[GRID_COLUMNS],
                      chosen=pd.DataFrame(chosen), summary=summary,
                      floor=floors.pop() if len(floors) == 1 else None, target=target)


def _tasks_by_name(task, optimizers: dict) -> dict[str, Task]:
    """`compare`'s task argument as one Task per name of `optimizers`."""
    if isinstance(task, dict):
        if set(task) != set(optimizers):
            raise ValueError(f"a task per name must name the optimizers exactly: optimizers "
                             f"{sorted(optimizers)}, tasks {sorted(task)}")
        if not all(isinstance(t, Task) for t in task.values()):
            raise ValueError("task must map each name to a benchmark Task")
        return dict(task)
    task = _build(task) if isinstance(task, str) else task  # `task` the argument hides task()
    return {name: task for name in optimizers}


def _names(arg: str, names, optimizers: dict) -> set:
    names = {names} if isinstance(names, str) else set(names)
    if names - set(optimizers):
        raise ValueError(f"{arg} names {sorted(names - set(optimizers))}, which are not among "
                         f"the optimizers {sorted(optimizers)}")
    return names


def _summary(curves: pd.DataFrame, target: float | None) -> pd.DataFrame:
    rows = []
    for name, runs in curves.groupby("optimizer", sort=False):
        finals = runs.groupby("seed").tail(1)
        kept = finals[~finals.diverged]
        row = {"optimizer": name, "lr": runs.lr.iloc[0], "seeds": len(finals),
               "diverged": int(finals.diverged.sum()),
               "final_eval_loss_mean": kept.eval_loss.mean(),
               "final_eval_loss_sd": kept.eval_loss.std(ddof=1),
               "time_per_step_ms": (1e3 * finals.time_s / finals.step).mean()}
        if "eval_accuracy" in runs:
            row["final_eval_accuracy_mean"] = kept.eval_accuracy.mean()
        if target is not None:
            hits = runs[runs.eval_loss <= target].groupby("seed").head(1)
            row.update(steps_to_target_mean=hits.step.mean(),
                       time_to_target_s_mean=hits.time_s.mean(), reached_target=len(hits))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_comparison(result: Comparison, loss: str = "eval_loss") -> plt.Figure:
    """Three panels in the book's style: `loss` ("eval_loss" or the training "loss") against steps
    and against wall time (the mean over seeds, shaded from the lowest to the highest seed), and
    each optimizer's learning-rate grid (score against lr on a log axis; the chosen rate a star,
    diverged rates crosses along the top). The task's floor is dashed, the target dotted.
    Introduced in: notebooks/optimization/adahessian.ipynb
    """
    if loss not in ("eval_loss", "loss"):
        raise ValueError(f"loss == {loss!r}, must be 'eval_loss' or 'loss'")
    names = list(result.chosen.optimizer)
    colors = dict(zip(names, sns.color_palette(n_colors=len(names))))
    fig, (by_step, by_time, grid_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    for name in names:
        runs = result.curves[(result.curves.optimizer == name) & np.isfinite(result.curves[loss])]
        stats = runs.groupby("step").agg(mean=(loss, "mean"), low=(loss, "min"), high=(loss, "max"),
                                         time_s=("time_s", "mean"))
        for ax, x in ((by_step, stats.index), (by_time, stats.time_s)):
            ax.plot(x, stats["mean"], color=colors[name], label=name)
            ax.fill_between(x, stats.low, stats.high, color=colors[name], alpha=0.2, linewidth=0)
        _plot_grid(grid_ax, result, name, colors[name])
    label = "held-out loss" if loss == "eval_loss" else "training loss"
    for ax, xlabel in ((by_step, "step"), (by_time, "wall time of the steps (s)")):
        for level, style, what in ((result.floor, "--", "floor"), (result.target, ":", "target")):
            if level is not None:
                ax.axhline(level, color="0.4", linestyle=style, linewidth=1, label=what)
        ax.set(xlabel=xlabel, ylabel=label, yscale="log")
        _plain_log_labels(ax.yaxis)
    by_step.legend()
    by_step.set_title(f"{result.task}: mean over seeds, range shaded")
    grid_ax.set(xscale="log", xlabel="learning rate", ylabel="final held-out loss, first seed",
                title="star: chosen rate, x: diverged")
    fig.tight_layout()
    return fig


def _plain_log_labels(axis) -> None:
    """Label a log axis 1.6 rather than 1.6 x 10^0, on the ticks matplotlib would label; over more
    than half a decade, label only the minor ticks at 2, 3 and 5 times a power of ten."""
    major, minor = axis.get_major_formatter(), axis.get_minor_formatter()

    def minor_label(v, pos):
        low, high = axis.get_view_interval()
        mantissa = round(v / 10 ** math.floor(math.log10(v)), 6)
        crowded = high / low > 3 and mantissa not in (2, 3, 5)
        return f"{v:g}" if minor(v, pos) and not crowded else ""

    axis.set_major_formatter(FuncFormatter(lambda v, pos: f"{v:g}" if major(v, pos) else ""))
    axis.set_minor_formatter(FuncFormatter(minor_label))


def _plot_grid(ax, result: Comparison, name: str, color) -> None:
    rows = result.grid[result.grid.optimizer == name]
    finite = rows[~rows.diverged]
    ax.plot(finite.lr, finite.score, "o-", color=color, label=name)
    if rows.diverged.any():
        # crosses along the top of the panel: a diverged rate has no score to plot
        ax.plot(rows.lr[rows.diverged], np.full(rows.diverged.sum(), 0.95), "x", color=color,
                transform=ax.get_xaxis_transform(), markersize=8)
    best = result.chosen[result.chosen.optimizer == name].iloc[0]
    ax.plot(best.lr, best.score, "*", color=color, markersize=15, markeredgecolor="black")


DIGITS_TASKS = ("logistic", "mlp", "cnn", "mlp-bn")


def with_train_size(name: str, train_size: int, seed: int = 0) -> Task:
    """The digits task `name` ("logistic", "mlp", "cnn" or "mlp-bn") trained on a class-stratified subset of
    `train_size` of its 1347 training images (drawn with `seed`); the held-out set is unchanged.
    Introduced in: notebooks/optimization/super-convergence.ipynb
    """
    from sklearn.model_selection import train_test_split

    full = _build(name)
    if name not in DIGITS_TASKS:
        raise ValueError(f"with_train_size needs a digits task "
                         f"({', '.join(map(repr, DIGITS_TASKS))}), got {name!r}")
    split = sklearn_dataset("digits")
    n = len(split.y_train)
    check_int("train_size", train_size)
    if not 64 <= train_size <= n:
        raise ValueError(f"train_size == {train_size}, must be in [64, {n}] (a batch is 64)")
    keep = (np.arange(n) if train_size == n else
            np.sort(train_test_split(np.arange(n), train_size=train_size, random_state=seed,
                                     stratify=split.y_train.numpy())[0]))
    x = split.x_train[keep].reshape((-1, 1, 8, 8) if name == "cnn" else (-1, 64))
    y = split.y_train[keep]
    return Task(f"{name}, {train_size} training images", full.make_model,
                batches=lambda s: train.batches(x, y, batch_size=64, seed=s), loss=full.loss,
                evaluate=full.evaluate, steps=full.steps, floor=full.floor)


def range_test(make_optimizer: Callable, task: Task | str, *, low: float, high: float,
               steps: int, seed: int = 0, eval_every: int = 1,
               diverge_factor: float = 10.0) -> pd.DataFrame:
    """The learning-rate range test: one run of `steps` steps whose rate grows linearly from `low`
    to `high` (torch's LinearLR on the optimizer make_optimizer(params, high)), with the held-out
    loss (and accuracy) every `eval_every` steps. Returns the curve (step, time_s, loss,
    eval_loss, ..., step_lr); the run stops where it diverges, as in `compare`.
    Introduced in: notebooks/optimization/super-convergence.ipynb
    """
    task = _build(task) if isinstance(task, str) else task
    check_positive("low", low)
    check_positive("high", high)
    if not low < high:
        raise ValueError(f"low == {low}, high == {high}: the range test needs low < high")
    steps = check_int("steps", steps, minimum=2)

    def linear(optimizer, steps):
        return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=low / high,
                                                 end_factor=1.0, total_iters=steps - 1)

    curve, _ = _run(task, make_optimizer, high, seed, steps=steps, eval_every=eval_every,
                    diverge_factor=diverge_factor, create_graph=False, takes_model=False,
                    make_schedule=linear)
    return curve


BINARY_SETS = ("breast_cancer", "digits")


def binary_logistic(name: str = "breast_cancer", *, l2: float | None = None,
                    batch_size: int | None = None, steps: int = 100,
                    dtype: torch.dtype = torch.float64) -> Task:
    """L2-regularized binary logistic regression, a strongly convex task: the model is
    nn.Linear(d, 1) and the training loss mean BCE(logits, y) + l2 / 2 ||theta||^2 over every
    parameter (the bias too), so that the objective is l2-strongly convex. Data: sklearn's
    breast cancer (30 features) or the digits with y = 1 for digits 5-9 (64 features), split and
    standardized by `repro.core.data.sklearn_dataset`; `l2` defaults to 1 / n_train. With
    `batch_size=None` every step sees the whole training set (deterministic, full-batch), so the
    curve's training loss is the objective F(w_k) itself. `dtype` float64 (the default) lets a
    convergence rate be followed down to 1e-12. The eval loss is the unregularized held-out BCE.
    Introduced in: notebooks/optimization/doubly-adaptive-scaled-algorithm-for-machine.ipynb
    """
    if name not in BINARY_SETS:
        raise ValueError(f"unknown binary set {name!r}; the sets are {', '.join(map(repr, BINARY_SETS))}")
    split = sklearn_dataset(name)
    binary = (lambda y: (y >= 5)) if name == "digits" else (lambda y: y == 1)
    x_train, x_test = split.x_train.to(dtype), split.x_test.to(dtype)
    y_train, y_test = binary(split.y_train).to(dtype), binary(split.y_test).to(dtype)
    n, d = x_train.shape
    l2 = 1.0 / n if l2 is None else l2
    check_positive("l2", l2)
    if batch_size is not None:
        check_int("batch_size", batch_size)

    def make_model():
        return nn.Linear(d, 1).to(dtype)

    def loss(model, batch):
        x, y = batch
        penalty = sum((p ** 2).sum() for p in model.parameters())
        return F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y) + 0.5 * l2 * penalty

    def evaluate(model):
        with train.evaluating(model):
            logits = model(x_test).squeeze(-1)
        return {"eval_loss": F.binary_cross_entropy_with_logits(logits, y_test).item(),
                "eval_accuracy": ((logits > 0).to(dtype) == y_test).to(dtype).mean().item()}

    def batches(seed):
        if batch_size is None:
            while True:
                yield x_train, y_train
        yield from train.batches(x_train, y_train, batch_size=batch_size, seed=seed)

    full = "full batch" if batch_size is None else f"batch {batch_size}"
    task = Task(f"logistic {name}, l2 {l2:.3g}, {full}", make_model, batches=batches, loss=loss,
                evaluate=evaluate, steps=steps)
    task.data, task.l2 = (x_train, y_train), l2   # for a reference solution w*
    return task


def run(make_optimizer: Callable, task: Task | str, lr: float, *, seed: int,
        steps: int | None = None, eval_every: int | None = None, takes_model: bool = False,
        diverge_factor: float = 10.0, create_graph: bool = False,
        loss: Callable | None = None) -> tuple[pd.DataFrame, bool]:
    """One run of `compare` at a given rate, without tuning: the curve (step, time_s, loss,
    eval_loss, ...) and whether it diverged, exactly as `compare` would train it at `lr` on `seed`
    (for a variant measured at another optimizer's tuned rate, or a method at its default).
    `create_graph` as in `compare`, for an optimizer that needs Hessian-vector products; `loss`
    replaces the task's loss, as `compare`'s `losses` does.
    Introduced in: notebooks/optimization/pion.ipynb (create_graph:
    doubly-adaptive-scaled-algorithm-for-machine.ipynb; loss: dot.ipynb)
    """
    task = _build(task) if isinstance(task, str) else task
    check_positive("lr", lr)
    steps = task.steps if steps is None else check_int("steps", steps)
    eval_every = max(1, steps // 10) if eval_every is None else check_int("eval_every", eval_every)
    return _run(task, make_optimizer, lr, int(seed), steps=steps, eval_every=eval_every,
                diverge_factor=diverge_factor, create_graph=bool(create_graph),
                takes_model=bool(takes_model), loss_fn=loss)


def step_times(optimizers: dict[str, Callable], task: Task | str, *, lrs: dict, steps: int = 20,
               seed: int = 0, takes_model=(), create_graph=()) -> pd.DataFrame:
    """The wall time of training steps (forward, backward and update, as `compare` times them),
    measured interleaved: one model and optimizer per name (make(params or model, lrs[name])),
    then `steps` rounds in which every optimizer takes one step, in an order that alternates from
    round to round. A load that changes during the measurement then slows every optimizer alike,
    which separate runs one after another do not guarantee. Returns one row per step: optimizer,
    round, seconds; a first round is taken untimed (warm-up). `create_graph` names the optimizers
    whose backward builds the graph for Hessian-vector products, as in `compare`.
    Introduced in: notebooks/optimization/muon.ipynb (create_graph: adahessian.ipynb)
    """
    task = _build(task) if isinstance(task, str) else task
    steps = check_int("steps", steps)
    if set(lrs) != set(optimizers):
        raise ValueError(f"lrs must give one rate per optimizer: optimizers {sorted(optimizers)}, "
                         f"rates {sorted(lrs)}")
    takes_model = _names("takes_model", takes_model, optimizers)
    create_graph = _names("create_graph", create_graph, optimizers)
    runs = {}
    for name, make in optimizers.items():
        torch.manual_seed(seed)
        model = task.make_model()
        runs[name] = (model, make(model if name in takes_model else model.parameters(), lrs[name]),
                      task.batches(seed))
    rows, names = [], list(optimizers)
    for round_ in range(steps + 1):
        for name in names if round_ % 2 else names[::-1]:
            model, optimizer, data = runs[name]
            batch = next(data)

            def closure():
                optimizer.zero_grad(set_to_none=True)
                loss = task.loss(model, batch)
                loss.backward(create_graph=name in create_graph)
                return loss

            start = time.perf_counter()
            optimizer.step(closure).item()
            if round_:
                rows.append({"optimizer": name, "round": round_,
                             "seconds": time.perf_counter() - start})
    for _, optimizer, _ in runs.values():
        optimizer.zero_grad(set_to_none=True)   # a create_graph gradient holds a cycle
    return pd.DataFrame(rows)
