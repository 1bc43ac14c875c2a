"""Tests for repro.representation_learning.unit_matching (Li et al. 2016): correlation matrices
against numpy, bipartite matching against brute force, semi-matching, dead units left out of the
matchings, a permuted copy of a network matched exactly, sparse prediction against least squares,
the L1 path's supports against known sparse relations, and the argument checks."""
import itertools
import re

import numpy as np
import pytest
import torch

from conftest import ROOT
from repro.representation_learning import unit_matching
from repro.representation_learning.unit_matching import (bipartite_matching, correlation, lasso_supports,
                                                         least_squares_on, live_units, match_live_units,
                                                         semi_matching, sparse_prediction,
                                                         unexplained_variance, unit_activations, zscore)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- activations and correlations ---------------------------------------------------------------
def test_unit_activations_makes_every_position_a_sample():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)  # (N, C, H, W)
    u = unit_activations(x)
    assert u.shape == (2 * 4 * 5, 3)
    np.testing.assert_array_equal(u[:, 1], x[:, 1].reshape(-1).numpy())  # channel 1, all positions
    np.testing.assert_array_equal(unit_activations(np.ones((7, 3))), np.ones((7, 3)))  # (N, C) as is


def test_correlation_matches_numpy_corrcoef(rng):
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 3))
    b[:, 0] += 2 * a[:, 1]
    ref = np.corrcoef(a.T, b.T)[:4, 4:]
    np.testing.assert_allclose(correlation(a, b), ref, atol=1e-12)
    np.testing.assert_allclose(correlation(a), np.corrcoef(a.T), atol=1e-12)  # within-net


def test_dead_unit_correlates_zero_with_everything(rng):
    a = rng.normal(size=(50, 3))
    a[:, 2] = 0.0  # a ReLU that never fires
    c = correlation(a)
    assert np.all(c[2] == 0) and np.all(c[:, 2] == 0)
    np.testing.assert_allclose(zscore(a)[:, 2], 0.0)


def test_zscore_uses_the_reference_statistics(rng):
    ref = rng.normal(3.0, 2.0, size=(1000, 2))
    z = zscore(ref[:10], like=ref)
    np.testing.assert_allclose(z, (ref[:10] - ref.mean(0)) / ref.std(0))


# --- matchings ------------------------------------------------------------------------------------
def test_permuted_copy_of_a_network_is_matched_exactly(rng):
    """Net B is net A with its units shuffled: both pairings find the permutation, r = 1."""
    a = np.maximum(rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)), 0)  # ReLU units
    perm = rng.permutation(12)
    b = a[:, perm]  # unit j of B is unit perm[j] of A
    for match in (bipartite_matching, semi_matching):
        partner, r = match(correlation(a, b))
        np.testing.assert_array_equal(perm[partner], np.arange(12))
        np.testing.assert_allclose(r, 1.0)


def test_bipartite_matching_is_the_best_permutation_by_brute_force(rng):
    corr = rng.uniform(-1, 1, size=(5, 5))
    partner, r = bipartite_matching(corr)
    best = max(itertools.permutations(range(5)), key=lambda p: corr[np.arange(5), p].sum())
    np.testing.assert_allclose(r.sum(), corr[np.arange(5), best].sum())
    assert sorted(partner) == list(range(5))  # one-to-one


def test_semi_matching_is_at_least_bipartite_and_may_repeat_partners():
    corr = np.array([[0.9, 0.1, 0.0],
                     [0.8, 0.2, 0.1],
                     [0.7, 0.3, 0.6]])  # every unit of A likes B's unit 0 best
    semi, r_semi = semi_matching(corr)
    bip, r_bip = bipartite_matching(corr)
    np.testing.assert_array_equal(semi, [0, 0, 0])
    assert len(set(bip)) == 3
    assert np.all(r_semi >= r_bip) and r_semi.sum() > r_bip.sum()


def test_semi_matching_at_least_bipartite_on_random_matrices(rng):
    for _ in range(20):
        corr = rng.uniform(-1, 1, size=(6, 8))
        assert semi_matching(corr)[1].sum() >= bipartite_matching(corr)[1].sum() - 1e-12
        assert np.all(semi_matching(corr)[1] >= bipartite_matching(corr)[1] - 1e-12)


def test_rectangular_matching_gives_distinct_partners(rng):
    partner, r = bipartite_matching(rng.uniform(size=(3, 7)))
    assert len(set(partner)) == 3 and r.shape == (3,)


# --- sparse prediction -----------------------------------------------------------------------------
def test_dense_map_is_least_squares_and_recovers_a_linear_relation(rng):
    a = rng.normal(size=(300, 5))
    w = rng.normal(size=(2, 5))
    b = a @ w.T + np.array([1.0, -2.0])
    fit = sparse_prediction(a, b, alpha=0)
    np.testing.assert_allclose(fit.weights, w, atol=1e-10)
    np.testing.assert_allclose(fit.intercept, [1.0, -2.0], atol=1e-10)
    np.testing.assert_allclose(unexplained_variance(b, fit.predict(a)), 0.0, atol=1e-12)


