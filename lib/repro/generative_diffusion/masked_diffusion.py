"""Masked (absorbing) discrete diffusion on short token sequences, computed exactly.

A sequence x = (x_1, ..., x_L) of tokens in {0, ..., V-1} is noised by masking: each token is
replaced by the mask symbol (`MASK` = -1), independently with a probability or as a random subset
of a given size (`mask_tokens`). The sampler runs the masking backwards in T rounds: it starts from
the all-masked sequence and, in round t, unmasks s_t positions chosen uniformly among the masked
ones, drawing each of them independently from a conditional p(x_i | revealed tokens)
(`parallel_unmask`; any conditional works: the exact oracle of a small joint distribution,
`conditional_oracle`, or a learned model). The sizes s_1 + ... + s_T = L form the schedule
(`balanced_sizes`: as equal as possible).

Exact output laws. For a fixed ordered partition (S_1, ..., S_T) of the positions (an unmasking
order), the sampler's output law is q(x) = prod_t prod_{i in S_t} p(x_i | x_{R_t}), with
R_t = S_1 u ... u S_{t-1} (`output_law`, over all V^L sequences); with a random order it is the
mean of these laws (`mixture_output_law`: exact over every order, or over random orders). By the
chain rule,

    KL(p || q) = sum_t [ sum_{i in S_t} H(X_i | X_{R_t}) - H(X_{S_t} | X_{R_t}) ],

a sum of conditional total correlations (`schedule_kl`, from the entropies of all 2^L marginals,
`subset_entropies`). With the order drawn uniformly at random, R_t is a uniform subset of size
r_t = s_1 + ... + s_{t-1}, so with h(k) the mean entropy of the k-token marginals,

    E KL = sum_t [ s_t (h(r_t + 1) - h(r_t)) - (h(r_t + s_t) - h(r_t)) ]      (`expected_kl`),

exact, with no sampling of schedules. For the stationary binary Markov chain (an Ising chain) the
entropy of any marginal depends only on the gaps between its positions, so h(k), the total
correlation and the sum of I(X_i; X_{-i}) have closed forms for any L (`markov_mean_entropy`,
`markov_sum_mutual_information`).

Information quantities: `sum_mutual_information` is sum_i I(X_i; X_{-i}), the quantity the paper's
bound is stated in (Li and Cai, 2025); `total_correlation` is sum_i H(X_i) - H(X) (the KL of a
single round, T = 1). Entropies are in nats.

Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
"""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
from scipy import special

from ..core.validation import check_int

MASK = -1


# --- sequences, masking and schedules ------------------------------------------------------------
def all_sequences(length: int, vocab: int) -> np.ndarray:
    """All vocab^length sequences, (vocab^length, length), in the C order of a joint array of
    shape (vocab,) * length.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    length, vocab = check_int("length", length), check_int("vocab", vocab, 2)
    return np.array(list(itertools.product(range(vocab), repeat=length)), dtype=np.int64)


def mask_tokens(x, rng: np.random.Generator, *, prob: float | None = None,
                count: int | None = None) -> np.ndarray:
    """The forward masking process: every token of each row of x (N, L) masked (set to MASK)
    independently with probability `prob`, or exactly `count` positions per row, uniformly.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    x = np.array(x, dtype=np.int64, ndmin=2)
    if (prob is None) == (count is None):
        raise ValueError("give exactly one of prob (independent masking) and count (subset size)")
    if prob is not None:
        if not 0 <= prob <= 1:
            raise ValueError(f"prob == {prob!r}, must be in [0, 1]")
        masked = rng.random(x.shape) < prob
    else:
        count = check_int("count", count, 0)
        if count > x.shape[1]:
            raise ValueError(f"count == {count}, must be <= the sequence length {x.shape[1]}")
        order = np.argsort(rng.random(x.shape), axis=1)
        masked = np.zeros(x.shape, dtype=bool)
        np.put_along_axis(masked, order[:, :count], True, axis=1)
    return np.where(masked, MASK, x)


