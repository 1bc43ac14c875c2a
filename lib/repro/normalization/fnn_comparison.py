"""Comparing kinds of feed-forward nets the way Klambauer et al. (2017) compare them on the UCI
data sets: every kind of net is tuned on a grid on a validation split, the chosen setting is scored
on the test set, and the kinds are ranked by test accuracy on each data set and compared by their
average rank.

Tuning over a grid of learning rates means training many copies of one architecture, each with its
own learning rate. `StackedMLP` holds M such copies of a `repro.core.models.MLP` as batched weight
tensors (M, d_in, d_out) and runs them with batched matrix products; `train_sgd` takes plain SGD
steps with one learning rate per copy, and a copy whose loss stops being finite is frozen and
reported as diverged without disturbing the others. (`repro.core.stacked.Ensemble` runs copies with
vmap over `functional_call`: for five to seven copies of an 8-layer net of width 32-64 a step cost
about five times more that way on one CPU thread, and one optimizer gives every copy the same
learning rate.) `average_ranks` and `rank_gap` turn test accuracies into the paper's average ranks,
with a bootstrap over test examples for the noise of finite test sets.

Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.model_selection import train_test_split
from torch import nn

from ..core import train
from ..core.validation import check_int


class StackedMLP(nn.Module):
    """M copies of one `repro.core.models.MLP` architecture (linear -> [batch or layer norm] ->
    activation, repeated, then a linear read-out) with their own weights, run together.

    Built from M MLPs (`StackedMLP([MLP(...), ...])`), whose weights it copies, so that every copy
    starts as the MLP it came from. `stack(x)` takes inputs of shape (N, d_in), the same for every
    copy, or (M, N, d_in), and returns logits (M, N, d_out). Batch norm uses each copy's own batch
    statistics in training mode and its running averages in eval mode, as nn.BatchNorm1d does.
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("a stack needs at least one model")
        self.members = len(models)
        self.register_buffer("diverged", torch.zeros(self.members, dtype=torch.bool))
        layers = [list(m.net) if hasattr(m, "net") else list(m) for m in models]
        kinds = [type(layer) for layer in layers[0]]
        if any([type(layer) for layer in ls] != kinds for ls in layers):
            raise ValueError("the models of a stack must have the same architecture")
        stacked = lambda tensors: nn.Parameter(torch.stack([t.detach() for t in tensors]))
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.norm_weights, self.norm_biases = nn.ParameterList(), nn.ParameterList()
        self.plan = []  # per layer: ("linear", i), ("batch", i), ("layer", i) or ("act", module)
        norm_index = 0
        for position, first in enumerate(layers[0]):
            column = [ls[position] for ls in layers]
            if isinstance(first, nn.Linear):
                if first.bias is None:
                    raise ValueError("StackedMLP needs linear layers with biases")
                self.plan.append(("linear", len(self.weights)))
                # (M, d_in, d_out) and (M, 1, d_out): nn.Linear's x @ W^T + b, batched over copies
                self.weights.append(stacked([m.weight.T for m in column]))
                self.biases.append(stacked([m.bias[None] for m in column]))
            elif isinstance(first, (nn.BatchNorm1d, nn.LayerNorm)):
                kind = "batch" if isinstance(first, nn.BatchNorm1d) else "layer"
                self.plan.append((kind, norm_index))
                self.norm_weights.append(stacked([m.weight[None] for m in column]))  # (M, 1, width)
                self.norm_biases.append(stacked([m.bias[None] for m in column]))
                if kind == "batch":  # flat (M * width,): channel m * width + j is unit j of copy m
                    self.register_buffer(f"running_mean{norm_index}",
                                         torch.cat([m.running_mean for m in column]).clone())
                    self.register_buffer(f"running_var{norm_index}",
                                         torch.cat([m.running_var for m in column]).clone())
                    self.momentum = first.momentum
                self.eps = first.eps
                norm_index += 1
            elif isinstance(first, (nn.Dropout, nn.AlphaDropout)):
                raise ValueError("StackedMLP has no dropout: build the MLPs with dropout=0")
            else:  # an activation module, applied elementwise
                self.plan.append(("act", first))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.expand(self.members, *x.shape) if x.dim() == 2 else x  # (M, N, d)
        for kind, i in self.plan:
            if kind == "linear":
                h = torch.baddbmm(self.biases[i], h, self.weights[i])
            elif kind == "act":
                h = i(h)
            elif kind == "layer":
                h = nn.functional.layer_norm(h, h.shape[-1:], eps=self.eps)
                h = h * self.norm_weights[i] + self.norm_biases[i]
            else:  # batch norm over the N examples of each copy: one unit of one copy per channel
                n = h.shape[1]
                flat = nn.functional.batch_norm(
                    h.transpose(0, 1).reshape(n, -1), getattr(self, f"running_mean{i}"),
                    getattr(self, f"running_var{i}"), self.norm_weights[i].flatten(),
                    self.norm_biases[i].flatten(), self.training, self.momentum, self.eps)
                h = flat.view(n, self.members, -1).transpose(0, 1)
        return h


