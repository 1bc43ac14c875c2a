"""Tests of repro.generative_diffusion.masked_diffusion: exact output laws against enumeration and
Monte Carlo, the schedule-averaged KL against all orders, the Markov chain's closed forms."""
import itertools
import math

import numpy as np
import pytest

from repro.generative_diffusion import masked_diffusion as md


def random_ising(length, seed, scale=0.8):
    rng = np.random.default_rng(seed)
    J = rng.normal(0, scale, (length, length))
    return md.pairwise_joint((J + J.T) / 2, rng.normal(0, 0.3, length))


def test_all_sequences_order_matches_joint_layout():
    x = md.all_sequences(3, 2)
    p = np.arange(8.0).reshape(2, 2, 2)
    assert [p[tuple(s)] for s in x] == list(range(8))


def test_masking_rates_and_counts():
    rng = np.random.default_rng(0)
    x = np.zeros((4000, 10), dtype=int)
    assert abs((md.mask_tokens(x, rng, prob=0.3) == md.MASK).mean() - 0.3) < 0.01
    assert ((md.mask_tokens(x, rng, count=4) == md.MASK).sum(1) == 4).all()
    with pytest.raises(ValueError, match="exactly one"):
        md.mask_tokens(x, rng)
    with pytest.raises(ValueError, match="count"):
        md.mask_tokens(x, rng, count=11)


def test_balanced_sizes():
    assert md.balanced_sizes(10, 4) == [3, 3, 2, 2]
    assert md.balanced_sizes(5, 5) == [1] * 5
    with pytest.raises(ValueError, match="steps"):
        md.balanced_sizes(3, 4)


def test_output_law_matches_the_product_of_conditionals_by_hand():
    p = random_ising(4, 1)
    schedule = [np.array([0, 2]), np.array([1, 3])]
    q = md.output_law(p, schedule)
    p02 = p.sum(axis=(1, 3))
    for x in md.all_sequences(4, 2):
        a, b, c, d = x
        cond = p[a, :, c, :].sum(-1)[b] / p02[a, c] * p[a, :, c, :].sum(0)[d] / p02[a, c]
        expected = p02.sum(1)[a] * p02.sum(0)[c] * cond
        assert q[tuple(x)] == pytest.approx(expected, rel=1e-12)


def test_one_token_per_round_is_exact_and_independent_tokens_are_exact():
    rng = np.random.default_rng(2)
    p = random_ising(6, 3)
    q = md.output_law(p, md.random_schedule([1] * 6, rng))
    assert md.kl_divergence(p, q) < 1e-12
    marginals = rng.dirichlet(np.ones(3), size=4)                       # V = 3, L = 4
    indep = np.einsum("a,b,c,d->abcd", *marginals)
    q = md.output_law(indep, [np.arange(4)])
    assert md.kl_divergence(indep, q) < 1e-12
    assert md.expected_kl(md.mean_entropies(md.subset_entropies(indep)), [4]) == pytest.approx(
        0, abs=1e-12)


def test_schedule_kl_from_entropies_matches_the_exact_law():
    rng = np.random.default_rng(4)
    p = random_ising(7, 5)
    H = md.subset_entropies(p)
    for sizes in ([7], [4, 3], [3, 2, 2]):
        sch = md.random_schedule(sizes, rng)
        assert md.schedule_kl(H, sch) == pytest.approx(md.kl_divergence(p, md.output_law(p, sch)),
                                                       rel=1e-10, abs=1e-12)
    assert md.schedule_kl(H, [np.arange(7)]) == pytest.approx(md.total_correlation(H))


def test_subset_entropies_against_direct_marginals():
    p = random_ising(5, 6)
    H = md.subset_entropies(p)
    for mask in range(32):
        keep = [i for i in range(5) if mask >> i & 1]
        m = p.sum(axis=tuple(i for i in range(5) if i not in keep)).ravel()
        assert H[mask] == pytest.approx(-np.sum(m * np.log(m)), abs=1e-12)


def test_expected_kl_equals_the_mean_over_every_order():
    p = random_ising(5, 7)
    H = md.subset_entropies(p)
    sizes = [2, 2, 1]
    kls = [md.schedule_kl(H, [perm[:2], perm[2:4], perm[4:]])
           for perm in itertools.permutations(range(5))]
    assert md.expected_kl(md.mean_entropies(H), sizes) == pytest.approx(np.mean(kls), rel=1e-12)


