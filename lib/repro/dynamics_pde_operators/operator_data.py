"""Data for operator learning: Gaussian random fields as input functions, operator data sets from
ODEs solved accurately (the antiderivative and ds/dx = -s^2 + u of the DeepONet paper), and the
error kappa of knowing an input function only at m sensors.

A data set holds triples (u at m sensors, query point y, G(u)(y)), stored per input function:
`u` is (n, m), `y` and `s` are (n, P) for P query points per function.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch

from ..core.validation import check_choice, check_int


def rbf_kernel(x1: torch.Tensor, x2: torch.Tensor, length_scale: float) -> torch.Tensor:
    """The squared-exponential kernel k(x, x') = exp(-|x - x'|^2 / (2 l^2)) between two sets of 1-D
    points, shape (len(x1), len(x2)).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    if not length_scale > 0:
        raise ValueError(f"length_scale == {length_scale}, must be > 0")
    d = x1.reshape(-1, 1) - x2.reshape(1, -1)
    return torch.exp(-0.5 * (d / length_scale) ** 2)


def sample_grf(x: torch.Tensor, n: int, length_scale: float, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """`n` exact draws of the zero-mean Gaussian random field with the RBF kernel at the points `x`,
    shape (n, len(x)), float64: u = V sqrt(Lambda) z from the eigendecomposition K = V Lambda V^T
    (negative round-off eigenvalues set to 0; the RBF matrix is too ill-conditioned for Cholesky
    without jitter). `generator` None draws from torch's global seed.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    check_int("n", n)
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    lam, vec = torch.linalg.eigh(rbf_kernel(x, x, length_scale))
    root = vec * lam.clamp(min=0).sqrt()                      # (N, N): K = root root^T
    z = torch.randn(len(x), n, generator=generator, dtype=torch.float64)
    return (root @ z).T                                       # (n, N)


def interp_linear(x_known: torch.Tensor, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of each row of `values` (n, k), known at the increasing points
    `x_known` (k,), at the points `x` (inside [x_known[0], x_known[-1]]); shape (n, len(x)).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    if x.min() < x_known[0] or x.max() > x_known[-1]:
        raise ValueError(f"points in [{x.min():.4g}, {x.max():.4g}] fall outside the known range "
                         f"[{x_known[0]:.4g}, {x_known[-1]:.4g}]; no extrapolation")
    j = torch.searchsorted(x_known, x, right=True).clamp(1, len(x_known) - 1)
    x0, x1 = x_known[j - 1], x_known[j]
    w = (x - x0) / (x1 - x0)                                  # (len(x),)
    return values[:, j - 1] * (1 - w) + values[:, j] * w


def rk4(g: Callable, u: torch.Tensor, x: torch.Tensor, s0: float = 0.0) -> tuple:
    """Solve ds/dx = g(s, u(x), x), s(x[0]) = s0 for every row of `u` (n, 2K+1), given on the uniform
    grid `x` of 2K+1 points, by classical Runge-Kutta with step 2 (x[1] - x[0]): the half steps fall
    on the odd grid points, so u is never interpolated. Returns (x[::2], s) with s of shape (n, K+1);
    the error is O(step^4).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    if u.dim() != 2 or u.shape[1] != len(x):
        raise ValueError(f"u has shape {tuple(u.shape)}; it must be (n, len(x)) = (n, {len(x)})")
    if len(x) < 3 or len(x) % 2 == 0:
        raise ValueError(f"the grid has {len(x)} points; it must be an odd number >= 3")
    h = 2 * (x[1] - x[0])
    s = torch.full((u.shape[0],), float(s0), dtype=u.dtype, device=u.device)
    out = [s]
    for i in range(0, len(x) - 1, 2):
        xi, xm, u0, um, u1 = x[i], x[i + 1], u[:, i], u[:, i + 1], u[:, i + 2]
        k1 = g(s, u0, xi)
        k2 = g(s + h / 2 * k1, um, xm)
        k3 = g(s + h / 2 * k2, um, xm)
        k4 = g(s + h * k3, u1, x[i + 2])
        s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(s)
    return x[::2], torch.stack(out, dim=1)


def antiderivative_rhs(s, u, x):
    """g(s, u, x) = u: the ODE ds/dx = u(x), s(0) = 0, whose solution is the antiderivative (RK4 on
    it is Simpson's rule, exact for cubics).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    return u


def nonlinear_ode_rhs(s, u, x):
    """g(s, u, x) = -s^2 + u, the nonlinear ODE ds/dx = -s(x)^2 + u(x) of the DeepONet paper.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    return -s ** 2 + u


PROBLEMS = {"antiderivative": antiderivative_rhs, "nonlinear-ode": nonlinear_ode_rhs}


@dataclass
class OperatorData:
    """Operator data: the sensors (m,), u at the sensors (n, m), query points y (n, P) and G(u)(y)
    (n, P). Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb"""

    sensors: torch.Tensor
    u: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor

    def __len__(self):
        return self.u.shape[0]

    @property
    def n_triples(self) -> int:
        return self.s.numel()

    def to(self, device=None, dtype=torch.float32) -> "OperatorData":
        """All tensors on `device` as `dtype` (float32 by default, for training)."""
        return OperatorData(*(getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)))

    def subset(self, n: int) -> "OperatorData":
        """The first `n` input functions (nested training sets for a learning curve)."""
        if not 1 <= n <= len(self):
            raise ValueError(f"n == {n}, must be in [1, {len(self)}]")
        return OperatorData(self.sensors, self.u[:n], self.y[:n], self.s[:n])