def train_sgd(stack: StackedMLP, lrs, x: torch.Tensor, y: torch.Tensor, *, steps: int,
              batch_size: int, seed: int = 0, record_every: int | None = None,
              callback=None) -> np.ndarray:
    """Plain SGD on the mean cross-entropy, copy m of the stack with learning rate lrs[m], all
    copies on the same minibatches (`repro.core.train.batches`). A copy whose minibatch loss stops
    being finite is set to zero weights, frozen, and marked in `stack.diverged`.
    `callback(step, stack)` runs every `record_every` steps and after the last, with the stack in
    eval mode (to evaluate it, for early stopping). Returns `stack.diverged` as a bool array and
    leaves the stack in eval mode.
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    check_int("steps", steps)
    lr = torch.as_tensor(np.asarray(lrs, dtype=float), dtype=torch.float32, device=x.device)
    if lr.shape != (stack.members,) or not torch.all(lr > 0):
        raise ValueError(f"lrs == {lrs!r}: need {stack.members} positive learning rates, "
                         "one per copy")
    if callback is not None:
        check_int("record_every", record_every)
    diverged = stack.diverged
    batches = train.batches(x, y, batch_size=min(batch_size, len(x)), seed=seed)
    # SGD with step 1 on sum_m lrs[m] * loss_m moves copy m by lrs[m] times its own gradient
    optimizer = torch.optim.SGD(stack.parameters(), lr=1.0, foreach=True)
    stack.train()
    for step in range(1, steps + 1):
        xb, yb = next(batches)
        logits = stack(xb)  # (M, B, C)
        losses = nn.functional.cross_entropy(logits.flatten(0, 1), yb.repeat(stack.members),
                                             reduction="none").view(stack.members, -1).mean(1)
        newly = ~torch.isfinite(losses.detach()) & ~diverged
        diverged |= newly
        total = torch.where(diverged, torch.zeros_like(losses), lr * losses).sum()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if newly.any():  # park a diverged copy at zero weights: finite, and cheap to carry along
            with torch.no_grad():
                for p in stack.parameters():
                    p[newly] = 0.0
        if callback is not None and (step % record_every == 0 or step == steps):
            stack.eval()
            callback(step, stack)
            stack.train()
    stack.eval()
    return diverged.cpu().numpy().copy()


@torch.no_grad()
def evaluate(stack: StackedMLP, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each copy's mean cross-entropy on (x, y), shape (M,), nan for a copy that diverged, and
    which examples it classifies correctly, shape (M, N); in eval mode (batch norm on its running
    averages).
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    was_training = stack.training
    stack.eval()
    try:
        logits = stack(x)
    finally:
        stack.train(was_training)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(stack.members),
                                       reduction="none").view(stack.members, -1).mean(1)
    ok = torch.isfinite(logits).all(-1).all(-1) & ~stack.diverged
    loss = torch.where(ok, loss, torch.full_like(loss, math.nan))
    return loss.cpu().numpy(), (logits.argmax(-1) == y).cpu().numpy()


def early_stopping(val_loss, test_correct) -> tuple[np.ndarray, np.ndarray]:
    """For every copy, the lowest validation loss over the recorded evaluations and what it got
    right on the test set at that evaluation. `val_loss` has shape (evaluations, M), `test_correct`
    (evaluations, M, N). A copy whose validation loss was nan at any evaluation (it diverged) gets
    nan, so that tuning never picks it. Returns (val_loss (M,), test_correct (M, N)).
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    val_loss, test_correct = np.asarray(val_loss, dtype=float), np.asarray(test_correct)
    if val_loss.ndim != 2 or test_correct.shape[:2] != val_loss.shape:
        raise ValueError(f"val_loss {val_loss.shape} and test_correct {test_correct.shape} need "
                         "shapes (evaluations, M) and (evaluations, M, N)")
    best = np.argmin(np.nan_to_num(val_loss, nan=np.inf), axis=0)  # (M,)
    members = np.arange(val_loss.shape[1])
    score = np.where(np.isnan(val_loss).any(0), np.nan, val_loss[best, members])
    return score, test_correct[best, members]