def balanced_sizes(length: int, steps: int) -> list[int]:
    """Round sizes s_1..s_T summing to `length`, as equal as possible (the larger ones first).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    length, steps = check_int("length", length), check_int("steps", steps)
    if steps > length:
        raise ValueError(f"steps == {steps}, must be <= length == {length} (one token per round "
                         "at least)")
    base, extra = divmod(length, steps)
    return [base + 1] * extra + [base] * (steps - extra)


def _check_sizes(sizes, length=None) -> list[int]:
    sizes = [check_int("size", s) for s in sizes]
    if not sizes or (length is not None and sum(sizes) != length):
        raise ValueError(f"sizes == {sizes}, must be positive ints summing to the length {length}")
    return sizes


def random_schedule(sizes, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniformly random ordered partition (S_1, ..., S_T) of range(sum(sizes)), |S_t| = s_t.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    sizes = _check_sizes(sizes)
    perm = rng.permutation(sum(sizes))
    return [np.sort(part) for part in np.split(perm, np.cumsum(sizes)[:-1])]


# --- targets ------------------------------------------------------------------------------------
def markov_chain_joint(length: int, flip: float) -> np.ndarray:
    """The stationary symmetric binary Markov chain (an Ising chain with coupling
    J = atanh(1 - 2 flip)): X_1 uniform, X_{k+1} = X_k flipped with probability `flip`.
    A joint array of shape (2,) * length.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    length = check_int("length", length)
    if not 0 < flip <= 0.5:
        raise ValueError(f"flip == {flip!r}, must be in (0, 0.5] (0.5: independent tokens)")
    x = all_sequences(length, 2)
    changes = (np.diff(x, axis=1) != 0).sum(1)
    p = 0.5 * flip ** changes * (1 - flip) ** (length - 1 - changes)
    return p.reshape((2,) * length)


def pairwise_joint(couplings, fields) -> np.ndarray:
    """A binary pairwise (Ising) model p(s) ~ exp(sum_{i<j} J_ij s_i s_j + sum_i h_i s_i) with
    spins s = 2 x - 1; `couplings` (L, L) symmetric (its diagonal ignored), `fields` (L,).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    J, h = np.asarray(couplings, dtype=float), np.asarray(fields, dtype=float)
    if J.ndim != 2 or J.shape != (len(h), len(h)) or not np.allclose(J, J.T):
        raise ValueError(f"couplings must be symmetric (L, L) and fields (L,), got {J.shape} and "
                         f"{h.shape}")
    s = 2.0 * all_sequences(len(h), 2) - 1
    J = J - np.diag(np.diag(J))
    energy = 0.5 * np.einsum("ni,ij,nj->n", s, J, s) + s @ h
    p = np.exp(energy - energy.max())
    return (p / p.sum()).reshape((2,) * len(h))


def _check_joint(joint) -> np.ndarray:
    p = np.asarray(joint, dtype=np.float64)
    if p.ndim < 1 or len(set(p.shape)) != 1 or p.shape[0] < 2:
        raise ValueError(f"joint has shape {p.shape}, must be (V,) * L with V >= 2")
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-9):
        raise ValueError(f"joint must be non-negative and sum to 1, sums to {p.sum()}")
    return p


# --- the sampler ---------------------------------------------------------------------------------
def conditional_oracle(joint) -> Callable[[np.ndarray], np.ndarray]:
    """The exact conditional of a joint array: cond(y) for y (N, L) with MASK entries returns
    (N, L, V) with p(x_i = v | the revealed tokens of y) in every row and position.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    p = _check_joint(joint)
    vocab, length = p.shape[0], p.ndim

    def cond(y):
        y = np.array(y, dtype=np.int64, ndmin=2)
        out = np.empty((len(y), length, vocab))
        patterns, group = np.unique(y != MASK, axis=0, return_inverse=True)
        for g, revealed in enumerate(patterns):         # the rows revealing the same positions
            rows = np.flatnonzero(group.ravel() == g)
            known = np.flatnonzero(revealed)
            table = np.moveaxis(p, known, range(len(known)))            # revealed axes first
            table = table[tuple(y[rows][:, known].T)] if len(known) else table[None]
            table = table / table.reshape(len(table), -1).sum(1).reshape((-1,) + (1,) * (
                table.ndim - 1))                                        # p(free | revealed)
            free = [i for i in range(length) if not revealed[i]]
            for a, i in enumerate(free):
                axes = tuple(b + 1 for b in range(len(free)) if b != a)
                out[rows, i] = table.sum(axis=axes)
            for i in known:
                out[rows, i] = np.eye(vocab)[y[rows, i]]                # revealed: a point mass
        return out
    return cond


