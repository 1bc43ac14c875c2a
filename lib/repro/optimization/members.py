"""Many training runs in one vectorized loop: a grid of learning rates times a set of seeds.

Comparing optimizers fairly means tuning each one's learning rate on a grid and repeating the
runs over seeds; for small models the cost of a step is mostly overhead, so running the whole
grid as one stack of models costs little more than one run. `Members` stacks copies of a model
(each member with its own initialization, from its own seed) and runs them with
`torch.func.vmap`, dropout and other random layers drawing different noise per member.
`member_batches` gives each member its seed's minibatch order, and `fit_members` trains them
with one optimizer from `adam` (which takes one learning rate per member), recording per member
its minibatch loss at every step and marking a member whose loss stops being finite as diverged
without stopping the others.

Introduced in: notebooks/optimization/adam.ipynb
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call, vmap

from ..core import models


class Members(models.Ensemble):
    """A stack of copies of one architecture, as `models.Ensemble`, whose random layers (dropout,
    sampling) draw different noise for every member. `model(*inputs)` takes inputs with a leading
    member dimension; `model(*inputs, shared=True)` gives every member the same inputs.
    Introduced in: notebooks/optimization/adam.ipynb"""

    @classmethod
    def from_seeds(cls, make_model: Callable[[], torch.nn.Module], seeds) -> "Members":
        """One member per entry of `seeds`, each initialized by `make_model()` after
        `torch.manual_seed(seed)`: equal seeds give equal starting weights."""
        built = []
        for seed in seeds:
            torch.manual_seed(int(seed))
            built.append(make_model())
        return cls(built)

    def train(self, mode: bool = True):
        """Train or eval mode for the stack and for the shared architecture its members run in."""
        super().train(mode)
        self._base.train(mode)
        return self

    def forward(self, *inputs, shared: bool = False):
        params = {name.replace(":", "."): p for name, p in self.stacked.items()}
        call = lambda p, b, *x: functional_call(self._base, (p, b), x)  # noqa: E731
        in_dims = (0, 0) + ((None if shared else 0),) * len(inputs)
        return vmap(call, in_dims=in_dims, randomness="different")(params, self.stacked_buffers, *inputs)


def member_batches(n: int, batch_size: int, seeds) -> Iterator[torch.Tensor]:
    """Endless (members, batch_size) index tensors: row i is the minibatch of seed seeds[i] (drawn
    without replacement, reshuffled every epoch), so members with equal seeds see equal batches.
    Introduced in: notebooks/optimization/adam.ipynb"""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size == {batch_size}, must be in [1, {n}]")
    distinct = sorted(set(int(s) for s in seeds))
    row = torch.tensor([distinct.index(int(s)) for s in seeds])
    gens = [torch.Generator().manual_seed(s) for s in distinct]
    per_epoch = n // batch_size
    while True:
        orders = torch.stack([torch.randperm(n, generator=g) for g in gens])[row]
        for i in range(per_epoch):
            yield orders[:, i * batch_size:(i + 1) * batch_size]


def fit_members(model: Members, loss_fn: Callable, optimizer: torch.optim.Optimizer, *, steps: int,
                data: Iterator, scheduler=None, callback: Callable | None = None,
                every: int = 1) -> pd.DataFrame:
    """Train every member for `steps` steps on `loss_fn(model, batch)` (one loss per member, shape
    (members,)), with `batch = next(data)`; `scheduler.step()` after every update (and after the
    callback, which sees the learning rates the update used).

    Returns one row per member and step: member, step, loss (the minibatch loss of that step, the
    stochastic objective being minimized), diverged, and every `every` steps the per-member values
    of the dict `callback(step, model)` returns, if given. A member diverges when its loss, or a
    value of the callback, is not finite; from then on it is left out of the summed loss, its
    values are nan, and the others train on.
    Introduced in: notebooks/optimization/adam.ipynb"""
    if steps < 1 or every < 1:
        raise ValueError(f"steps == {steps}, every == {every}: both must be >= 1")
    k = len(model)
    alive = torch.ones(k, dtype=torch.bool)
    losses, dead, extras = torch.full((steps, k), float("nan")), torch.ones(steps, k, dtype=torch.bool), {}
    model.train()
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, next(data))
        alive &= torch.isfinite(loss.detach()).cpu()
        if not alive.any():
            break
        torch.where(alive.to(loss.device), loss, torch.zeros_like(loss)).sum().backward()
        optimizer.step()
        if callback is not None and (step % every == 0 or step == steps):
            for key, value in callback(step, model).items():
                value = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
                alive &= torch.isfinite(value)
                column = extras.setdefault(key, torch.full((steps, k), float("nan"), dtype=torch.float64))
                column[step - 1] = value
        if scheduler is not None:
            scheduler.step()
        losses[step - 1] = loss.detach().cpu()
        dead[step - 1] = ~alive
    model.eval()
    table = {"member": np.tile(np.arange(k), steps), "step": np.repeat(np.arange(1, steps + 1), k),
             "diverged": dead.flatten().numpy()}
    for key, values in {"loss": losses, **extras}.items():
        values = values.double().masked_fill(dead, float("nan")).flatten().numpy()
        table[key] = values
    return pd.DataFrame(table)


def member_scores(history: pd.DataFrame) -> pd.Series:
    """Per member, the mean of its minibatch losses over the run (the area under its training curve),
    or inf when it diverged at any point.
    Introduced in: notebooks/optimization/adam.ipynb"""
    by = history.groupby("member")
    return by["loss"].mean().where(~by["diverged"].any(), np.inf)
