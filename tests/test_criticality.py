import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from repro.infinite_width_kernels import criticality as crit


def quad(f, K):
    """A trusted reference: adaptive quadrature of f against N(0, K), split at 0."""
    p = lambda z: f(z) * norm.pdf(z, 0.0, math.sqrt(K))  # noqa: E731
    kw = dict(epsabs=1e-13, epsrel=1e-12, limit=200)
    return integrate.quad(p, -np.inf, 0, **kw)[0] + integrate.quad(p, 0, np.inf, **kw)[0]


# --- the infinite-width recursions --------------------------------------------------------------
def test_relu_kernel_is_geometric_in_c_w():
    K = crit.kernel_recursion("relu", 1.5, 10, C_b=0.0, C_W=[1.6, 2.0, 2.4])
    assert K.shape == (10, 3)
    expected = 1.5 * (np.array([1.6, 2.0, 2.4]) / 2) ** np.arange(10)[:, None]
    np.testing.assert_allclose(K, expected, rtol=1e-10)


def test_a_kernel_that_underflows_to_zero_stays_at_the_fixed_point_zero():
    K = crit.kernel_recursion("tanh", 0.7, 3000, C_b=0.0, C_W=0.7)  # 0.7^3000 underflows
    assert K[-1] == 0.0 and np.all(np.diff(K) <= 0)
    np.testing.assert_allclose(crit.kernel_map("relu", np.array([0.0, 1.0]), C_b=0.2, C_W=2.0), [0.2, 1.2])


def test_kernel_map_matches_adaptive_quadrature():
    for K in (0.01, 0.5, 3.0):
        ref = 0.1 + 1.3 * quad(lambda z: np.tanh(z) ** 2, K)
        assert crit.kernel_map("tanh", K, C_b=0.1, C_W=1.3) == pytest.approx(ref, abs=1e-11)


def test_susceptibilities_match_finite_differences_and_quadrature():
    K, h = 0.7, 1e-5
    chi_par, chi_perp = crit.susceptibilities("tanh", K, C_W=1.2)
    fd = (crit.kernel_map("tanh", K + h, 0.0, 1.2) - crit.kernel_map("tanh", K - h, 0.0, 1.2)) / (2 * h)
    assert chi_par == pytest.approx(fd, rel=1e-7)
    assert chi_perp == pytest.approx(1.2 * quad(lambda z: (1 - np.tanh(z) ** 2) ** 2, K), rel=1e-10)


def test_criticality_of_relu_and_tanh():
    par, perp = crit.susceptibilities("relu", np.logspace(-2, 2, 5), C_W=2.0)
    np.testing.assert_allclose([par, perp], 1.0, atol=1e-12)
    par, perp = crit.susceptibilities("tanh", 1e-4, C_W=1.0)
    assert par == pytest.approx(1 - 4e-4, abs=1e-6)   # chi_par = 1 - 4K + O(K^2)
    assert perp == pytest.approx(1 - 2e-4, abs=1e-6)  # chi_perp = 1 - 2K + O(K^2)


def test_tanh_kernel_decays_as_one_over_two_l():
    K = crit.kernel_recursion("tanh", 1.0, 200, 0.0, 1.0)
    assert 2 * 200 * K[-1] == pytest.approx(1.0, abs=np.log(200) / 200)


def test_relu_vertex_grows_by_nu_per_layer():
    K, V = crit.vertex_recursion("relu", 2.0, 6, 0.0, 2.0)
    np.testing.assert_allclose(V / K ** 2, 5.0 * np.arange(6), atol=1e-9)
    # deep linear network (the book's Ch. 3): nu = 2
    K, V = crit.vertex_recursion("identity", 1.0, 4, 0.0, 1.0)
    np.testing.assert_allclose(V / K ** 2, 2.0 * np.arange(4), atol=1e-9)