def parallel_unmask(cond, length: int, sizes, n: int, rng: np.random.Generator,
                    schedule=None) -> np.ndarray:
    """The reverse (unmasking) sampler: n sequences start all-masked; round t unmasks s_t masked
    positions (uniformly chosen per sequence, or the fixed `schedule`'s S_t) and draws each of
    them independently from cond(y) (N, L, V). Returns (n, length) tokens.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    length, n = check_int("length", length), check_int("n", n)
    sizes = _check_sizes(sizes, length)
    if schedule is not None:
        parts = [np.asarray(s, dtype=np.int64) for s in schedule]
        if [len(s) for s in parts] != sizes or sorted(np.concatenate(parts)) != list(range(length)):
            raise ValueError("schedule must be an ordered partition of range(length) with the "
                             f"given sizes {sizes}")
        order = np.broadcast_to(np.concatenate(parts), (n, length))
    else:
        order = np.argsort(rng.random((n, length)), axis=1)
    y = np.full((n, length), MASK, dtype=np.int64)
    rows = np.arange(n)[:, None]
    for start, size in zip(np.cumsum([0] + sizes[:-1]), sizes):
        pos = order[:, start:start + size]                              # (n, s_t)
        probs = cond(y)[rows, pos]                                      # (n, s_t, V)
        u = rng.random(probs.shape[:2] + (1,))
        tokens = (u > np.cumsum(probs, -1)).sum(-1).clip(max=probs.shape[-1] - 1)
        y[rows, pos] = tokens
    return y


# --- exact laws and divergences ------------------------------------------------------------------
def _marginal(p: np.ndarray, keep) -> np.ndarray:
    """The marginal of the positions `keep`, kept broadcastable against p (summed axes size 1)."""
    drop = tuple(i for i in range(p.ndim) if i not in set(keep))
    return p.sum(axis=drop, keepdims=True)


def output_law(joint, schedule) -> np.ndarray:
    """The exact output law of the oracle sampler for a fixed ordered partition `schedule`:
    q(x) = prod_t prod_{i in S_t} p(x_i | x_{R_t}), as an array of the joint's shape.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    p = _check_joint(joint)
    parts = [sorted(int(i) for i in s) for s in schedule]
    if sorted(itertools.chain(*parts)) != list(range(p.ndim)):
        raise ValueError(f"schedule must be an ordered partition of range({p.ndim})")
    log_q, revealed = np.zeros(p.shape), []
    with np.errstate(divide="ignore", invalid="ignore"):
        for part in parts:
            log_r = np.log(_marginal(p, revealed))
            for i in part:
                log_q = log_q + np.log(_marginal(p, revealed + [i])) - log_r
            revealed = revealed + part
        return np.nan_to_num(np.exp(log_q), nan=0.0)


