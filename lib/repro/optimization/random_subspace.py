"""Training in a random subspace of parameter space (Li, Farkhoor, Liu & Yosinski, 2018).

A model with D parameters is trained through d << D coordinates only:
theta = theta_0 + P theta_d, with theta_0 the model's frozen random initialization and P a fixed
random D x d projection. `SubspaceModel` wraps any `nn.Module` without changing its code (the
parameters are swapped in with `torch.func.functional_call`); `intrinsic_dimension` reads the
smallest d that reaches 90% of the full model's performance off a curve of (d, performance).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from ..core.validation import check_int

PROJECTIONS = ("dense", "sparse")


def dense_projection(D: int, d: int, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A D x d matrix of i.i.d. N(0, 1) entries with every column scaled to unit norm: the paper's
    dense projection, whose columns are nearly orthogonal when D is large (Sec. 2).

    Introduced in: notebooks/optimization/measuring-the-intrinsic-dimension-of-objective.ipynb
    """
    check_int("D", D)
    check_int("d", d)
    P = torch.randn(D, d, generator=generator, dtype=dtype)
    return P / P.norm(dim=0, keepdim=True)


def sparse_projection(D: int, d: int, density: float | None = None,
                      generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A sparse D x d matrix (torch COO) with random +-1 entries at a fraction `density` of the
    positions (default 1/sqrt(D), the very sparse projections of Li, Hastie & Church 2006 that the
    paper uses for large D), every column scaled to unit norm; an empty column gets one entry.

    Introduced in: notebooks/optimization/measuring-the-intrinsic-dimension-of-objective.ipynb
    """
    check_int("D", D)
    check_int("d", d)
    density = 1 / math.sqrt(D) if density is None else density
    if not 0 < density <= 1:
        raise ValueError(f"density == {density}, must be in (0, 1]")
    n = max(1, round(density * D * d))
    flat = torch.randint(D * d, (n,), generator=generator).unique()  # duplicates dropped
    rows, cols = flat // d, flat % d
    empty = torch.ones(d, dtype=torch.bool)
    empty[cols] = False
    if empty.any():  # every coordinate must move theta: give an empty column one entry
        extra = torch.nonzero(empty).flatten()
        rows = torch.cat([rows, torch.randint(D, (len(extra),), generator=generator)])
        cols = torch.cat([cols, extra])
    signs = torch.randint(2, (len(rows),), generator=generator).to(dtype) * 2 - 1
    counts = torch.bincount(cols, minlength=d).to(dtype)
    values = signs / counts.sqrt()[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (D, d),
                                   check_invariants=False).coalesce()


class SubspaceModel(nn.Module):
    """`base` trained only through d coordinates: theta = theta_0 + P theta_d (the paper's Eq. 2).

    theta_0 is a frozen copy of `base`'s parameters at construction (its random initialization);
    P is 'dense' (unit-norm Gaussian columns), 'sparse' (see `sparse_projection`) or a given D x d
    tensor; theta_d starts at zero, so the wrapped model starts as `base`. The base model's own
    parameters are frozen (requires_grad False) and left unchanged; its buffers (batch-norm
    statistics) are used as they are. `seed` draws P (None: the global torch generator).

    Introduced in: notebooks/optimization/measuring-the-intrinsic-dimension-of-objective.ipynb
    """

    def __init__(self, base: nn.Module, d: int | None = None, projection="dense",
                 seed: int | None = None, density: float | None = None):
        super().__init__()
        if not isinstance(base, nn.Module):
            raise TypeError(f"base must be an nn.Module, not {type(base).__name__}")
        named = [(n, p) for n, p in base.named_parameters()]
        if not named:
            raise ValueError(f"{type(base).__name__} has no parameters to project")
        self.base = base
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        for _, p in named:
            p.requires_grad_(False)
        theta_0 = torch.cat([p.detach().flatten() for _, p in named])
        D = theta_0.numel()
        device, dtype = theta_0.device, theta_0.dtype
        if isinstance(projection, torch.Tensor):
            if projection.dim() != 2 or projection.shape[0] != D:
                raise ValueError(f"projection of shape {tuple(projection.shape)}: must be "
                                 f"(D, d) with D == {D} parameters")
            if d is not None and projection.shape[1] != d:
                raise ValueError(f"d == {d} but the projection has {projection.shape[1]} columns")
            P = projection.to(device=device, dtype=dtype)
        elif projection in PROJECTIONS:
            if d is None:
                raise ValueError("give d, the subspace dimension, with a random projection")
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            P = (dense_projection(D, d, gen, dtype) if projection == "dense"
                 else sparse_projection(D, d, density, gen, dtype)).to(device)
        else:
            raise ValueError(f"projection == {projection!r}, must be one of "
                             f"{', '.join(map(repr, PROJECTIONS))} or a (D, d) tensor")
        self.register_buffer("theta_0", theta_0)
        if P.is_sparse:  # kept as (row, column, value) triplets: a gather and an index_add are
            P = P.coalesce()  # several times faster than torch.sparse.mm on the CPU
            self.register_buffer("P_indices", P.indices())
            self.register_buffer("P_values", P.values())
            self.P_dense = None
        else:
            self.register_buffer("P_dense", P)
        self.theta_d = nn.Parameter(torch.zeros(P.shape[1], device=device, dtype=dtype))

    @property
    def D(self) -> int:
        """The number of parameters of the base model (the native dimension)."""
        return self.theta_0.numel()

    @property
    def d(self) -> int:
        """The dimension of the subspace, the number of trained coordinates."""
        return self.theta_d.numel()

    @property
    def P(self) -> torch.Tensor:
        """The projection, shape (D, d): a dense tensor, or a sparse COO one."""
        if self.P_dense is not None:
            return self.P_dense
        return torch.sparse_coo_tensor(self.P_indices, self.P_values, (self.D, self.d),
                                       check_invariants=False)

    def theta(self) -> torch.Tensor:
        """The full parameter vector theta_0 + P theta_d, shape (D,)."""
        if self.P_dense is not None:
            return self.theta_0 + self.P_dense @ self.theta_d
        rows, cols = self.P_indices
        return self.theta_0.index_add(0, rows, self.P_values * self.theta_d[cols])

    def parameters_dict(self) -> dict:
        """theta cut into the base model's named parameter tensors."""
        pieces = self.theta().split(self.sizes)
        return {n: t.view(s) for n, t, s in zip(self.names, pieces, self.shapes)}

    def forward(self, *args, **kwargs):
        return functional_call(self.base, self.parameters_dict(), args, kwargs)


def intrinsic_dimension(dims, performance, baseline: float, fraction: float = 0.9,
                        interpolate: bool = False) -> float:
    """d_int90: the smallest tested d whose performance reaches `fraction` (0.9) of the baseline,
    the performance of the model trained in its full parameter space (Sec. 2). Several runs at the
    same d are averaged first. With `interpolate`, the crossing is placed between that d and the
    tested d before it, linearly in log d, so a coarse grid does not round it up to a grid point.
    Returns math.inf when no tested d reaches it.

    Introduced in: notebooks/optimization/measuring-the-intrinsic-dimension-of-objective.ipynb
    """
    dims, performance = list(dims), [float(p) for p in performance]
    if not dims:
        raise ValueError("dims is empty: give at least one (d, performance) pair")
    if len(dims) != len(performance):
        raise ValueError(f"dims has {len(dims)} entries and performance {len(performance)}; "
                         "they must match")
    if any(isinstance(d, bool) or not float(d).is_integer() or d < 0 for d in dims):
        raise ValueError(f"dims == {dims}: every d must be a non-negative integer")
    if not all(math.isfinite(p) for p in performance):
        raise ValueError(f"performance == {performance}: every value must be finite")
    if not (math.isfinite(baseline) and baseline > 0):
        raise ValueError(f"baseline == {baseline}, must be a finite number > 0")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction == {fraction}, must be in (0, 1]")
    runs: dict[int, list[float]] = {}
    for d, p in zip(dims, performance):
        runs.setdefault(int(d), []).append(p)
    curve = [(d, sum(runs[d]) / len(runs[d])) for d in sorted(runs)]
    target = fraction * baseline
    for i, (d, p) in enumerate(curve):
        if p >= target:
            if not interpolate or i == 0 or curve[i - 1][0] == 0:
                return d
            (d0, p0) = curve[i - 1]
            t = (target - p0) / (p - p0)   # p0 < target <= p, so t in (0, 1]
            return math.exp(math.log(d0) + t * (math.log(d) - math.log(d0)))
    return math.inf


def l2_penalty(model: nn.Module, weight_decay: float) -> torch.Tensor:
    """weight_decay x the sum of squares of every weight matrix or kernel (tensors of 2 or more
    dimensions; biases are left out), the Keras `kernel_regularizer=l2(...)` term that the authors'
    scripts add to the loss. For a `SubspaceModel` it is taken on the full parameters
    theta_0 + P theta_d, so it reaches theta_d through P.

    Introduced in: notebooks/optimization/measuring-the-intrinsic-dimension-of-objective.ipynb
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay == {weight_decay}, must be >= 0")
    tensors = (model.parameters_dict().values() if isinstance(model, SubspaceModel)
               else model.parameters())
    return weight_decay * sum((t ** 2).sum() for t in tensors if t.dim() >= 2)


def bootstrap_intrinsic_dimension(dims, accuracy, baselines, fraction: float = 0.9,
                                  n_boot: int = 200, seed: int = 0, interpolate: bool = True):
    """d_int90 from `accuracy`, shape (runs, len(dims)): run k trained at every d of `dims`, and
    `baselines`, shape (runs,): run k's full-space accuracy. The estimate averages all runs (as
    `intrinsic_dimension`); its standard error is the spread of the estimate over `n_boot` bootstrap
    resamples of the runs (curve and baseline resampled together). Returns (estimate, se); se is
    math.inf when some resample never reaches the threshold.

    Introduced in: notebooks/optimization/measuring-the-intrinsic-dimension-of-objective.ipynb
    """
    acc = torch.as_tensor(accuracy, dtype=torch.float64)
    base = torch.as_tensor(baselines, dtype=torch.float64).flatten()
    dims = list(dims)
    if acc.dim() != 2 or acc.shape != (len(base), len(dims)):
        raise ValueError(f"accuracy of shape {tuple(acc.shape)}: must be (runs, dims) == "
                         f"({len(base)}, {len(dims)})")
    check_int("n_boot", n_boot)

    def estimate(rows):
        return intrinsic_dimension(dims, acc[rows].mean(0).tolist(), base[rows].mean().item(),
                                   fraction, interpolate=interpolate)

    runs = len(base)
    gen = torch.Generator().manual_seed(seed)
    samples = [estimate(torch.randint(runs, (runs,), generator=gen)) for _ in range(n_boot)]
    if not all(math.isfinite(s) for s in samples):
        return estimate(torch.arange(runs)), math.inf
    mean = sum(samples) / n_boot
    se = math.sqrt(sum((s - mean) ** 2 for s in samples) / (n_boot - 1)) if n_boot > 1 else 0.0
    return estimate(torch.arange(runs)), se
