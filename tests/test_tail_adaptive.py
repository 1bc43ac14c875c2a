import math

import numpy as np
import pytest
import torch
from scipy import stats

from repro.normalizing_flows import coupling
from repro.normalizing_flows import tail_adaptive as ta
from layer_checks import randomize


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("nu", [0.8, 2.0, 5.0, 40.0])
def test_student_t_log_prob_matches_scipy(nu):
    u = torch.linspace(-50, 50, 401, dtype=torch.float64)[:, None]
    ours = ta.student_t_log_prob(u, torch.tensor([nu]))[:, 0].numpy()
    np.testing.assert_allclose(ours, stats.t.logpdf(u[:, 0].numpy(), nu), rtol=0, atol=1e-7)


def test_infinite_dof_is_the_standard_normal():
    u = torch.linspace(-6, 6, 101, dtype=torch.float64)[:, None]
    ours = ta.student_t_log_prob(u, torch.tensor([math.inf]))[:, 0].numpy()
    np.testing.assert_allclose(ours, stats.norm.logpdf(u[:, 0].numpy()), atol=1e-12)


def test_base_mixes_dof_per_dimension_and_samples_exactly():
    base = ta.StudentTBase([math.inf, 3.0])
    u = base.sample(20000, _gen())
    assert u.shape == (20000, 2)
    # exact marginals: Kolmogorov-Smirnov against the normal and t(3)
    assert stats.kstest(u[:, 0].numpy(), "norm").pvalue > 1e-3
    assert stats.kstest(u[:, 1].numpy(), "t", args=(3.0,)).pvalue > 1e-3
    x = torch.tensor([[0.3, -2.0]], dtype=torch.float64)
    expected = stats.norm.logpdf(0.3) + stats.t.logpdf(-2.0, 3.0)
    assert base.log_prob(x).item() == pytest.approx(expected, abs=1e-10)


def test_shared_learnable_dof_gets_gradients():
    base = ta.StudentTBase(5.0, dim=3, shared_learnable=True).double()
    assert torch.allclose(base.df, torch.full((3,), 5.0, dtype=torch.float64))
    base.log_prob(torch.randn(10, 3, dtype=torch.float64, generator=_gen())).sum().backward()
    assert base.raw_df.grad is not None and torch.isfinite(base.raw_df.grad).all()


@pytest.mark.parametrize("bad", [[0.0], [-1.0], [float("nan")], []])
def test_bad_dof_raises(bad):
    with pytest.raises(ValueError, match="positive numbers or inf"):
        ta.StudentTBase(bad)


def test_shared_learnable_needs_one_finite_dof():
    with pytest.raises(ValueError, match="shared learnable"):
        ta.StudentTBase([2.0, 3.0], shared_learnable=True)


@pytest.mark.parametrize("nu", [1.5, 2.0, 4.0])
def test_hill_recovers_the_student_t_tail_index(nu):
    x = ta.StudentTBase([nu]).sample(50000, _gen(1))[:, 0]
    k = 300
    assert ta.hill_estimator(x, k) == pytest.approx(nu, abs=4 * nu / math.sqrt(k))


def test_moment_estimator_separates_heavy_from_light():
    k = 400
    xi_t, se_t = ta.moment_estimator(ta.StudentTBase([2.0]).sample(40000, _gen(2))[:, 0], k)
    xi_n, se_n = ta.moment_estimator(torch.randn(40000, generator=_gen(3), dtype=torch.float64), k)
    assert abs(xi_t - 0.5) < 3 * se_t
    assert abs(xi_n) < 3 * se_n


def test_estimate_tails_classifies_columns():
    x = torch.cat([torch.randn(5000, 1, generator=_gen(4), dtype=torch.float64),
                   ta.StudentTBase([2.0]).sample(5000, _gen(5))], dim=1)
    df = ta.estimate_tails(x)
    assert math.isinf(df[0]) and df[1] == pytest.approx(2.0, abs=0.5)


def test_estimator_input_errors():
    with pytest.raises(ValueError, match="smaller than the sample size"):
        ta.hill_estimator(torch.randn(10), 10)
    with pytest.raises(ValueError, match=r"must be \(N, D\)"):
        ta.estimate_tails(torch.randn(100))