def ordered_partitions(sizes):
    """Every ordered partition (S_1, ..., S_T) of range(sum(sizes)) with |S_t| = s_t, as lists
    of index arrays: L! / prod_t s_t! of them (a generator).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    sizes = _check_sizes(sizes)

    def split(rest, sizes):
        if not sizes:
            yield []
            return
        for first in itertools.combinations(rest, sizes[0]):
            left = [i for i in rest if i not in first]
            for tail in split(left, sizes[1:]):
                yield [np.array(first)] + tail
    return split(list(range(sum(sizes))), sizes)


def mixture_output_law(joint, sizes, rng: np.random.Generator | None = None,
                       orders: int = 0) -> np.ndarray:
    """The output law of the sampler with a uniformly random unmasking order of round sizes
    `sizes`: the mean of `output_law` over every ordered partition (exact; rng None), or over
    `orders` random ones drawn with rng (Monte Carlo).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    p = _check_joint(joint)
    sizes = _check_sizes(sizes, p.ndim)
    if rng is None:
        parts = ordered_partitions(sizes)
    else:
        parts = (random_schedule(sizes, rng) for _ in range(check_int("orders", orders)))
    total, count = np.zeros(p.shape), 0
    for schedule in parts:
        total += output_law(p, schedule)
        count += 1
    return total / count


def kl_divergence(p, q) -> float:
    """KL(p || q) in nats between two laws on the same states (inf when q = 0 where p > 0).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    p, q = np.asarray(p, dtype=np.float64).ravel(), np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same number of states, got {p.size} and {q.size}")
    support = p > 0
    if np.any(q[support] <= 0):
        return float("inf")
    return float(np.sum(p[support] * (np.log(p[support]) - np.log(q[support]))))


def subset_entropies(joint) -> np.ndarray:
    """H(X_A) in nats for every subset A of the positions, indexed by the bitmask of A (bit i:
    position i); (2^L,). Marginals are summed down from larger subsets, (V + 1)^L work.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    p = _check_joint(joint)
    length = p.ndim
    full = (1 << length) - 1
    margins = {full: p}
    entropy = np.zeros(1 << length)
    for mask in sorted(range(full + 1), key=lambda m: -bin(m).count("1")):
        if mask != full:
            j = next(i for i in range(length) if not mask >> i & 1)     # add back position j
            parent = margins[mask | 1 << j]
            axis = bin((mask | 1 << j) & ((1 << j) - 1)).count("1")     # j's axis in the parent
            margins[mask] = parent.sum(axis=axis)
        m = margins[mask]
        m = m[m > 0]
        entropy[mask] = -np.sum(m * np.log(m))
    return entropy


def _length_of(entropies) -> int:
    h = np.asarray(entropies, dtype=np.float64)
    length = int(np.log2(len(h))) if len(h) else -1
    if h.ndim != 1 or length < 1 or len(h) != 1 << length:
        raise ValueError(f"entropies must be indexed by all 2^L subsets, got shape {h.shape}")
    return length


def _bits(positions) -> int:
    return sum(1 << int(i) for i in positions)


def schedule_kl(entropies, schedule) -> float:
    """KL(p || q) of the oracle sampler for a fixed ordered partition, from the subset entropies:
    sum_t [sum_{i in S_t} H(X_i | X_R) - H(X_S | X_R)].

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    h = np.asarray(entropies, dtype=np.float64)
    _length_of(h)
    total, revealed = 0.0, 0
    for part in schedule:
        s = _bits(part)
        total += sum(h[revealed | 1 << int(i)] - h[revealed] for i in part)
        total -= h[revealed | s] - h[revealed]
        revealed |= s
    return float(total)


def mean_entropies(entropies) -> np.ndarray:
    """h(k), the mean of H(X_A) over the subsets A of size k, for k = 0..L; (L + 1,).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    h = np.asarray(entropies, dtype=np.float64)
    length = _length_of(h)
    sizes = np.array([bin(m).count("1") for m in range(len(h))])
    return np.array([h[sizes == k].mean() for k in range(length + 1)])