def operator_data(problem, n_functions: int, m: int = 100, length_scale: float = 0.2, *,
                  points_per_function: int | None = 1, refine: int = 4,
                  reject_above: float | None = None, generator: torch.Generator | None = None) -> OperatorData:
    """Sample `n_functions` inputs u from the GRF on [0, 1], keep them at m equispaced sensors, and
    solve ds/dx = g(s, u, x), s(0) = 0 by RK4 on a grid `refine` times finer than the sensors'
    (step 1 / ((m - 1) refine)). `problem` is 'antiderivative', 'nonlinear-ode' or a function g.
    Each function gets `points_per_function` query points y drawn uniformly from that grid (the
    paper uses one random point per function), or all of it when None. float64 throughout.
    A solution that is not finite (ds/dx = -s^2 + u can blow up in finite x) or, with
    `reject_above`, leaves [-reject_above, reject_above] is discarded and redrawn, so u is then drawn
    from the GRF conditioned on a bounded solution.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    if isinstance(problem, str):
        check_choice("problem", problem, tuple(PROBLEMS))
        problem = PROBLEMS[problem]
    check_int("m", m, 2)  # sensors at both ends of [0, 1]
    check_int("refine", refine)
    if reject_above is not None and not reject_above > 0:
        raise ValueError(f"reject_above == {reject_above}, must be > 0 or None")
    k = (m - 1) * refine                                      # RK4 steps; the grid has 2k + 1 points
    x_fine = torch.linspace(0, 1, 2 * k + 1, dtype=torch.float64)
    u_parts, s_parts, kept = [], [], 0
    while kept < n_functions:                                 # one pass unless solutions are rejected
        u_new = sample_grf(x_fine, n_functions, length_scale, generator=generator)
        x_grid, s_new = rk4(problem, u_new, x_fine)          # (k + 1,), (n, k + 1)
        ok = torch.isfinite(s_new).all(dim=1)
        if reject_above is not None:
            ok &= s_new.abs().amax(dim=1) <= reject_above
        u_parts.append(u_new[ok])
        s_parts.append(s_new[ok])
        kept += int(ok.sum())
        if not ok.any():
            raise RuntimeError("every sampled solution blew up or exceeded reject_above")
    u_fine, s_grid = torch.cat(u_parts)[:n_functions], torch.cat(s_parts)[:n_functions]
    u = u_fine[:, ::2 * refine]                               # (n, m): the sensors are x_grid[::refine]
    if points_per_function is None:
        idx = torch.arange(k + 1).expand(n_functions, -1)
    else:
        check_int("points_per_function", points_per_function)
        idx = torch.randint(0, k + 1, (n_functions, points_per_function), generator=generator)
    return OperatorData(x_grid[::refine].contiguous(), u, x_grid[idx], torch.gather(s_grid, 1, idx))


def kappa(u_fine: torch.Tensor, x_fine: torch.Tensor, m: int, reduce: str = "max") -> torch.Tensor:
    """kappa(m) of the paper's sensor analysis for each function: max_x |u(x) - u_m(x)|, u_m the
    piecewise-linear interpolant of u from m equispaced sensors (`reduce="rms"`: the root mean
    square over x instead of the max); `u_fine` (n, N) on the uniform grid `x_fine` whose every
    ((N-1)/(m-1))-th point is a sensor. Shape (n,).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    check_choice("reduce", reduce, ("max", "rms"))
    step = (len(x_fine) - 1) / (m - 1)
    if step != int(step):
        raise ValueError(f"a grid of {len(x_fine)} points does not contain {m} equispaced sensors")
    idx = torch.arange(0, len(x_fine), int(step))
    err = u_fine - interp_linear(x_fine[idx], u_fine[:, idx], x_fine)
    return err.abs().amax(dim=1) if reduce == "max" else err.pow(2).mean(dim=1).sqrt()


def fewer_sensors(data: OperatorData, m: int) -> OperatorData:
    """The same data seen through only `m` of its equispaced sensors: u is replaced by u_m, its
    piecewise-linear interpolant from every ((M - 1)/(m - 1))-th of the M sensors, evaluated back at
    all M of them (y and G(u)(y) unchanged). A model reading these M numbers knows exactly what it
    would know from the m sensor values, since u_m is a fixed linear map of them.

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    check_int("m", m, 2)
    big = len(data.sensors)
    step = (big - 1) / (m - 1)
    if step != int(step):
        raise ValueError(f"{big} equispaced sensors do not contain {m} equispaced sensors")
    idx = torch.arange(0, big, int(step))
    u_m = interp_linear(data.sensors[idx].contiguous(), data.u[:, idx], data.sensors)
    return OperatorData(data.sensors, u_m, data.y, data.s)


def concat(parts: list[OperatorData]) -> OperatorData:
    """Several data sets with the same sensors, one after the other (functions stacked), and the
    index of each one's first function: (data, starts). For training copies of a model on different
    data sets in one run (`deeponet.fit_sizes(..., starts=...)`).

    Introduced in: notebooks/dynamics-pde-operators/deeponet.ipynb
    """
    if not parts:
        raise ValueError("concat needs at least one data set")
    if any(p.u.shape[1] != parts[0].u.shape[1] or p.y.shape[1] != parts[0].y.shape[1] for p in parts):
        raise ValueError("every data set must have the same number of sensors and of query points per function")
    starts = [0]
    for p in parts[:-1]:
        starts.append(starts[-1] + len(p))
    return OperatorData(parts[0].sensors, *(torch.cat([getattr(p, f) for p in parts]) for f in ("u", "y", "s"))), starts