def test_l1_penalty_finds_the_few_true_inputs(rng):
    """Unit 0 of B is a sum of two units of A, unit 1 a copy of one: the Lasso keeps only those."""
    a = zscore(rng.normal(size=(2000, 10)))
    b = np.stack([a[:, 2] + a[:, 7], a[:, 4]], axis=1) + 0.05 * rng.normal(size=(2000, 2))
    fit = sparse_prediction(a, b, alpha=0.05)
    assert set(np.flatnonzero(fit.weights[0])) == {2, 7}
    assert set(np.flatnonzero(fit.weights[1])) == {4}
    np.testing.assert_array_equal(fit.n_inputs(), [2, 1])
    assert np.all(unexplained_variance(b, fit.predict(a)) < 0.05)


def test_stronger_penalty_uses_fewer_inputs(rng):
    a = zscore(rng.normal(size=(500, 8)))
    b = a @ rng.normal(size=(8, 3)) + rng.normal(size=(500, 3))
    used = [sparse_prediction(a, b, alpha).n_inputs().sum() for alpha in (0.0, 0.1, 1.0, 10.0)]
    assert used == sorted(used, reverse=True) and used[-1] == 0


def test_unexplained_variance_of_the_mean_is_one_and_dead_units_are_nan(rng):
    b = rng.normal(size=(100, 2))
    b[:, 1] = 3.0
    u = unexplained_variance(b, np.broadcast_to(b.mean(0), b.shape))
    np.testing.assert_allclose(u[0], 1.0)
    assert np.isnan(u[1])


# --- bad inputs -----------------------------------------------------------------------------------
def test_bad_shapes_raise(rng):
    with pytest.raises(ValueError, match="must be \\(samples, units\\)"):
        correlation(rng.normal(size=(10,)))
    with pytest.raises(ValueError, match="same inputs"):
        correlation(rng.normal(size=(10, 2)), rng.normal(size=(11, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        correlation(rng.normal(size=(1, 2)))
    with pytest.raises(ValueError, match="must be \\(N, C\\)"):
        unit_activations(np.zeros(5))
    with pytest.raises(ValueError, match="units_a <= units_b"):
        bipartite_matching(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        semi_matching(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        bipartite_matching(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="x has 2 units and like 3; they must match"):
        zscore(rng.normal(size=(5, 2)), like=rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="shape"):
        unexplained_variance(np.zeros((5, 2)), np.zeros((5, 3)))


def test_bad_sparse_arguments_raise(rng):
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    with pytest.raises(ValueError, match="alpha == -1, must be a number >= 0"):
        sparse_prediction(a, b, alpha=-1)
    with pytest.raises(ValueError, match="same inputs"):
        sparse_prediction(a, b[:10], alpha=0.1)


def test_every_public_name_points_to_a_notebook_that_exists():
    public = [obj for name, obj in vars(unit_matching).items() if not name.startswith("_")
              and callable(obj) and getattr(obj, "__module__", None) == unit_matching.__name__]
    assert len(public) >= 8
    for obj in public:
        match = re.search(r"Introduced in: (notebooks/\S+\.ipynb)", obj.__doc__ or "")
        assert match and (ROOT / match.group(1)).is_file(), obj.__name__


def test_a_diverged_sparse_fit_raises(monkeypatch):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 6))
    b = a[:, :2] @ rng.standard_normal((2, 3)) + 0.1 * rng.standard_normal((200, 3))
    assert sparse_prediction(a, b, alpha=0.01).weights.shape == (3, 6)  # a converged fit passes

    import sklearn.linear_model

    class Exploding(sklearn.linear_model.Lasso):
        def fit(self, x, y):
            super().fit(x, y)
            self.coef_ = self.coef_ * 1e25  # what one seed of the convergent-learning notebook got
            return self

    monkeypatch.setattr(sklearn.linear_model, "Lasso", Exploding)
    with pytest.raises(FloatingPointError, match="the sparse fit diverged for 3 of 3 units"):
        sparse_prediction(a, b, alpha=0.01)


# --- dead units -------------------------------------------------------------------------------------
def test_live_units_flags_units_that_never_vary(rng):
    x = rng.normal(size=(50, 4))
    x[:, 1] = 0.0          # a ReLU that never fires
    x[:, 2] = 0.37         # constant, but not zero
    x[:, 3] = 0.0
    x[7, 3] = 1e-3         # fires once: alive
    np.testing.assert_array_equal(live_units(x), [True, False, False, True])


def test_match_live_units_leaves_dead_units_out_and_keeps_the_original_indices(rng):
    a = np.maximum(rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)), 0)
    a[:, 2] = 0.0                                   # dead in a, and so in its shuffled copy b
    perm = rng.permutation(6)
    b = a[:, perm]                                  # unit c of b is unit perm[c] of a
    for method in ("bipartite", "semi"):
        unit, partner, r = match_live_units(a, b, method)
        np.testing.assert_array_equal(unit, [0, 1, 3, 4, 5])
        np.testing.assert_array_equal(perm[partner], unit)
        np.testing.assert_allclose(r, 1.0)


def test_bipartite_with_more_live_units_in_a_pairs_every_unit_of_b_once(rng):
    a, b = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    b[:, :3] += 2 * a[:, [3, 1, 0]]
    b[:, 3:] = 0.0                                  # b has 3 live units, a has 5
    unit, partner, r = match_live_units(a, b, "bipartite")
    assert len(unit) == 3 and sorted(partner) == [0, 1, 2] and len(set(unit)) == 3
    corr = correlation(a, b[:, :3])
    best = max(itertools.permutations(range(5), 3), key=lambda rows: corr[list(rows), [0, 1, 2]].sum())
    np.testing.assert_allclose(r.sum(), corr[list(best), [0, 1, 2]].sum())
    np.testing.assert_array_equal(unit, np.sort(unit))  # read from a's side, in a's order


def test_match_live_units_bad_arguments_raise(rng):
    a = rng.normal(size=(20, 3))
    with pytest.raises(ValueError, match="method == 'greedy'"):
        match_live_units(a, a, "greedy")
    with pytest.raises(ValueError, match="no live units"):
        match_live_units(a, np.zeros((20, 2)))


# --- the L1 path ------------------------------------------------------------------------------------
def test_lasso_supports_find_the_true_inputs_one_at_a_time(rng):
    """Unit 0 of b is a sum of units 2 and 7 of a, unit 1 a copy of unit 4, unit 2 dead."""
    a = zscore(rng.normal(size=(3000, 10)))
    a[:, 9] = 0.0                                   # a dead input is never chosen
    b = np.stack([a[:, 2] + 1.5 * a[:, 7], a[:, 4], np.zeros(3000)], axis=1)
    b[:, :2] += 0.05 * rng.normal(size=(3000, 2))
    s = lasso_supports(a, b, 3)
    assert s.shape == (3, 3, 10)
    assert set(np.flatnonzero(s[0, 0])) == {7}      # the larger weight enters first
    assert set(np.flatnonzero(s[1, 0])) == {2, 7}
    assert set(np.flatnonzero(s[0, 1])) == {4}
    assert not s[:, 2].any() and not s[..., 9].any()
    assert np.all(s.sum(-1) <= np.arange(1, 4)[:, None])  # at most k inputs


def test_lasso_supports_reach_every_live_input_and_start_at_the_most_correlated(rng):
    a = zscore(rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)))
    b = zscore(a @ rng.normal(size=(6, 4)) + rng.normal(size=(500, 4)))
    s = lasso_supports(a, b, 6)
    np.testing.assert_array_equal(s[0].argmax(1), np.abs(correlation(b, a)).argmax(1))
    assert s[-1].all()                              # with every input allowed, the path uses all


