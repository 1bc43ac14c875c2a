"""Many copies of one model trained at once, each with its own weights (its own seed), learning
rate or data: one module whose parameters carry a leading copy dimension. For small models a step
costs mostly overhead, so a whole grid of runs costs little more than one.

Two ways to stack copies:
- `Ensemble`: any architecture, run by torch.func.vmap over the stacked parameters; random layers
  (dropout, sampling) draw different noise for every copy.
- `StackedModels`: networks of nn.Linear layers, elementwise modules and scalar parameters, in
  which every nn.Linear becomes a `StackedLinear` (one batched matmul); faster than vmap on a CPU
  for small networks.

And to train them: `MemberAdam` (torch's Adam with one learning rate per copy), `member_batches`
(each copy's minibatches in its own seed's order), `fit_members` (one loop in which a copy whose
loss stops being finite is marked diverged while the others train on) and `member_scores`.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class Ensemble(nn.Module):
    """Copies of one architecture with their own weights, run in one vectorized call
    (torch.func.vmap over their stacked parameters). `ensemble(*inputs)` takes inputs with a
    leading copy dimension and returns outputs with one; `ensemble(*inputs, shared=True)` gives
    every copy the same inputs. Random layers draw different noise in every copy. `members()` gives
    the copies back as ordinary modules.
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        params, buffers = stack_module_state(models)
        # parameter names may not contain dots: "branch.0.weight" is kept as "branch:0:weight"
        self.stacked = nn.ParameterDict({name.replace(".", ":"): nn.Parameter(p)
                                         for name, p in params.items()})
        self.stacked_buffers = buffers
        # plain attributes, not submodules: only the stacked weights are the ensemble's parameters
        object.__setattr__(self, "_models", list(models))
        object.__setattr__(self, "_base", copy.deepcopy(models[0]).to("meta"))

    @classmethod
    def from_seeds(cls, make_model: Callable[[], nn.Module], seeds) -> "Ensemble":
        """One copy per entry of `seeds`, each made by `make_model()` after
        `torch.manual_seed(seed)`: equal seeds give equal starting weights."""
        built = []
        for seed in seeds:
            torch.manual_seed(int(seed))
            built.append(make_model())
        return cls(built)

    def __len__(self) -> int:
        return len(self._models)

    def train(self, mode: bool = True):
        """Train or eval mode for the stack and for the architecture its copies run in."""
        super().train(mode)
        self._base.train(mode)
        return self

    def forward(self, *inputs, shared: bool = False):
        params = {name.replace(":", "."): p for name, p in self.stacked.items()}
        call = lambda p, b, *x: functional_call(self._base, (p, b), x)  # noqa: E731
        in_dims = (0, 0) + ((None if shared else 0),) * len(inputs)
        return vmap(call, in_dims=in_dims, randomness="different")(params, self.stacked_buffers, *inputs)

    @torch.no_grad()
    def members(self) -> list[nn.Module]:
        """The copies with the ensemble's current weights, in eval mode."""
        for e, model in enumerate(self._models):
            for name, p in model.named_parameters():
                p.copy_(self.stacked[name.replace(".", ":")][e])
            model.eval()
        return self._models


class StackedLinear(nn.Module):
    """C linear layers applied side by side by one batched matmul: x (C, ..., d_in) ->
    (C, ..., d_out), with weight (C, d_in, d_out) and bias (C, 1, d_out) or None.
    Introduced in: notebooks/normalizing-flows/variational-inference-with-normalizing-flows.ipynb"""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    @classmethod
    def uniform(cls, copies: int, d_in: int, d_out: int, scale: float = 1.0) -> "StackedLinear":
        """Fresh layers: weights uniform in +-scale / sqrt(d_in) (torch's default range, scaled),
        biases zero."""
        bound = scale / math.sqrt(d_in)
        return cls(torch.empty(copies, d_in, d_out).uniform_(-bound, bound), torch.zeros(copies, 1, d_out))

    def forward(self, x: torch.Tensor, index=None) -> torch.Tensor:
        """All C layers, or with `index` the layers `index` only (x then has len(index) rows)."""
        weight, bias = (self.weight, self.bias) if index is None else (
            self.weight[index], None if self.bias is None else self.bias[index])
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        out = torch.bmm(flat, weight) if bias is None else torch.baddbmm(bias, flat, weight)
        return out.reshape(*x.shape[:-1], out.shape[-1])


