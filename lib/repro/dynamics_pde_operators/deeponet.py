"""DeepONet (Lu, Jin & Karniadakis, arXiv 1910.03193): the unstacked DeepONet, its fully connected
baseline, their test error, and a trainer that runs many copies of one network at once (different
training sets, learning rates or input functions) for learning curves and learning-rate grids.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..core import activations, train
from ..core.models import MLP
from .operator_data import OperatorData


class DeepONet(nn.Module):
    """The unstacked DeepONet: G(u)(y) = sum_k b_k(u) t_k(y) + b_0, with one branch net b (u at the
    m sensors -> p outputs, linear read-out) and one trunk net t (y -> p outputs, activation on its
    last layer too), both `repro.core.models.MLP`s with `depth` hidden layers of `width` units.
    forward(u (..., m), y (..., P)) -> (..., P); the leading dimensions are any batch shape.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """

    def __init__(self, m: int, p: int = 40, width: int = 40, depth: int = 1, d_y: int = 1,
                 activation: str = "relu", bias: bool = True, init: str = "xavier"):
        super().__init__()
        if p < 1:
            raise ValueError(f"p == {p}, must be >= 1")
        self.branch = MLP(m, p, width=width, depth=depth, activation=activation, init=init)
        self.trunk = nn.Sequential(MLP(d_y, p, width=width, depth=depth, activation=activation,
                                       init=init), activations.get(activation).module())
        self.b0 = nn.Parameter(torch.zeros(())) if bias else None
        self.m, self.d_y = m, d_y

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if u.dim() < 2 or u.shape[-1] != self.m:
            raise ValueError(f"u has shape {tuple(u.shape)}; it must be (..., B, m) with m = {self.m}")
        if self.d_y == 1 and y.dim() == u.dim():
            y = y.unsqueeze(-1)                               # (..., P, 1)
        b, t = self.branch(u), self.trunk(y)                  # (..., p), (..., P, p)
        out = torch.einsum("...k,...pk->...p", b, t)
        return out + self.b0 if self.b0 is not None else out


class FNNOperator(nn.Module):
    """The paper's baseline: one fully connected net on the concatenation [u(x_1..x_m), y], with the
    same forward(u (..., m), y (..., P)) -> (..., P) as DeepONet.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """

    def __init__(self, m: int, width: int = 100, depth: int = 2, activation: str = "relu",
                 init: str = "xavier"):
        super().__init__()
        self.net = MLP(m + 1, 1, width=width, depth=depth, activation=activation, init=init)
        self.m = m

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if u.dim() < 2 or u.shape[-1] != self.m:
            raise ValueError(f"u has shape {tuple(u.shape)}; it must be (..., B, m) with m = {self.m}")
        u_rep = u.unsqueeze(-2).expand(*u.shape[:-1], y.shape[-1], self.m)     # (..., P, m)
        return self.net(torch.cat([u_rep, y.unsqueeze(-1)], dim=-1)).squeeze(-1)


class _StackedLinear(nn.Module):
    """E linear layers applied at once: x (E, ..., d_in) -> (E, ..., d_out) by one batched matmul."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight = nn.Parameter(weight)                        # (E, d_in, d_out)
        self.bias = None if bias is None else nn.Parameter(bias)  # (E, 1, d_out)

    def forward(self, x):
        e, d_in = x.shape[0], x.shape[-1]
        flat = x.reshape(e, -1, d_in)
        out = torch.bmm(flat, self.weight) if self.bias is None else torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*x.shape[:-1], out.shape[-1])


class StackedModels(nn.Module):
    """E copies of one architecture with their own weights, run as one module: every nn.Linear
    becomes a batched matmul over the copies, so inputs and outputs carry a leading copy dimension
    E. Its modules must be nn.Linear layers, elementwise ones (activations) and scalar parameters
    (a DeepONet's bias b_0, stacked as (E, 1, 1) to broadcast over (E, B, P) outputs); faster on
    a CPU than torch.func.vmap for small networks. `members()` gives the copies back.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """

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
                        _StackedLinear(w.clone(), None if b is None else b.clone()))
                self._linear.append(name)
        for name, p in list(self.template.named_parameters()):
            owner, _, leaf = name.rpartition(".")
            if isinstance(self.template.get_submodule(owner) if owner else self.template, _StackedLinear):
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
    """Adam with one learning rate per copy of a StackedModels: every parameter's first dimension
    indexes the copies, and copy e moves by lrs[e] times the step Adam takes at learning rate 1
    (Adam's moments do not depend on the learning rate, so this is Adam run at lrs[e] on each copy;
    a scheduler scales all of them alike). Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb"""

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


