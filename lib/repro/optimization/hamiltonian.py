"""Heavy-ball momentum as Hamiltonian descent, and what its cautious version does to the energy.

Heavy ball (torch.optim.SGD with momentum mu, no dampening) keeps a buffer m and steps
    m_{t+1} = mu m_t + g_t,        theta_{t+1} = theta_t - lr m_{t+1}.
With the time step h = sqrt(lr) and the velocity v = sqrt(lr) m this is a discretization of
    theta' = -v,   v' = grad f(theta) - a v    (a = (1 - mu) / h),
whose energy (Hamiltonian) H = f(theta) + |v|^2 / 2 = f(theta) + lr |m|^2 / 2 obeys
H' = -a |v|^2 <= 0, while f itself may rise: f' = -<grad f, v> has no sign, so the loss overshoots
and oscillates. The cautious version (Liang et al., arXiv 2411.16085v4, Algorithm 1) moves theta by
v * phi instead, phi = 1[v * g > 0] / mean(...) >= 0, which keeps f' = -<g, v phi> <= 0, and, since
the scale 1 / mean(1[v * g > 0]) is at least 1,
    H' = <g, v (1 - phi)> - a |v|^2 <= -a |v|^2 <= 0
(the coordinates with phi > 1 have v g > 0 and a factor 1 - phi <= 0, those with phi = 0 have
v g <= 0): the cautious flow decreases the same Hamiltonian, and the loss as well.
`heavy_ball_trajectory` runs either one on a quadratic and records f, H and the first-order change
of the loss, so that the discrete steps can be held against these continuous-time statements.

Introduced in: notebooks/optimization/cautious-optimizers.ipynb
"""
from __future__ import annotations

import pandas as pd
import torch

from ..core.validation import check_int, check_positive
from .common import check_fraction
from .first_order import Cautious


def heavy_ball_trajectory(curvatures, start, *, lr: float, momentum: float, steps: int,
                          cautious: bool = False) -> pd.DataFrame:
    """Run heavy ball (or its cautious version) on f(x) = sum(curvatures * x^2) / 2 from `start`
    in float64. One row per step t = 0..steps-1, before its update: loss f(x_t), hamiltonian
    f(x_t) + lr |m_t|^2 / 2 (m the momentum buffer, 0 at t = 0), and descent <g_t, x_t - x_{t+1}>,
    the first-order decrease of the loss the step makes; and a last row t = steps with the loss and
    the hamiltonian (descent NaN).
    Introduced in: notebooks/optimization/cautious-optimizers.ipynb"""
    check_positive("lr", lr)
    check_int("steps", steps)
    check_fraction("momentum", momentum)
    lam = torch.as_tensor(curvatures, dtype=torch.float64)
    x = torch.nn.Parameter(torch.as_tensor(start, dtype=torch.float64).clone())
    if lam.shape != x.shape or not bool((lam > 0).all()):
        raise ValueError(f"curvatures (shape {tuple(lam.shape)}) must be > 0 and of the shape of "
                         f"start {tuple(x.shape)}")
    base = torch.optim.SGD([x], lr=lr, momentum=momentum)
    opt = Cautious(base) if cautious else base

    def energy():
        loss = 0.5 * (lam * x.detach() ** 2).sum().item()
        m = base.state[x].get("momentum_buffer") if x in base.state else None
        return loss, loss + (0.0 if m is None else 0.5 * lr * (m ** 2).sum().item())

    rows = []
    for t in range(steps):
        loss, hamiltonian = energy()
        before = x.detach().clone()
        opt.zero_grad()
        (0.5 * (lam * x ** 2).sum()).backward()
        grad = x.grad.detach().clone()
        opt.step()
        rows.append({"step": t, "loss": loss, "hamiltonian": hamiltonian,
                     "descent": (grad * (before - x.detach())).sum().item()})
    loss, hamiltonian = energy()
    rows.append({"step": steps, "loss": loss, "hamiltonian": hamiltonian, "descent": float("nan")})
    return pd.DataFrame(rows)