class StackedModels(nn.Module):
    """E copies of one architecture with their own weights, run as one module: every nn.Linear
    becomes a StackedLinear, so inputs and outputs carry a leading copy dimension E. Its modules
    must be nn.Linear layers, elementwise ones (activations) and scalar parameters (a DeepONet's
    bias b_0, stacked as (E, 1, 1) to broadcast over (E, B, P) outputs). `members()` gives the
    copies back.
    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb"""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("StackedModels needs at least one model")
        self.template = copy.deepcopy(models[0])
        self._linear, self._scalar = [], []
        for name, module in list(self.template.named_modules()):
            if isinstance(module, nn.Linear):
                layers = [m.get_submodule(name) for m in models]
                w = torch.stack([layer.weight.detach().T for layer in layers])
                b = None if module.bias is None else torch.stack([layer.bias.detach()[None] for layer in layers])
                parent, _, leaf = name.rpartition(".")
                setattr(self.template.get_submodule(parent) if parent else self.template, leaf,
                        StackedLinear(w.clone(), None if b is None else b.clone()))
                self._linear.append(name)
        for name, p in list(self.template.named_parameters()):
            owner, _, leaf = name.rpartition(".")
            if isinstance(self.template.get_submodule(owner) if owner else self.template, StackedLinear):
                continue
            if p.dim() != 0:
                raise ValueError(f"parameter {name} of shape {tuple(p.shape)}: only nn.Linear layers and "
                                 "scalar parameters can be stacked")
            mod = self.template.get_submodule(owner) if owner else self.template
            value = torch.stack([m.get_parameter(name).detach() for m in models]).reshape(-1, 1, 1)
            setattr(mod, leaf, nn.Parameter(value.clone()))
            self._scalar.append(name)
        object.__setattr__(self, "_models", list(models))

    def __len__(self) -> int:
        return len(self._models)

    def forward(self, *inputs):
        return self.template(*inputs)

    @torch.no_grad()
    def members(self) -> list[nn.Module]:
        """The copies as ordinary modules with the stacked weights, in eval mode."""
        for e, model in enumerate(self._models):
            for name in self._linear:
                stacked, layer = self.template.get_submodule(name), model.get_submodule(name)
                layer.weight.copy_(stacked.weight[e].T)
                if layer.bias is not None:
                    layer.bias.copy_(stacked.bias[e, 0])
            for name in self._scalar:
                model.get_parameter(name).copy_(self.template.get_parameter(name)[e, 0, 0])
            model.eval()
        return self._models


class MemberAdam(torch.optim.Adam):
    """torch's Adam with one learning rate per copy of a stack: every parameter's first dimension
    indexes the copies, and copy e moves by lrs[e] times the step Adam takes at learning rate 1
    (Adam's moments do not depend on the learning rate, so this is Adam run at lrs[e] on each copy;
    a scheduler scales all of them alike).
    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb"""

    def __init__(self, params, lrs):
        params = list(params)
        super().__init__(params, lr=1.0)
        self.lrs = torch.as_tensor(lrs, dtype=params[0].dtype, device=params[0].device)
        if not (self.lrs > 0).all():
            raise ValueError(f"lrs == {self.lrs.tolist()}, each must be > 0")

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in params]
        loss = super().step(closure)
        for p, b in zip(params, before):
            p.copy_(b + (p - b) * self.lrs.view(-1, *[1] * (p.dim() - 1)))
        return loss


def member_batches(n: int, batch_size: int, seeds) -> Iterator[torch.Tensor]:
    """Endless (copies, batch_size) index tensors: row i is the minibatch of seed seeds[i] (drawn
    without replacement, reshuffled every epoch), so copies with equal seeds see equal batches.
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


def fit_members(model: nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer, *, steps: int,
                data: Iterator, scheduler=None, callback: Callable | None = None,
                every: int = 1) -> pd.DataFrame:
    """Train every copy of a stack (`len(model)` of them) for `steps` steps on
    `loss_fn(model, batch)` (one loss per copy, shape (copies,)), with `batch = next(data)`;
    `scheduler.step()` after every update (and after the callback, which sees the learning rates
    the update used).

    Returns one row per copy and step: member, step, loss (the minibatch loss of that step, the
    stochastic objective being minimized), diverged, and every `every` steps the per-copy values
    of the dict `callback(step, model)` returns, if given. A copy diverges when its loss, or a
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
        table[key] = values.double().masked_fill(dead, float("nan")).flatten().numpy()
    return pd.DataFrame(table)


def member_scores(history: pd.DataFrame) -> pd.Series:
    """Per copy, the mean of its minibatch losses over the run (the area under its training curve),
    or inf when it diverged at any point.
    Introduced in: notebooks/optimization/adam.ipynb"""
    by = history.groupby("member")
    return by["loss"].mean().where(~by["diverged"].any(), np.inf)