def test_four_point_vertex_starts_at_zero_and_its_first_step_matches_quadrature():
    assert crit.four_point_vertex("tanh", [0.5]).tolist() == [0.0]
    # V^(2) = C_W^2 Var[sigma(z)^2] for z ~ N(0, K^(1)): the first layer's variance of sigma^2
    V = crit.four_point_vertex("tanh", [0.5, 0.9], C_W=1.3)
    var = quad(lambda z: np.tanh(z) ** 4, 0.5) - quad(lambda z: np.tanh(z) ** 2, 0.5) ** 2
    assert V[0] == 0.0 and V[1] == pytest.approx(1.3 ** 2 * var, rel=1e-9)


def test_kernel_correction_vanishes_for_relu_and_is_negative_for_tanh():
    np.testing.assert_allclose(crit.kernel_correction("relu", 2.0, 6, 0.0, 2.0), 0.0, atol=1e-10)
    G1 = crit.kernel_correction("tanh", 1.0, 6, 0.0, 1.0)
    assert G1[0] == G1[1] == 0 and np.all(G1[2:] < 0)  # V^(1) = 0, so K^{1}(2) = 0


def test_scale_invariant_nu_and_kurtosis():
    assert crit.scale_invariant_nu(1.0, 0.0) == pytest.approx(5.0)
    assert crit.scale_invariant_nu(1.0, 1.0) == pytest.approx(2.0)
    assert crit.scale_invariant_kurtosis(10, 1) == pytest.approx(3.0)
    # at large width it is the book's first-order result 3 + 3 nu (l - 1) / n
    n = 1e5
    assert (crit.scale_invariant_kurtosis(n, 3) - 3) * n == pytest.approx(3 * 5.0 * 2, rel=1e-3)


# --- Monte Carlo ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["weights", "conditional"])
def test_relu_monte_carlo_matches_the_exact_kurtosis(method):
    g = torch.Generator().manual_seed(0)
    m = crit.preactivation_moments(torch.ones(8), 16, 3, 4000 if method == "weights" else 20000,
                                   "relu", 0.0, 2.0, method=method, chunk=1000, generator=g)
    assert m["m2"].shape == m["m4"].shape == (3, 4000 if method == "weights" else 20000)
    mean, se = crit.mean_and_se(m["m2"])
    assert np.all(np.abs(mean - 2.0) <= 4 * se)
    R, se = crit.kurtosis_ratio(m["m2"], m["m4"])
    assert np.all(np.abs(R - crit.scale_invariant_kurtosis(16, np.arange(1, 4))) <= 4 * se)


def test_tanh_monte_carlo_kernel_shift_is_the_one_over_n_correction():
    g = torch.Generator().manual_seed(1)
    n, depth = 16, 6
    m = crit.preactivation_moments(torch.ones(8), n, depth, 100000, "tanh", 0.0, 1.0,
                                   method="conditional", chunk=50000, generator=g)
    mean, se = crit.mean_and_se(m["m2"])
    K = crit.kernel_recursion("tanh", 1.0, depth, 0.0, 1.0)
    shift = crit.kernel_correction("tanh", 1.0, depth, 0.0, 1.0) / n
    assert np.all(np.abs(mean - K - shift) <= 4 * se + np.abs(shift) * np.arange(1, depth + 1) / n)
    assert np.abs(mean - K)[-1] > 4 * se[-1]  # without the correction the infinite-width K is off


def test_kurtosis_ratio_standard_error_matches_the_bootstrap():
    rng = np.random.default_rng(0)
    m2 = rng.gamma(4.0, 0.25, size=3000)
    m4 = 3 * m2 ** 2 * rng.gamma(9.0, 1 / 9, size=3000)
    R, se = crit.kurtosis_ratio(m2, m4)
    boot = [crit.kurtosis_ratio(m2[i], m4[i])[0]
            for i in (rng.integers(0, 3000, 3000) for _ in range(300))]
    assert se == pytest.approx(np.std(boot), rel=0.15)
    assert R == pytest.approx(m4.mean() / m2.mean() ** 2)


# --- estimators and verdicts -------------------------------------------------------------------
def test_growth_factor_inverts_a_geometric_kernel():
    g, se = crit.growth_factor(2.0 * 1.2 ** 9, 0.0, 2.0, 10)
    assert g == pytest.approx(1.2) and se == 0.0
    # delta method: a relative error e of the mean at layer l is e / (l - 1) on g
    g, se = crit.growth_factor(4.0, 0.04, 1.0, 3)
    assert g == pytest.approx(2.0) and se == pytest.approx(2.0 * 0.01 / 2)