def _flow(df, dim=4, seed=0):
    g = _gen(seed)
    layers = []
    for i in range(3):
        layers += [coupling.AffineCoupling(dim, mask=[(j + i) % 2 for j in range(dim)], hidden=8),
                   coupling.Permute(dim, ta.group_permutation([[0, 1], [2, 3]], g))]
    return ta.TailAdaptiveFlow(layers, dim, ta.StudentTBase(df))


def test_flow_log_prob_matches_its_samples_and_inverts():
    flow = randomize(_flow([math.inf, math.inf, 2.0, 3.0]).double(), scale=0.3)
    x, log_p = flow.sample_and_log_prob(64, _gen(6))
    torch.testing.assert_close(flow.log_prob(x), log_p, atol=1e-10, rtol=1e-10)


def test_flow_density_integrates_to_one_in_2d():
    layers = [coupling.AffineCoupling(2, hidden=8), coupling.Permute(2),
              coupling.AffineCoupling(2, hidden=8)]
    flow = randomize(ta.TailAdaptiveFlow(layers, 2, ta.StudentTBase([math.inf, 5.0])).double(), 0.3)
    # the density's mass on a fine grid (the t(5) tail beyond 30 holds well under 1e-3)
    t = torch.linspace(-30, 30, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum().item() * (t[1] - t[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=0.02)


def test_base_coordinates_set_the_tails_of_the_flow():
    """The property mTAF relies on: with group-keeping permutations, each marginal of the flow has
    its base coordinate's tail (heavy stays heavy, light stays light)."""
    flow = randomize(_flow([math.inf, math.inf, 2.0, 2.0]).double(), scale=0.3)
    with torch.no_grad():
        x = flow.sample(40000, _gen(7))
    df = ta.estimate_tails(x, k=400)
    assert math.isinf(df[0]) and math.isinf(df[1])
    assert np.all(np.abs(df[2:].numpy() - 2.0) < 0.6)


def test_group_permutation_keeps_groups():
    perm = ta.group_permutation([[0, 2, 4], [1, 3]], _gen(8))
    assert set(perm[[0, 2, 4]].tolist()) == {0, 2, 4} and set(perm[[1, 3]].tolist()) == {1, 3}
    with pytest.raises(ValueError, match="exactly once"):
        ta.group_permutation([[0, 1], [1, 2]])


def test_copula_log_prob_is_exact():
    df = [math.inf, 3.0]
    corr = [[1.0, 0.4], [0.4, 1.0]]
    target = ta.GaussianCopula(df, corr, scale=[1.0, 2.0])
    x = torch.tensor([[0.5, -3.0], [-1.0, 10.0]], dtype=torch.float64)
    # by hand: z = Phi^-1(F(x)), Gaussian copula density times the marginals
    z = np.stack([x[:, 0].numpy(), stats.norm.ppf(stats.t.cdf(x[:, 1].numpy() / 2, 3.0))], 1)
    expected = (stats.multivariate_normal(cov=np.array(corr)).logpdf(z)
                - stats.norm.logpdf(z).sum(1) + stats.norm.logpdf(x[:, 0].numpy())
                + stats.t.logpdf(x[:, 1].numpy() / 2, 3.0) - math.log(2.0))
    np.testing.assert_allclose(target.log_prob(x).numpy(), expected, atol=1e-9)


def test_copula_samples_have_the_right_marginals_and_quantiles():
    target = ta.GaussianCopula([math.inf, 2.0], [[1.0, 0.5], [0.5, 1.0]])
    x = target.sample(20000, _gen(9))
    assert stats.kstest(x[:, 0].numpy(), "norm").pvalue > 1e-3
    assert stats.kstest(x[:, 1].numpy(), "t", args=(2.0,)).pvalue > 1e-3
    assert target.abs_quantile(np.array([0.95]), 0)[0] == pytest.approx(stats.norm.ppf(0.975))


def test_copula_rejects_bad_correlation():
    with pytest.raises(ValueError, match="unit diagonal"):
        ta.GaussianCopula([2.0, 2.0], [[2.0, 0.0], [0.0, 1.0]])


def test_loglog_tail_area_is_small_for_exact_samples():
    target = ta.GaussianCopula([math.inf], [[1.0]])
    exact = ta.loglog_tail_area(target.sample(20000, _gen(10))[:, 0],
                                lambda p: target.abs_quantile(p, 0))
    wrong = ta.loglog_tail_area(3 * target.sample(20000, _gen(11))[:, 0],
                                lambda p: target.abs_quantile(p, 0))
    assert exact < 0.5 < wrong