def hold_out(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int = 0):
    """Split (x, y) into a training part and a validation part of `fraction` of the examples,
    stratified by class: (x_fit, y_fit, x_val, y_val).
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction == {fraction!r}, must be in (0, 1)")
    fit, val = train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed,
                                stratify=y.cpu().numpy())
    fit, val = torch.as_tensor(fit, device=x.device), torch.as_tensor(val, device=x.device)
    return x[fit], y[fit], x[val], y[val]


def average_ranks(accuracy) -> np.ndarray:
    """The average rank of each method over the tasks: `accuracy` has shape (tasks, methods); on
    every task the most accurate method gets rank 1, tied methods share the mean of their ranks.
    Leading dimensions (bootstrap draws, say) are kept: (..., tasks, methods) -> (..., methods).
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    accuracy = np.asarray(accuracy, dtype=float)
    if accuracy.ndim < 2 or accuracy.shape[-1] < 2:
        raise ValueError(f"accuracy has shape {accuracy.shape}, need (..., tasks, methods >= 2)")
    return rankdata(-accuracy, method="average", axis=-1).mean(-2)


def rank_gap(correct: list, method: int, against=None, draws: int = 1000,
             seed: int = 0) -> tuple[float, float]:
    """How far `method` is ahead of the best of `against` (default: all other methods) in average
    rank, and the standard error of that gap from a bootstrap over test examples.

    `correct` holds one array (methods, n_test) per task: which test examples each method
    classifies correctly (or the fraction of repeats that did). Ranks are taken among all the
    methods; the gap is (average rank of `method`) - (lowest average rank in `against`): negative
    when `method` ranks ahead. Each bootstrap draw resamples every task's test examples with
    replacement, the same examples for every method, and recomputes the gap.
    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    check_int("draws", draws, 2)
    correct = [np.asarray(c, dtype=float) for c in correct]
    if not correct or any(c.ndim != 2 for c in correct) or len({c.shape[0] for c in correct}) != 1:
        raise ValueError("every task needs an array (methods, n_test) with the same methods")
    n_methods = correct[0].shape[0]
    others = [m for m in range(n_methods) if m != method] if against is None else list(against)
    if not 0 <= method < n_methods or not others or method in others or \
            any(not 0 <= m < n_methods for m in others):
        raise ValueError(f"method == {method!r} and against == {against!r} must be distinct "
                         f"indices of the {n_methods} methods")
    rng = np.random.default_rng(seed)

    def gap(ranks):
        return ranks[..., method] - ranks[..., others].min(-1)

    observed = gap(average_ranks(np.stack([c.mean(1) for c in correct])))
    resampled = np.stack([c[:, rng.integers(0, c.shape[1], (draws, c.shape[1]))].mean(-1).T
                          for c in correct], axis=1)  # (draws, tasks, methods)
    return float(observed), float(gap(average_ranks(resampled)).std(ddof=1))