def test_nu_from_kurtosis_inverts_the_exact_scale_invariant_kurtosis():
    width, layer = np.array([16, 32, 64]), np.array([3, 5, 9])
    R = crit.scale_invariant_kurtosis(width, layer, nu=5.0)
    nu, se = crit.nu_from_kurtosis(R, 0.01 * R, width, layer)
    np.testing.assert_allclose(nu, 5.0, rtol=1e-12)
    # its standard error against a finite difference of the inversion
    h = 1e-6
    fd = (crit.nu_from_kurtosis(R + h, 0, width, layer)[0] - nu) / h
    np.testing.assert_allclose(se, np.abs(fd) * 0.01 * R, rtol=1e-4)


def test_pooled_mean_weights_by_inverse_variance():
    mean, se = crit.pooled_mean([1.0, 2.0], [1.0, 2.0])
    assert mean == pytest.approx((1 + 2 / 4) / (1 + 1 / 4)) and se == pytest.approx((1 + 1 / 4) ** -0.5)


@pytest.mark.parametrize("measured, uncertainty, verdict", [
    ([1.0, 1.05], 0.01, "holds"),          # every interval inside [0.9, 1.1]
    ([1.0, 1.2], 0.01, "fails"),           # one wholly outside
    ([1.0, 1.095], 0.01, "inconclusive"),  # one straddles the edge, none outside
    ([1.0, float("nan")], 0.01, "fails"),
])
def test_joint_verdict(measured, uncertainty, verdict):
    assert crit.joint_verdict(measured, uncertainty, 0.9, 1.1) == verdict


# --- failure paths -------------------------------------------------------------------------------
def test_rejects_bad_input():
    with pytest.raises(ValueError, match="activation == 'swish'"):
        crit.kernel_map("swish", 1.0)
    with pytest.raises(ValueError, match="K == .*must be finite and > 0"):
        crit.susceptibilities("tanh", 0.0)
    with pytest.raises(ValueError, match="K == .*must be finite and >= 0"):
        crit.kernel_map("tanh", -1.0)
    with pytest.raises(ValueError, match="depth == 0, must be an int >= 1"):
        crit.kernel_recursion("tanh", 1.0, 0)
    with pytest.raises(ValueError, match="K must be a 1-d kernel path"):
        crit.four_point_vertex("tanh", np.ones((2, 2)))
    with pytest.raises(ValueError, match="both 0"):
        crit.scale_invariant_nu(0.0, 0.0)
    with pytest.raises(ValueError, match="width and layer must be >= 1"):
        crit.scale_invariant_kurtosis(0, 1)
    with pytest.raises(ValueError, match="method == 'exact'"):
        crit.preactivation_moments(torch.ones(4), 8, 2, 10, method="exact")
    with pytest.raises(ValueError, match="width == 0"):
        crit.preactivation_moments(torch.ones(4), 0, 2, 10)
    with pytest.raises(ValueError, match="one input of shape"):
        crit.preactivation_moments(torch.ones(2, 4), 8, 2, 10)
    with pytest.raises(ValueError, match="at least 2 independent inits"):
        crit.mean_and_se(np.ones((3, 1)))
    with pytest.raises(ValueError, match="same shape"):
        crit.kurtosis_ratio(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="layer == 1, must be an int >= 2"):
        crit.growth_factor(1.0, 0.1, 1.0, 1)
    with pytest.raises(ValueError, match="need mean > 0"):
        crit.growth_factor(-1.0, 0.1, 1.0, 3)
    with pytest.raises(ValueError, match="need layer >= 2"):
        crit.nu_from_kurtosis(3.0, 0.1, 16, 1)
    with pytest.raises(ValueError, match="all > 0"):
        crit.pooled_mean([1.0, 2.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="no measurements"):
        crit.joint_verdict([], 0.1, 0.0, 1.0)
