import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import erfc
from scipy.stats import norm

from repro.normalization import self_normalizing as snn


def quad_expectation(f, mean, var):
    """A trusted reference: adaptive quadrature of f against the Gaussian density, split at 0."""
    p = lambda z: f(z) * norm.pdf(z, mean, math.sqrt(var))
    kw = dict(epsabs=1e-13, epsrel=1e-13, limit=200)
    return integrate.quad(p, -np.inf, 0, **kw)[0] + integrate.quad(p, 0, np.inf, **kw)[0]


# --- the SELU map g ---------------------------------------------------------------------------
def test_selu_matches_torch():
    x = np.linspace(-5, 5, 101)
    ref = torch.nn.functional.selu(torch.as_tensor(x)).numpy()
    assert np.allclose(snn.selu(x), ref, atol=1e-12)


@pytest.mark.parametrize("mu,nu,omega,tau", [(0.0, 1.0, 0.0, 1.0), (0.1, 1.5, 0.1, 1.1),
                                             (-0.1, 0.8, -0.1, 0.95), (1.0, 16.0, 0.1, 1.25),
                                             (0.05, 0.05, 0.1, 0.8)])
def test_quadrature_map_matches_the_papers_closed_form(mu, nu, omega, tau):
    quad = snn.mean_var_map("selu", mu, nu, omega, tau)
    closed = snn.selu_mean_var_closed_form(mu, nu, omega, tau)
    assert np.allclose(quad, closed, atol=1e-11)


def test_identity_map_passes_moments_through():
    m, v = snn.mean_var_map("identity", 0.5, 2.0, omega=0.4, tau=1.5)
    assert (m, v) == pytest.approx((0.2, 3.0))


def test_selu_parameters_solve_the_fixed_point_equations():
    alpha, lam = snn.selu_parameters()
    # the paper's closed form (its Eq. 14)
    e = math.e
    alpha14 = -math.sqrt(2 / math.pi) / (erfc(1 / math.sqrt(2)) * math.exp(0.5) - 1)
    lam14 = ((1 - erfc(1 / math.sqrt(2)) * math.sqrt(e)) * math.sqrt(2 * math.pi)
             * (2 * erfc(math.sqrt(2)) * e ** 2 + math.pi * erfc(1 / math.sqrt(2)) ** 2 * e
                - 2 * (2 + math.pi) * erfc(1 / math.sqrt(2)) * math.sqrt(e) + math.pi + 2) ** -0.5)
    assert alpha == pytest.approx(alpha14, abs=1e-10)
    assert lam == pytest.approx(lam14, abs=1e-10)
    assert (alpha, lam) == pytest.approx((snn.SELU_ALPHA, snn.SELU_LAMBDA), abs=1e-10)


def test_selu_parameters_reject_a_non_positive_variance():
    with pytest.raises(ValueError, match="nu == 0"):
        snn.selu_parameters(0.0, 0)


# --- Jacobian and iteration -------------------------------------------------------------------
def test_jacobian_of_a_linear_map_is_its_matrix():
    a = np.array([[0.5, -0.2], [0.1, 0.3]])
    got = snn.jacobian(lambda m, v: tuple(a @ np.array([m, v])), 0.3, 1.2)
    assert np.allclose(got, a)


def test_jacobian_at_the_selu_fixed_point_matches_the_closed_form_and_the_paper():
    got = snn.jacobian(lambda m, v: snn.mean_var_map("selu", m, v), 0.0, 1.0)
    closed = snn.jacobian(lambda m, v: snn.selu_mean_var_closed_form(m, v), 0.0, 1.0)
    assert np.allclose(got, closed, atol=1e-9)
    # the paper's Eq. 6 prints 0.088834 (our 0.0888348 cut off) and 0.782648 (0.7826479 rounded)
    assert got[0, 0] == pytest.approx(0, abs=1e-9) and got[1, 0] == pytest.approx(0, abs=1e-9)
    assert 0.088834 <= got[0, 1] < 0.088835
    assert 0.7826475 <= got[1, 1] < 0.7826485


def test_jacobian_broadcasts_over_points():
    mu, nu = np.meshgrid([-0.1, 0.0, 0.1], [0.8, 1.0])
    got = snn.jacobian(lambda m, v: (m * v, m + v ** 2), mu, nu)
    assert got.shape == (2, 3, 2, 2)
    assert np.allclose(got[..., 0, 0], nu) and np.allclose(got[..., 1, 1], 2 * nu)


def test_jacobian_rejects_a_bad_step():
    with pytest.raises(ValueError, match="h == 0"):
        snn.jacobian(lambda m, v: (m, v), 0.0, 1.0, h=0)


def test_iterate_map_shape_and_convergence():
    path = snn.iterate_map(lambda m, v: (0.5 * m, 1 + 0.5 * (v - 1)), [0.4, -0.2], 3.0, 60)
    assert path.shape == (61, 2, 2)
    assert np.allclose(path[0], [[0.4, -0.2], [3.0, 3.0]])
    assert np.allclose(path[-1], [[0, 0], [1, 1]])


def test_iterate_map_rejects_negative_steps():
    with pytest.raises(ValueError, match="steps == -1"):
        snn.iterate_map(lambda m, v: (m, v), 0.0, 1.0, -1)


@pytest.mark.parametrize("residual, accepted", [(1e-15, True), (1e-6, False)])
def test_selu_parameters_judge_a_stalled_solver_by_its_residual(monkeypatch, residual, accepted):
    from types import SimpleNamespace
    stalled = SimpleNamespace(success=False, x=np.array([1.67, 1.05]), fun=np.array([residual, 0.0]),
                              message="xtol is too small, no further improvement")
    monkeypatch.setattr(snn.optimize, "root", lambda *a, **k: stalled)
    if accepted:
        assert snn.selu_parameters() == (1.67, 1.05)
    else:
        with pytest.raises(RuntimeError, match="no further improvement"):
            snn.selu_parameters()
