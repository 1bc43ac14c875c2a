"""Optimizers written out from their papers, so that a notebook can switch their parts on and off."""
from __future__ import annotations

import torch


class Adam(torch.optim.Optimizer):
    """Adam (Kingma & Ba, Algorithm 1) with a `bias_correction` switch for the Sec. 3 ablation.

    With `bias_correction=True` it takes the same steps as `torch.optim.Adam` (no weight decay,
    no amsgrad). With `False` the moment estimates m_t and v_t are used as they are, which is
    RMSProp with momentum on the rescaled gradient: the early steps are too large when beta2 is
    close to 1. After each step `state[p]["delta"]` holds the step just taken, theta_{t-1} - theta_t.
    Introduced in: notebooks/optimization/adam.ipynb
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 bias_correction: bool = True):
        if not lr > 0:
            raise ValueError(f"lr == {lr}, must be > 0")
        if not all(0 <= b < 1 for b in betas) or len(betas) != 2:
            raise ValueError(f"betas == {betas}, must be two numbers in [0, 1)")
        if not eps >= 0:
            raise ValueError(f"eps == {eps}, must be >= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      bias_correction=bias_correction))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (b1, b2), lr, eps = group["betas"], group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["t"] += 1
                t, g = state["t"], p.grad
                state["m"].mul_(b1).add_(g, alpha=1 - b1)                # m_t, Alg. 1
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)         # v_t, Alg. 1
                m_hat, v_hat = state["m"], state["v"]
                if group["bias_correction"]:
                    m_hat = m_hat / (1 - b1 ** t)                        # Sec. 3
                    v_hat = v_hat / (1 - b2 ** t)
                delta = lr * m_hat / (v_hat.sqrt() + eps)
                p.sub_(delta)
                state["delta"] = delta
        return loss
