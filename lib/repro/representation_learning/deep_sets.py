"""Models for functions of sets: sum-decomposed networks (Deep Sets), their permutation-equivariant
layers, and the sequence baselines they are compared with.

A permutation-invariant function of a set {x_1..x_M} can be written rho(sum_m phi(x_m)) (Zaheer
et al. 2017, Theorem 2). `DeepSets` is that form (with sum, mean or max pooling); `SetRNN` reads the
same elements as a sequence. A linear map of R^M is permutation-equivariant iff it is
lambda I + gamma 1 1^T (Lemma 3); `PermEquivariant` is the layer built on it, in the max-normalized
form of the paper's appendix C (Eq. 23): sigma(beta + (x - 1 maxpool(x)) Gamma).
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


def pool_set(h: torch.Tensor, pool: str, keepdim: bool = False) -> torch.Tensor:
    """Sum, mean or max of `h` (batch, set size, features) over the set dimension.
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""
    check_choice("pool", pool, POOLS)
    if pool == "sum":
        return h.sum(1, keepdim=keepdim)
    return h.mean(1, keepdim=keepdim) if pool == "mean" else h.amax(1, keepdim=keepdim)


def _pool_prefixes(h: torch.Tensor, pool: str) -> torch.Tensor:
    """The pooled value of every prefix h[:, :t] (t = 1..set size): (batch, set size, features)."""
    if pool == "max":
        return torch.cummax(h, 1).values
    total = h.cumsum(1)
    if pool == "sum":
        return total
    return total / torch.arange(1, h.shape[1] + 1, device=h.device, dtype=h.dtype)[:, None]


class DeepSets(nn.Module):
    """rho(pool_m phi(x_m)) over a batch of sets shaped (batch, set size, features).
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""

    def __init__(self, phi: nn.Module, rho: nn.Module, pool: str = "sum"):
        super().__init__()
        check_choice("pool", pool, POOLS)
        self.phi, self.rho, self.pool = phi, rho, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sets(x)
        return self.rho(pool_set(self.phi(x), self.pool))

    def prefixes(self, x: torch.Tensor) -> torch.Tensor:
        """The output on every prefix x[:, :t] of the sets, t = 1..set size, in one pass:
        (batch, set size, outputs). Needs an elementwise phi (no interaction between elements)."""
        _check_sets(x)
        return self.rho(_pool_prefixes(self.phi(x), self.pool))


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

    def prefixes(self, x: torch.Tensor) -> torch.Tensor:
        """The read-out after every element (the output on every prefix): (batch, set size, outputs)."""
        _check_sets(x)
        h, _ = self.rnn(x)
        return self.out(h)


class PermEquivariant(nn.Module):
    """A permutation-equivariant layer (Lemma 3), max-normalized as in the paper's Eq. 23:
    each element x_m becomes beta + (x_m - pool_m' x_m') Gamma, with pool = max (the paper's
    choice for point clouds), mean or sum. Input and output (batch, set size, features).
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""

    def __init__(self, d_in: int, d_out: int, pool: str = "max"):
        super().__init__()
        check_choice("pool", pool, POOLS)
        self.gamma, self.pool = nn.Linear(d_in, d_out), pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sets(x)
        return self.gamma(x - pool_set(x, self.pool, keepdim=True))


class NormalizeSet(nn.Module):
    """Centre each set (zero mean along every axis) and scale it to unit variance over all its
    coordinates, the paper's first step for point clouds (Sec. 4.1.3).
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_sets(x)
        x = x - x.mean(1, keepdim=True)
        return x / x.pow(2).mean((1, 2), keepdim=True).sqrt().clamp_min(1e-12)


def point_cloud_classifier(n_classes: int, width: int = 256, *, d_in: int = 3, equivariant: bool = True,
                           dropout: float = 0.5) -> DeepSets:
    """The paper's point-cloud network (appendix H): the set normalized, three layers of `width`
    tanh units, max-pooled over the points, then dropout, a dense tanh layer of `width` units,
    dropout and a linear layer to the class scores. `equivariant` layers are `PermEquivariant`
    (Eq. 23); without them, each point goes through plain dense layers ("pooling only", Table 6).
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""
    check_int("n_classes", n_classes, 2)
    check_int("width", width)
    layer = PermEquivariant if equivariant else nn.Linear
    phi = nn.Sequential(NormalizeSet(), layer(d_in, width), nn.Tanh(), layer(width, width), nn.Tanh(),
                        layer(width, width), nn.Tanh())
    rho = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, width), nn.Tanh(), nn.Dropout(dropout),
                        nn.Linear(width, n_classes))
    return DeepSets(phi, rho, pool="max")


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


@torch.no_grad()
def equivariance_gap(layer: nn.Module, x: torch.Tensor, n_perms: int = 10, *,
                     generator: torch.Generator | None = None) -> float:
    """Largest |layer(x permuted) - layer(x) permuted| over `n_perms` random orders: zero (to
    rounding) for a permutation-equivariant layer. Introduced in: notebooks/representation-learning/deep-sets.ipynb"""
    _check_sets(x)
    layer.eval()
    ref, gap = layer(x), 0.0
    for _ in range(n_perms):
        order = torch.randperm(x.shape[1], generator=generator).to(x.device)
        gap = max(gap, (layer(x[:, order]) - ref[:, order]).abs().max().item())
    return gap


def _permutation_matrix(order) -> torch.Tensor:
    m = len(order)
    p = torch.zeros(m, m, dtype=torch.float64)
    p[torch.arange(m), torch.as_tensor(order)] = 1.0
    return p


def equivariant_linear_maps(m: int, *, tol: float = 1e-10) -> torch.Tensor:
    """An orthonormal basis, shaped (k, m, m), of the m x m matrices Theta with
    P Theta = Theta P for every m x m permutation matrix P: the null space of
    Theta -> (P Theta - Theta P) over a transposition and an m-cycle, which generate all
    permutations. Lemma 3 says it is spanned by I and 1 1^T (k = 2 for m >= 2).
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""
    check_int("m", m)
    eye = torch.eye(m, dtype=torch.float64)
    generators = [_permutation_matrix([1, 0, *range(2, m)]) if m > 1 else eye,
                  _permutation_matrix([*range(1, m), 0])]
    # row-major vec(A X B) = (A kron B^T) vec(X), so vec(P X - X P) = (P kron I - I kron P^T) vec(X)
    system = torch.cat([torch.kron(p, eye) - torch.kron(eye, p.T.contiguous()) for p in generators])
    _, s, vh = torch.linalg.svd(system)
    return vh[(s <= tol * max(1.0, s.max().item())).nonzero().squeeze(1)].reshape(-1, m, m)
