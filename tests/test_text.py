import math

import numpy as np
import pytest
import torch

from repro.core.text import MarkovText, fixed_windows, windows


def _binary_entropy(p):
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


def test_entropy_rate_of_a_two_state_chain_by_hand():
    # P(1|0) = p, P(0|1) = q: pi = (q, p) / (p + q), H = pi_0 h(p) + pi_1 h(q)
    p, q = 0.1, 0.3
    chain = MarkovText([[1 - p, p], [q, 1 - q]])
    np.testing.assert_allclose(chain.stationary(), [0.75, 0.25], rtol=0, atol=1e-12)
    by_hand = 0.75 * _binary_entropy(p) + 0.25 * _binary_entropy(q)
    assert chain.entropy_rate() == pytest.approx(by_hand, abs=1e-12)


def test_an_order_2_chain_that_ignores_the_older_symbol_has_the_order_1_rate():
    first = MarkovText.random(vocab_size=5, order=1, seed=3)
    second = MarkovText(np.broadcast_to(first.transitions, (5, 5, 5)))  # P(c | a, b) = P(c | b)
    assert second.entropy_rate() == pytest.approx(first.entropy_rate(), abs=1e-12)
    # contexts (a, b) are stationary with probability pi(a) P(b | a)
    pi = first.stationary()
    np.testing.assert_allclose(second.stationary(), pi[:, None] * first.transitions, atol=1e-12)


def test_entropy_rate_against_a_long_sample():
    chain = MarkovText.random(vocab_size=8, order=2, concentration=0.2, seed=0)
    ids = chain.sample(400_000, seed=1)
    counts = np.zeros((8, 8, 8))
    np.add.at(counts, (ids[:-2], ids[1:-1], ids[2:]), 1)
    context = counts.sum(-1, keepdims=True)
    nz = counts > 0
    plug_in = -(counts[nz] * np.log((counts / np.maximum(context, 1))[nz])).sum() / counts.sum()
    # the plug-in estimate's bias is about (cells - contexts) / (2 n) = 6e-4, its noise about 2e-3
    assert plug_in == pytest.approx(chain.entropy_rate(), abs=0.01)
    np.testing.assert_allclose(context[..., 0] / counts.sum(), chain.stationary(), atol=0.005)
    # and the floor is well below the symbol frequencies' entropy: there is something to learn
    freq = np.bincount(ids, minlength=8) / len(ids)
    assert chain.entropy_rate() < -(freq * np.log(freq)).sum() - 0.5


def test_sample_is_seeded_and_in_range():
    chain = MarkovText.random(seed=0)
    a, b = chain.sample(500, seed=1), chain.sample(500, seed=1)
    assert a.shape == (500,) and a.dtype == np.int64 and a.min() >= 0 and a.max() < 16
    assert np.array_equal(a, b) and not np.array_equal(a, chain.sample(500, seed=2))
    assert len(chain.decode(a[:10])) == 10
    assert not np.allclose(chain.transitions, MarkovText.random(seed=1).transitions)


def test_windows_pair_each_character_with_the_next():
    ids = np.arange(100)
    x, y = next(windows(ids, context=8, batch_size=5, seed=0))
    assert x.shape == y.shape == (5, 8) and x.dtype == torch.long
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)
    x2, _ = next(windows(ids, context=8, batch_size=5, seed=0))
    assert torch.equal(x, x2)
    fx, fy = fixed_windows(ids, context=8)
    assert fx.shape == (12, 8) and torch.equal(fy, fx + 1) and fx[1, 0] == 8


@pytest.mark.parametrize("table, match", [
    ([0.5, 0.5], "shape"),
    ([[0.5, 0.6], [0.5, 0.5]], "sum to 1"),
    ([[1.5, -0.5], [0.5, 0.5]], "non-negative"),
])
def test_bad_transition_tables_raise(table, match):
    with pytest.raises(ValueError, match=match):
        MarkovText(table)