def expected_kl(mean_entropy, sizes) -> float:
    """E KL(p || q) of the oracle sampler over a uniformly random unmasking order with round
    sizes `sizes`, exactly: sum_t [s_t (h(r_t+1) - h(r_t)) - (h(r_t+s_t) - h(r_t))], where
    mean_entropy(k) = h(k) is a function of k (or an array indexed by k).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    h = mean_entropy if callable(mean_entropy) else np.asarray(mean_entropy).__getitem__
    sizes = _check_sizes(sizes)
    total, r = 0.0, 0
    for s in sizes:
        total += s * (h(r + 1) - h(r)) - (h(r + s) - h(r))
        r += s
    return float(total)


def sum_mutual_information(entropies) -> float:
    """sum_i I(X_i; X_{-i}) = sum_i [H(X_i) + H(X_{-i}) - H(X)], in nats.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    h = np.asarray(entropies, dtype=np.float64)
    length = _length_of(h)
    full = (1 << length) - 1
    return float(sum(h[1 << i] + h[full ^ 1 << i] - h[full] for i in range(length)))


def total_correlation(entropies) -> float:
    """sum_i H(X_i) - H(X), in nats: the KL of unmasking everything in one round.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    h = np.asarray(entropies, dtype=np.float64)
    length = _length_of(h)
    return float(sum(h[1 << i] for i in range(length)) - h[(1 << length) - 1])


# --- closed forms for the stationary binary Markov chain ------------------------------------------
def _binary_entropy(q):
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(-q * np.log(q) - (1 - q) * np.log1p(-q))


def _check_chain(length, flip):
    length = check_int("length", length, 2)
    if not 0 < flip <= 0.5:
        raise ValueError(f"flip == {flip!r}, must be in (0, 0.5] (0.5: independent tokens)")
    return length


def markov_mean_entropy(length: int, flip: float) -> Callable[[int], float]:
    """h(k) of the stationary binary Markov chain, in closed form: H(X_A) = log 2 plus, for each
    pair of consecutive positions of A at gap d, H_b(flip_d) with flip_d = (1 - (1 - 2 flip)^d)/2;
    the mean over |A| = k weighs gap d by (L - d) C(L - d - 1, k - 2) / C(L, k).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    length = _check_chain(length, flip)
    d = np.arange(1, length)
    gap_entropy = _binary_entropy((1 - (1 - 2 * flip) ** d) / 2)
    lg = special.gammaln(np.arange(length + 2))                         # log (n - 1)!

    def h(k):
        k = check_int("k", k, 0)
        if k > length:
            raise ValueError(f"k == {k}, must be <= length == {length}")
        if k < 2:
            return float(k * np.log(2))
        ok = length - d - 1 >= k - 2
        dd = d[ok]
        log_w = (np.log(length - dd) + lg[length - dd] - lg[k - 1] - lg[length - dd - k + 2]
                 - lg[length + 1] + lg[k + 1] + lg[length - k + 1])
        w = np.exp(log_w)
        w *= (k - 1) / w.sum()              # the weights count the k - 1 gaps exactly: no drift
        return float(np.log(2) + np.sum(w * gap_entropy[ok]))
    return h


def markov_sum_mutual_information(length: int, flip: float) -> float:
    """sum_i I(X_i; X_{-i}) of the stationary binary Markov chain, in closed form: the two ends
    give log 2 - H_b(flip) each, every interior token log 2 - 2 H_b(flip) + H_b(2 flip (1 - flip)).

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    length = _check_chain(length, flip)
    hb, hb2 = _binary_entropy(flip), _binary_entropy(2 * flip * (1 - flip))
    return float(2 * (np.log(2) - hb) + (length - 2) * (np.log(2) - 2 * hb + hb2))


def markov_total_correlation(length: int, flip: float) -> float:
    """sum_i H(X_i) - H(X) = (L - 1)(log 2 - H_b(flip)) for the stationary binary Markov chain.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    length = _check_chain(length, flip)
    return float((length - 1) * (np.log(2) - _binary_entropy(flip)))


def flip_for_correlation(rho: float) -> float:
    """The flip probability of the chain whose neighbouring tokens have correlation rho (in
    [0, 1)): flip = (1 - rho) / 2.

    Introduced in: notebooks/generative-diffusion/a-convergence-theory-for-diffusion-language.ipynb
    """
    if not 0 <= rho < 1:
        raise ValueError(f"rho == {rho!r}, must be in [0, 1)")
    return (1 - rho) / 2