def test_sampler_matches_the_exact_law_by_monte_carlo():
    rng = np.random.default_rng(8)
    p = random_ising(5, 9, scale=1.2)
    sch = [np.array([1, 3, 4]), np.array([0, 2])]
    x = md.parallel_unmask(md.conditional_oracle(p), 5, [3, 2], 40000, rng, schedule=sch)
    freq = np.bincount(x @ (2 ** np.arange(4, -1, -1)), minlength=32) / len(x)
    q = md.output_law(p, sch).ravel()
    assert np.all(np.abs(freq - q) < 5 * np.sqrt(q * (1 - q) / len(x)) + 1e-9)
    assert md.kl_divergence(p, q) > 0.01                                 # a real error to detect


def test_random_order_sampler_matches_the_mean_law():
    rng = np.random.default_rng(10)
    p = random_ising(4, 11, scale=1.2)
    x = md.parallel_unmask(md.conditional_oracle(p), 4, [2, 2], 40000, rng)
    freq = np.bincount(x @ (2 ** np.arange(3, -1, -1)), minlength=16) / len(x)
    perms = list(itertools.permutations(range(4)))
    q = np.mean([md.output_law(p, [s[:2], s[2:]]).ravel() for s in perms], axis=0)
    assert np.allclose(md.mixture_output_law(p, [2, 2]).ravel(), q, atol=1e-14)
    assert len(list(md.ordered_partitions([2, 1, 1]))) == 12
    approx = md.mixture_output_law(p, [2, 2], np.random.default_rng(0), orders=3000).ravel()
    assert np.abs(approx - q).max() < 0.01
    assert np.all(np.abs(freq - q) < 5 * np.sqrt(q * (1 - q) / len(x)) + 1e-9)


@pytest.mark.parametrize("flip", [0.05, 0.2, 0.5])
def test_markov_closed_forms_against_enumeration(flip):
    L = 7
    p = md.markov_chain_joint(L, flip)
    H = md.subset_entropies(p)
    h = md.markov_mean_entropy(L, flip)
    assert np.allclose([h(k) for k in range(L + 1)], md.mean_entropies(H), atol=1e-12)
    assert md.markov_sum_mutual_information(L, flip) == pytest.approx(
        md.sum_mutual_information(H), abs=1e-12)
    assert md.markov_total_correlation(L, flip) == pytest.approx(md.total_correlation(H), abs=1e-12)
    assert md.expected_kl(h, [3, 2, 2]) == pytest.approx(
        md.expected_kl(md.mean_entropies(H), [3, 2, 2]), abs=1e-12)


def test_markov_chain_is_an_ising_chain():
    flip, L = 0.2, 5
    J = math.atanh(1 - 2 * flip)
    couplings = np.diag(np.full(L - 1, J), 1)
    assert np.allclose(md.markov_chain_joint(L, flip),
                       md.pairwise_joint(couplings + couplings.T, np.zeros(L)))


def test_bad_input():
    with pytest.raises(ValueError, match="flip"):
        md.markov_chain_joint(4, 0.7)
    with pytest.raises(ValueError, match="sum to 1"):
        md.subset_entropies(np.ones((2, 2)))
    with pytest.raises(ValueError, match="partition"):
        md.output_law(md.markov_chain_joint(3, 0.2), [[0, 1]])
    with pytest.raises(ValueError, match="sizes"):
        md.parallel_unmask(lambda y: None, 4, [2, 1], 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rho"):
        md.flip_for_correlation(1.0)
    with pytest.raises(ValueError, match="k =="):
        md.markov_mean_entropy(5, 0.2)(6)


def test_conditional_oracle_against_brute_force():
    p = random_ising(5, 12)
    y = np.array([[0, -1, 1, -1, -1], [-1, -1, -1, -1, -1], [1, 1, 0, 0, -1]])
    out = md.conditional_oracle(p)(y)
    states = md.all_sequences(5, 2)
    for row, probs in zip(y, out):
        match = ((states == row) | (row == md.MASK)).all(1)
        w = p.ravel() * match
        for i in range(5):
            expected = [w[states[:, i] == v].sum() / w.sum() for v in range(2)]
            assert np.allclose(probs[i], expected, atol=1e-12)
