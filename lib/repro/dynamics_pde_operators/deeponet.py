"""DeepONet (Lu, Jin & Karniadakis, arXiv 1910.03193): the unstacked DeepONet, its fully connected
baseline, their test error, and a trainer that runs many copies of one network at once (different
training sets, learning rates or input functions) for learning curves and learning-rate grids.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core import activations, train
from ..core.models import MLP
from ..core.stacked import MemberAdam, StackedModels
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
