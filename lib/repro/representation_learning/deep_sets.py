"""Models and data for functions of sets: sum-decomposed networks (Deep Sets) and their baselines.

A permutation-invariant function of a set {x_1..x_n} can be written rho(sum_i phi(x_i)) (Zaheer
et al. 2017, Theorem 2). `DeepSets` is that form; `SetRNN` reads the same elements as a sequence.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.validation import check_choice, check_int

POOLS = ("sum", "mean", "max")
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def _check_sets(x: torch.Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected (batch, set size, features)")


class DeepSets(nn.Module):
    """rho(pool_i phi(x_i)) over a batch of sets shaped (batch, set size, features).
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""

    def __init__(self, phi: nn.Module, rho: nn.Module, pool: str = "sum"):
        super().__init__()
        check_choice("pool", pool, POOLS)
        self.phi, self.rho, self.pool = phi, rho, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sets(x)
        h = self.phi(x)
        h = h.sum(1) if self.pool == "sum" else h.mean(1) if self.pool == "mean" else h.amax(1)
        return self.rho(h)


class SetRNN(nn.Module):
    """A sequence baseline: an LSTM or GRU reads the elements in the given order, a linear layer
    reads out its last hidden state. Introduced in: notebooks/representation-learning/deep-sets.ipynb"""

    def __init__(self, d_in: int, d_out: int, hidden: int = 32, cell: str = "lstm"):
        super().__init__()
        check_choice("cell", cell, tuple(CELLS))
        self.rnn = CELLS[cell](d_in, hidden, batch_first=True)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sets(x)
        h, _ = self.rnn(x)
        return self.out(h[:, -1])


def sum_of_digits(n_sets: int, set_size: int, *, generator: torch.Generator | None = None,
                  n_digits: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """`n_sets` sets of `set_size` digits drawn uniformly from 0..n_digits-1: (digits, their sums).
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""
    check_int("n_sets", n_sets)
    check_int("set_size", set_size)
    digits = torch.randint(0, n_digits, (n_sets, set_size), generator=generator)
    return digits, digits.sum(1)


@torch.no_grad()
def permutation_gap(model: nn.Module, x: torch.Tensor, n_perms: int = 10, *,
                    generator: torch.Generator | None = None) -> float:
    """Largest |model(x permuted) - model(x)| over `n_perms` random orders of each set's elements.
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""
    _check_sets(x)
    model.eval()
    ref, gap = model(x), 0.0
    for _ in range(n_perms):
        order = torch.randperm(x.shape[1], generator=generator).to(x.device)
        gap = max(gap, (model(x[:, order]) - ref).abs().max().item())
    return gap
