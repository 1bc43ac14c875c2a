"""Character-level text made in code, with a known floor for the loss: an order-k Markov chain.

The next character depends on the k characters before it through a table P(c | context), one row
per context of k symbols. `MarkovText.random` draws each row from a symmetric Dirichlet whose small
concentration makes it sparse-ish: a few likely successors per context, so there is much to learn
beyond character frequencies, yet every transition keeps a positive probability (the chain is
irreducible and aperiodic, with a unique stationary distribution).

No model can beat the chain's entropy rate, in nats per character,

    H = sum_s pi(s) * H(P(. | s)) = -sum_s pi(s) sum_c P(c | s) log P(c | s),

where s runs over the contexts and pi is the stationary distribution of the contexts. So a language
model's held-out loss minus H is the part of the loss it could still learn.

Introduced in: notebooks/optimization/muon.ipynb
"""
from __future__ import annotations

import bisect
import string
from typing import Iterator

import numpy as np
import torch

from .validation import check_int, check_positive

ALPHABET = string.ascii_lowercase + string.digits  # 36 symbols: the largest vocabulary decode shows


class MarkovText:
    """An order-k Markov chain over `vocab_size` symbols, from its transition table `transitions`
    of shape (V,) * k + (V,): transitions[a_1, ..., a_k, c] = P(next = c | previous k = a_1..a_k),
    a_k the most recent. Every row must be a probability vector.

    `random(...)` draws a table; `sample(n_chars, seed)` a stationary stretch of text as symbol ids;
    `entropy_rate()` the loss floor in nats per character.
    Introduced in: notebooks/optimization/muon.ipynb
    """

    def __init__(self, transitions):
        table = np.asarray(transitions, dtype=np.float64)
        if table.ndim < 2 or len(set(table.shape)) != 1:
            raise ValueError(f"transitions has shape {table.shape}, must be (V,) * (k + 1) with "
                             "k >= 1: one probability row over V symbols per context of k symbols")
        if np.any(table < 0) or not np.allclose(table.sum(-1), 1.0, rtol=0, atol=1e-12):
            raise ValueError("every row of transitions must be non-negative and sum to 1")
        self.transitions = table
        self.vocab_size, self.order = table.shape[0], table.ndim - 1

    @classmethod
    def random(cls, vocab_size: int = 16, order: int = 2, concentration: float = 0.2,
               seed: int = 0) -> "MarkovText":
        """A chain whose rows are drawn from a symmetric Dirichlet(concentration): below 1 most of
        a row's mass falls on a few successors. With the defaults the entropy rate is about
        1.6 nats per character against log(16) = 2.77 for uniform text; the default
        TinyTransformer sits about 300 Adam steps on the plateau of the symbol frequencies
        (2.76) before it learns to use the previous character (with 8 symbols, from the start)."""
        check_int("vocab_size", vocab_size, minimum=2)
        check_int("order", order)
        check_positive("concentration", concentration)
        rng = np.random.default_rng(seed)
        rows = rng.dirichlet(np.full(vocab_size, float(concentration)), size=vocab_size ** order)
        if np.any(rows <= 0):  # a gamma draw can underflow for tiny concentrations
            raise ValueError(f"concentration == {concentration} drew a zero transition "
                             "probability; use a larger one so that the chain stays irreducible")
        return cls(rows.reshape((vocab_size,) * (order + 1)))

    @property
    def _rows(self) -> np.ndarray:
        return self.transitions.reshape(-1, self.vocab_size)  # (V**k contexts, V)

    def stationary(self, tol: float = 1e-14, max_iter: int = 100_000) -> np.ndarray:
        """The stationary distribution of the contexts, shape (V,) * k, by power iteration on the
        lazy chain (half a step of the chain, half staying put: the same stationary distribution,
        and it converges even when the chain is periodic)."""
        V = self.vocab_size
        flow = self.transitions.reshape(V, -1, V)  # (oldest symbol a, the k-1 after it r, next c)
        pi = np.full(V ** self.order, V ** -float(self.order))
        for _ in range(max_iter):
            # the new context drops the oldest symbol and appends the next: (a, r) -> (r, c)
            step = np.einsum("ar,arc->rc", pi.reshape(V, -1), flow).reshape(-1)
            new = 0.5 * (pi + step)
            if np.abs(new - pi).sum() < tol:
                return new.reshape((V,) * self.order)
            pi = new
        raise RuntimeError(f"the stationary distribution did not converge in {max_iter} iterations "
                           "(is the chain irreducible?)")

    def entropy_rate(self) -> float:
        """The entropy rate H = sum_s pi(s) H(P(.|s)) in nats per character: the lowest expected
        next-character cross-entropy any model can reach on this text."""
        rows = self._rows
        with np.errstate(divide="ignore", invalid="ignore"):
            row_entropy = -np.where(rows > 0, rows * np.log(rows), 0.0).sum(-1)  # 0 log 0 = 0
        return float(self.stationary().reshape(-1) @ row_entropy)

    def sample(self, n_chars: int, seed: int = 0) -> np.ndarray:
        """`n_chars` symbol ids (int64) of a stationary run of the chain: the first k are drawn
        from the stationary distribution, each later one from its context's row."""
        check_int("n_chars", n_chars, minimum=self.order)
        rng = np.random.default_rng(seed)
        V, k = self.vocab_size, self.order
        start = rng.choice(V ** k, p=self.stationary().reshape(-1))
        out = [int(d) for d in np.unravel_index(start, (V,) * k)]
        # inverse-CDF draws from plain lists: a Python loop, about 0.5 s per million characters
        cdfs = np.cumsum(self._rows, axis=-1)
        cdfs[:, -1] = 1.0  # rounding must not leave a gap above the last symbol
        cdfs = cdfs.tolist()
        context, n_contexts = start, V ** k
        for u in rng.random(n_chars - k).tolist():
            c = bisect.bisect_right(cdfs[context], u)
            out.append(c)
            context = (context * V + c) % n_contexts  # drop the oldest symbol, append c
        return np.asarray(out, dtype=np.int64)

    def decode(self, ids) -> str:
        """The symbols as letters and digits, for printing a sample."""
        if self.vocab_size > len(ALPHABET):
            raise ValueError(f"vocab_size == {self.vocab_size}: decode shows at most "
                             f"{len(ALPHABET)} symbols")
        return "".join(ALPHABET[i] for i in np.asarray(ids).tolist())


def windows(ids, context: int, batch_size: int, seed: int = 0) -> Iterator[tuple]:
    """Endless batches (x, y) of next-character windows cut at random places of `ids`:
    x = ids[i:i+T], y = ids[i+1:i+T+1], each a (batch_size, T = context) long tensor; the places
    come from a generator seeded by `seed`. Introduced in: notebooks/optimization/muon.ipynb"""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    check_int("context", context)
    check_int("batch_size", batch_size)
    if len(ids) < context + 1:
        raise ValueError(f"{len(ids)} characters are too few for windows of context {context}")
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(context)
    while True:
        starts = torch.randint(0, len(ids) - context, (batch_size, 1), generator=gen)
        yield ids[starts + offsets], ids[starts + offsets + 1]


def fixed_windows(ids, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All consecutive next-character windows of `ids`, as (x, y), each ((n - 1) // T, T):
    a fixed held-out set. Introduced in: notebooks/optimization/muon.ipynb"""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    check_int("context", context)
    n = (len(ids) - 1) // context
    if n < 1:
        raise ValueError(f"{len(ids)} characters are too few for windows of context {context}")
    x = ids[:n * context].reshape(n, context)
    y = ids[1:n * context + 1].reshape(n, context)
    return x, y
