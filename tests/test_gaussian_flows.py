"""Tests of repro.generative_diffusion.gaussian_flows against the shared sampler, Monte Carlo and
closed forms."""
import math

import pytest
import torch

from repro.generative_diffusion import distances, gaussian_flows as gf, processes, samplers


def _data(dim=3, seed=0):
    return gf.GaussianData.random(dim, 0.3, 3.0, torch.Generator().manual_seed(seed))


def _score(data, process):
    def score(x, t):
        j, c = gf.score_affine(data.mean, data.cov, process, float(t))
        return x @ j.T + c
    return score


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("process", [processes.ornstein_uhlenbeck(3.0),
                                     processes.VariancePreserving(0.1, 20.0),
                                     processes.VarianceExploding(0.01, 10.0)])
def test_affine_step_matches_the_shared_sampler_exactly(method, process):
    data = _data()
    times = torch.linspace(process.t_max if hasattr(process, "beta") else 1.0, 0.0, 7,
                           dtype=torch.float64)
    points = torch.cat([torch.zeros(1, 3), torch.eye(3), torch.randn(4, 3)]).double()
    ours = points
    for t, t_next in zip(times[:-1], times[1:]):
        a, b = gf.step_affine(data.mean, data.cov, process, t, t_next, method)
        ours = ours @ a.T + b
    theirs = samplers.probability_flow(_score(data, process), process, points, times, method)
    assert torch.allclose(ours, theirs, atol=1e-10, rtol=1e-10)


def test_exponential_step_solves_the_frozen_score_ode():
    # dx/dt = f x - g^2 s / 2 with s frozen at its value at t, integrated by a fine Heun grid
    data = _data()
    for process in (processes.ornstein_uhlenbeck(2.0), processes.VariancePreserving(0.1, 20.0),
                    processes.VarianceExploding(0.01, 10.0)):
        t, t_next = 0.8, 0.5
        x = torch.randn(5, 3, dtype=torch.float64)
        s = _score(data, process)(x, t)
        a, b = gf.step_affine(data.mean, data.cov, process, t, t_next, "exponential")
        fine = torch.linspace(t, t_next, 4001, dtype=torch.float64)
        y = x.clone()
        for u, u_next in zip(fine[:-1], fine[1:]):
            h = u_next - u
            v1 = process.f(u) * y - 0.5 * process.g(u) ** 2 * s
            y_e = y + h * v1
            v2 = process.f(u_next) * y_e - 0.5 * process.g(u_next) ** 2 * s
            y = y + 0.5 * h * (v1 + v2)
        assert torch.allclose(x @ a.T + b, y, atol=1e-8)


@pytest.mark.parametrize("method", gf.METHODS)
def test_eigenbasis_recursion_equals_full_matrices(method):
    data, process = _data(4), processes.ornstein_uhlenbeck(4.0)
    times = torch.linspace(4.0, 0.0, 9, dtype=torch.float64)
    m_full, c_full = gf.push_gaussian(data.mean, data.cov, process, times, method)
    m_e, v_e = data.sampler_law(process, times, method)
    m2, c2 = data.to_full(m_e, v_e)
    assert torch.allclose(m_full, m2, atol=1e-12) and torch.allclose(c_full, c2, atol=1e-12)
    w2 = distances.gaussian_w2(m2.numpy(), c2.numpy(), data.mean.numpy(), data.cov.numpy())
    assert math.isclose(data.w2_to_data(m_e, v_e), w2, rel_tol=1e-6, abs_tol=1e-9)


def test_push_gaussian_matches_monte_carlo():
    data, process = _data(2), processes.ornstein_uhlenbeck(3.0)
    times = torch.linspace(3.0, 0.0, 6, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = process.prior((200_000, 2), generator=gen, dtype=torch.float64)
    y = samplers.probability_flow(_score(data, process), process, x, times, "heun")
    m, c = gf.push_gaussian(data.mean, data.cov, process, times, "heun")
    assert torch.allclose(y.mean(0), m, atol=0.02)
    assert torch.allclose(torch.cov(y.T), c, atol=0.03)


def test_exact_flow_transports_the_noised_law_to_the_data():
    data, process = _data(3), processes.ornstein_uhlenbeck(5.0)
    start_mean = process.alpha(5.0) * data.mean_e
    m, v = data.flow_law(process, 5.0, 0.0, start_mean, data.noised_variances(process, 5.0))
    assert data.w2_to_data(m, v) < 1e-12
    # and the exponential integrator converges to the exact flow as the grid is refined
    exact = data.flow_law(process, 5.0)
    errs = [gf.commuting_w2(*data.sampler_law(process, torch.linspace(5.0, 0.0, k + 1,
                                                                       dtype=torch.float64)),
                            *exact) for k in (50, 100, 200)]
    assert errs[0] > errs[1] > errs[2] and errs[1] / errs[2] == pytest.approx(2.0, rel=0.05)


def test_commuting_w2_closed_form():
    assert gf.commuting_w2([0.0], [4.0], [3.0], [1.0]) == pytest.approx(math.sqrt(9 + 1))


def test_bad_input_raises():
    data, process = _data(), processes.ornstein_uhlenbeck(1.0)
    with pytest.raises(ValueError, match="method"):
        gf.step_affine(data.mean, data.cov, process, 1.0, 0.5, "rk4")
    with pytest.raises(ValueError, match="positive definite"):
        gf.GaussianData([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]])
    with pytest.raises(ValueError, match="shape"):
        gf.GaussianData([0.0, 0.0, 0.0], torch.eye(2))
    with pytest.raises(ValueError, match="decreasing"):
        data.sampler_law(process, [0.0, 1.0])
    with pytest.raises(ValueError, match="t_next < t"):
        gf.step_affine(data.mean, data.cov, process, 0.5, 1.0)
    with pytest.raises(ValueError, match="VariancePreserving"):
        gf.exponential_weights(processes.Process(), 1.0, 0.5)
    with pytest.raises(ValueError, match="t_min"):
        data.flow_law(process, 1.0, 2.0)
    with pytest.raises(ValueError, match="variances"):
        gf.commuting_w2([0.0], [-1.0], [0.0], [1.0])
