"""Tests for repro.core.gaussian and repro.core.activations: quadrature against closed forms and
adaptive quadrature, the bivariate expectation against the arc-cosine kernel and Monte Carlo, and
every activation's NumPy form and derivative against torch."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from repro.core import activations, gaussian
from repro.core.activations import selu


def quad_expectation(f, mean, var):
    """A trusted reference: adaptive quadrature of f against the Gaussian density, split at 0."""
    p = lambda z: f(z) * norm.pdf(z, mean, math.sqrt(var))
    kw = dict(epsabs=1e-13, epsrel=1e-13, limit=200)
    return integrate.quad(p, -np.inf, 0, **kw)[0] + integrate.quad(p, 0, np.inf, **kw)[0]


# --- gaussian_expectation ---------------------------------------------------------------------
def test_gauss_hermite_is_exact_for_polynomials():
    m, v = 0.3, 2.0
    assert gaussian.gaussian_expectation(lambda z: z ** 2, m, v, n=8) == pytest.approx(v + m ** 2)
    assert gaussian.gaussian_expectation(lambda z: z ** 4, m, v, n=8) == pytest.approx(
        3 * v ** 2 + 6 * v * m ** 2 + m ** 4)


@pytest.mark.parametrize("mean,var", [(0.0, 1.0), (0.7, 0.2), (-1.5, 4.0)])
def test_relu_expectation_matches_the_closed_form(mean, var):
    sd = math.sqrt(var)
    exact = sd * norm.pdf(mean / sd) + mean * norm.cdf(mean / sd)
    assert gaussian.gaussian_expectation("relu", mean, var) == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("name,f", [("tanh", np.tanh), ("selu", selu)])
def test_expectation_matches_adaptive_quadrature(name, f):
    for mean, var in [(0.0, 1.0), (0.1, 1.5), (-0.4, 0.05), (1.0, 16.0), (0.5, 100.0)]:
        got = gaussian.gaussian_expectation(name, mean, var)
        assert got == pytest.approx(quad_expectation(f, mean, var), abs=1e-10)


def test_expectation_broadcasts_over_means_and_variances():
    means, variances = np.array([[-0.5], [0.0], [1.0]]), np.linspace(0.5, 2, 4)
    out = gaussian.gaussian_expectation("selu", means, variances)
    assert out.shape == (3, 4)
    ref = [[quad_expectation(selu, m, v) for v in variances] for m in means[:, 0]]
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-10)


def test_expectation_rejects_bad_input():
    with pytest.raises(ValueError, match="var must be finite and >= 0"):
        gaussian.gaussian_expectation("tanh", 0.0, -1.0)
    with pytest.raises(ValueError, match="activation == 'swish'"):
        gaussian.gaussian_expectation("swish")
    with pytest.raises(ValueError, match="n == 1, must be an int >= 2"):
        gaussian.gaussian_expectation("tanh", n=1)
    with pytest.raises(TypeError, match="activation must be a callable"):
        gaussian.gaussian_expectation(3.0)


def test_zero_variance_is_the_point_mass():
    got = gaussian.gaussian_expectation("relu", np.array([-1.0, 2.0, 0.5]), np.array([0.0, 0.0, 1.0]))
    assert got[:2].tolist() == [0.0, 2.0]
    assert got[2] == pytest.approx(quad_expectation(lambda z: np.maximum(z, 0), 0.5, 1.0), abs=1e-12)


def arc_cosine(s11, s22, s12):
    """E[relu(u) relu(v)] in closed form (Cho & Saul's arc-cosine kernel of degree 1)."""
    norm_, cos = math.sqrt(s11 * s22), s12 / math.sqrt(s11 * s22)
    angle = math.acos(cos)
    return norm_ * (math.sin(angle) + (math.pi - angle) * cos) / (2 * math.pi)


@pytest.mark.parametrize("s11, s22, s12", [(1.0, 1.0, 0.3), (2.0, 0.5, -0.9), (1.5, 1.5, 1.5), (1.0, 4.0, 0.0)])
def test_bivariate_expectation_matches_the_arc_cosine_kernel(s11, s22, s12):
    got = gaussian.bivariate_expectation("relu", "relu", s11, s22, s12)
    assert got == pytest.approx(arc_cosine(s11, s22, s12), abs=1e-10)


def test_bivariate_expectation_matches_monte_carlo_for_tanh_and_broadcasts():
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    z = np.random.default_rng(0).multivariate_normal([0, 0], cov, size=2_000_000)
    mc = np.mean(np.tanh(z[:, 0]) * np.tanh(z[:, 1]))
    got = gaussian.bivariate_expectation("tanh", "tanh", [1.0, 1.0], 2.0, [0.6, 0.0])
    assert got.shape == (2,) and got[1] == pytest.approx(0.0, abs=1e-12)
    assert got[0] == pytest.approx(mc, abs=3e-3)
    with pytest.raises(ValueError, match="var_u must be > 0"):
        gaussian.bivariate_expectation("tanh", "tanh", 0.0, 1.0, 0.0)


@pytest.mark.parametrize("name", list(activations.ACTIVATIONS))
def test_each_activation_agrees_with_its_torch_module_and_derivative(name):
    act = activations.get(name)
    x = torch.linspace(-4, 4, 801, dtype=torch.float64, requires_grad=True)
    y = act.module()(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    xs = x.detach().numpy()
    assert np.allclose(act.numpy(xs), y.detach().numpy(), atol=1e-12)
    away = np.all(np.abs(xs[:, None] - np.array(act.kinks or [np.inf])) > 1e-9, axis=1)
    assert np.allclose(act.derivative(xs)[away], grad.numpy()[away], atol=1e-12)


def test_unknown_activation():
    with pytest.raises(ValueError, match="activation == 'swish', must be one of 'relu'"):
        activations.get("swish")
