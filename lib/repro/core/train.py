"""One training loop for every notebook: a loss function, an optimizer, a number of steps."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

import pandas as pd
import torch
from tqdm import tqdm

QUIET_ENV = "REPRO_QUIET"


def quiet() -> bool:
    """Progress bars stay off in CI and in runs executed by the `repro` command line."""
    return bool(os.environ.get("CI") or os.environ.get(QUIET_ENV))


def progress(iterable, **kw):
    """tqdm, silent when `quiet()`."""
    return tqdm(iterable, disable=quiet(), file=sys.stderr, leave=False, **kw)


def batches(*tensors: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[tuple]:
    """Endless minibatches drawn without replacement, reshuffled every epoch by a seeded generator."""
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors have different lengths: {[len(t) for t in tensors]}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size == {batch_size}, must be in [1, {n}]")
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = order[i:i + batch_size].to(tensors[0].device)
            yield tuple(t[idx] for t in tensors)


def cross_entropy(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def fit(model: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer, *,
        steps: int, data: Iterator | None = None, record_every: int = 1,
        scheduler=None, callback: Callable | None = None, desc: str | None = None) -> pd.DataFrame:
    """Take `steps` optimizer steps on `loss_fn(model, batch)` and return the loss curve.

    `data` yields one batch per step (None: the loss draws its own samples, as in variational
    inference; any per-step input, such as an annealing temperature, can come through `data`).
    `scheduler`, a torch learning-rate scheduler, steps after every update.
    `callback(step, model)` may return a dict of extra values to record.
    Introduced in: notebooks/normalization/weight-normalization.ipynb
    """
    if steps < 1:
        raise ValueError(f"steps == {steps}, must be >= 1")
    model.train()
    rows = []
    for step in progress(range(1, steps + 1), desc=desc):
        batch = next(data) if data is not None else None
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}")
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if step % record_every == 0 or step == steps:
            row = {"step": step, "loss": loss.item()}
            if callback is not None:
                row.update(callback(step, model) or {})
            rows.append(row)
    model.eval()
    return pd.DataFrame(rows)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """Eval mode and no gradients inside the block; the model's previous mode afterwards, so a
    callback can evaluate in the middle of training without switching dropout or batch norm off."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with evaluating(model):
        return (model(x).argmax(-1) == y).float().mean().item()


def mean_loss(model, loss_fn, x, y) -> float:
    with evaluating(model):
        return loss_fn(model, (x, y)).item()