@torch.no_grad()
def squared_errors(model: nn.Module, data: OperatorData, chunk: int = 4096) -> torch.Tensor:
    """The squared error of `model` on every triple of `data`, shape (n, P), in eval mode.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    was_training = model.training
    model.eval()
    errors = torch.cat([(model(data.u[i:i + chunk], data.y[i:i + chunk]) - data.s[i:i + chunk]) ** 2
                        for i in range(0, len(data), chunk)])
    model.train(was_training)
    return errors


@torch.no_grad()
def mse(model: nn.Module, data: OperatorData, trim: float = 0.0, chunk: int = 4096) -> float:
    """The mean squared error of `model` on a whole data set, in eval mode, in chunks of functions;
    `trim` > 0 drops that fraction of the largest squared errors first (the authors' code reports
    the test MSE without its largest 0.1%, `trim=0.001`, as outliers).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    if not 0 <= trim < 1:
        raise ValueError(f"trim == {trim}, must be in [0, 1)")
    errors = squared_errors(model, data, chunk).flatten()
    keep = len(errors) - int(trim * len(errors))
    return errors.sort().values[:keep].mean().item()


def fit_sizes(make_model: Callable[[], nn.Module], data: OperatorData, sizes, *, steps: int,
              batch_size: int, lr, seed: int = 0, starts=None, record_every: int = 100) -> tuple:
    """Train one model per entry of `sizes`, all at once as a StackedModels: model e sees the
    functions starts[e] .. starts[e] + sizes[e] - 1 of `data` (starts default to 0: nested training
    sets for a learning curve; other starts let copies train on other problems or inputs stored in
    the same data set) at the learning rate lr (one number, or one per model). Each model starts
    from `make_model()` under torch.manual_seed(seed) and takes `steps` Adam steps on the MSE, the
    learning rate decaying to 0 on a cosine; a step uses `batch_size` of its functions drawn
    without replacement (all of them when it has fewer), from a generator seeded with `seed`, so a
    model's run does not depend on the others. A copy whose loss stops being finite (its weights blew
    up) drops out of the summed loss and the others go on; its errors are then not finite, which
    `repro.core.tuning.tune` counts as diverged. Returns (models in eval mode,
    the summed loss every `record_every` steps).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    sizes = [int(n) for n in sizes]
    starts = [0] * len(sizes) if starts is None else [int(s) for s in starts]
    lrs = [float(lr)] * len(sizes) if isinstance(lr, (int, float)) else [float(v) for v in lr]
    if len(starts) != len(sizes) or len(lrs) != len(sizes):
        raise ValueError(f"{len(sizes)} sizes, {len(starts)} starts and {len(lrs)} learning rates: "
                         "give one of each per model")
    if not sizes or min(sizes) < 1 or min(starts) < 0 or max(s + n for s, n in zip(starts, sizes)) > len(data):
        raise ValueError(f"sizes == {sizes} from starts == {starts}: each model's functions must lie in "
                         f"[0, {len(data)}) (the functions in data), at least one each")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps == {steps} and batch_size == {batch_size}, both must be >= 1")
    models = []
    for _ in sizes:
        torch.manual_seed(seed)
        models.append(make_model().to(data.u.device))
    stack = StackedModels(models)
    b = min(batch_size, max(sizes))
    weight = (torch.arange(b)[None, :] < torch.tensor(sizes)[:, None]).to(data.s)  # (E, B): 0 = padding
    offset = torch.tensor(starts)[:, None]

    def batches():  # (E, B) function indices; each model draws from its own functions
        gens = [torch.Generator().manual_seed(seed) for _ in sizes]
        while True:
            idx = torch.zeros(len(sizes), b, dtype=torch.long)
            for e, (n, gen) in enumerate(zip(sizes, gens)):
                pick = torch.randperm(n, generator=gen)[:b]
                idx[e, :len(pick)] = pick
            yield (idx + offset).to(data.u.device)

    def loss(net, idx):  # the models' mean squared errors, summed: their gradients stay separate
        pred = net(data.u[idx], data.y[idx])                                   # (E, B, P)
        each = (((pred - data.s[idx]) ** 2).mean(-1) * weight).sum(-1) / weight.sum(-1)  # (E,)
        return torch.where(torch.isfinite(each), each, 0.0).sum()             # diverged copies drop out

    opt = MemberAdam(stack.parameters(), lrs)
    history = train.fit(stack, loss, opt, steps=steps, data=batches(), record_every=record_every,
                        scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps))
    return stack.members(), history
