"""A two-task continual setting on the digits, and measures of the solution a network ends in.

`permuted_digits_task(switch)`: the benchmark's mlp (2 hidden layers of 64) trained on sklearn's
digits for `switch` steps (task A), then on the same digits with their 64 pixels shuffled by one
fixed permutation (task B, the permuted-MNIST protocol at 8x8), with no replay and one shared
10-way read-out. Its `evaluate` reports on the held-out quarter:

- eval_loss, eval_accuracy: task B (the task being learned at the end; `benchmark.compare` tunes
  each optimizer's rate on this final eval_loss, so no optimizer is tuned for retention);
- loss_a, accuracy_a: task A (forgetting is accuracy_a at the switch minus accuracy_a at the end);
- rank_a, cosine_a: `effective_rank` and `class_mean_cosine` of the last hidden layer's features
  on task A's held-out images.

Introduced in: notebooks/optimization/optimizers-qualitatively-alter-solutions-and-we.ipynb
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..core import train
from ..core.data import sklearn_dataset
from ..core.models import MLP
from ..core.validation import check_int
from .benchmark import Task


def effective_rank(features: torch.Tensor) -> float:
    """Roy & Vetterli's effective rank of the centered (n, d) feature matrix: exp of the entropy of
    its singular values normalized to sum 1; between 1 (one direction) and min(n, d) (all equal).
    """
    s = torch.linalg.svdvals(features - features.mean(0))
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def class_mean_cosine(features: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean cosine similarity between the (uncentered) mean features of every pair of distinct
    classes: near 1 when all classes share one direction, lower when they use separate units."""
    classes = labels.unique()
    means = torch.stack([features[labels == c].mean(0) for c in classes])
    unit = F.normalize(means, dim=1)
    cos = unit @ unit.T
    k = len(classes)
    return float((cos.sum() - cos.diagonal().sum()) / (k * (k - 1)))


def penultimate(model, x: torch.Tensor) -> torch.Tensor:
    """The last hidden layer's output of a `repro.core.models.MLP` (every layer but the read-out)."""
    return model.net[:-1](x)


def permuted_digits_task(switch: int = 100, steps: int | None = None, width: int = 64,
                         depth: int = 2, permutation_seed: int = 0) -> Task:
    """Task A (digits) for `switch` steps, then task B (pixels permuted) until `steps` (default
    2 x switch), batch 64, the benchmark's mlp; see the module docstring for what it evaluates.
    Introduced in: notebooks/optimization/optimizers-qualitatively-alter-solutions-and-we.ipynb"""
    check_int("switch", switch)
    steps = 2 * switch if steps is None else check_int("steps", steps)
    if steps <= switch:
        raise ValueError(f"steps == {steps} must exceed switch == {switch}: task B needs steps")
    split = sklearn_dataset("digits")
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(permutation_seed))
    train_a, test_a = split.x_train, split.x_test
    train_b, test_b = train_a[:, perm], test_a[:, perm]

    def batches(seed):
        a = train.batches(train_a, split.y_train, batch_size=64, seed=seed)
        b = train.batches(train_b, split.y_train, batch_size=64, seed=seed + 1)
        for _ in range(switch):
            yield next(a)
        yield from b

    def evaluate(model):
        with train.evaluating(model), torch.no_grad():
            logits_a, logits_b = model(test_a), model(test_b)
            h = penultimate(model, test_a)
        y = split.y_test
        return {"eval_loss": F.cross_entropy(logits_b, y).item(),
                "eval_accuracy": (logits_b.argmax(-1) == y).float().mean().item(),
                "loss_a": F.cross_entropy(logits_a, y).item(),
                "accuracy_a": (logits_a.argmax(-1) == y).float().mean().item(),
                "rank_a": effective_rank(h), "cosine_a": class_mean_cosine(h, y)}

    return Task("permuted-digits", lambda: MLP(64, 10, width=width, depth=depth), batches,
                loss=train.cross_entropy, evaluate=evaluate, steps=steps)