def test_least_squares_on_a_support_is_ordinary_least_squares(rng):
    a = rng.normal(size=(400, 5))
    b = np.stack([2 * a[:, 1] - a[:, 3] + 0.5, a.sum(1), rng.normal(size=400)], axis=1)
    support = np.zeros((3, 5), dtype=bool)
    support[0, [1, 3]] = True
    support[1] = True                               # unit 2 has no inputs: its mean
    fit = least_squares_on(a, b, support)
    np.testing.assert_allclose(fit.weights[0], [0, 2, 0, -1, 0], atol=1e-10)
    np.testing.assert_allclose(fit.intercept[0], 0.5, atol=1e-10)
    dense = sparse_prediction(a, b, alpha=0)
    np.testing.assert_allclose(fit.weights[1], dense.weights[1], atol=1e-10)
    np.testing.assert_allclose(fit.predict(a)[:, 2], b[:, 2].mean())
    maps = least_squares_on(a, b, np.stack([support, ~support]))
    assert len(maps) == 2 and np.allclose(maps[0].weights, fit.weights)


def test_sparse_prediction_ignores_inputs_that_never_vary(rng):
    a = zscore(rng.normal(size=(1000, 5)))
    b = a[:, [0]] - a[:, [2]] + 0.1 * rng.normal(size=(1000, 1))
    with_dead = np.hstack([a, np.full((1000, 1), -0.3)])  # z-scored elsewhere, constant here
    fit, ref = sparse_prediction(with_dead, b, alpha=0.01), sparse_prediction(a, b, alpha=0.01)
    assert fit.weights[0, 5] == 0
    np.testing.assert_allclose(fit.weights[:, :5], ref.weights, atol=1e-8)


def test_bad_path_arguments_raise(rng):
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    with pytest.raises(ValueError, match="max_inputs == 0"):
        lasso_supports(a, b, 0)
    with pytest.raises(ValueError, match="same inputs"):
        lasso_supports(a, b[:10], 2)
    with pytest.raises(ValueError, match="support has shape"):
        least_squares_on(a, b, np.ones((3, 2), dtype=bool))
