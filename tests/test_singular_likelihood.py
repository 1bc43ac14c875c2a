import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from repro.generative_diffusion import singular_likelihood as sl


def test_isometry_has_orthonormal_columns():
    q = sl.isometry(7, seed=3)
    assert q.shape == (7, 2)
    assert torch.allclose(q.T @ q, torch.eye(2, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError):
        sl.isometry(1)


def test_curve_lies_on_the_unit_circle_and_warp_is_monotone():
    basis = sl.isometry(5, seed=0)
    z = torch.linspace(0, 1, 101, dtype=torch.float64)
    x = sl.curve(z, basis, warp=0.6)
    assert torch.allclose(x.norm(dim=1), torch.ones(101, dtype=torch.float64), atol=1e-12)
    h = sl.warped_angle(z, 0.6)
    assert torch.all(torch.diff(h) > 0) and h[0] == 0 and abs(float(h[-1]) - 1) < 1e-12
    with pytest.raises(ValueError, match="warp"):
        sl.warped_angle(z, 1.0)
    with pytest.raises(ValueError, match="basis"):
        sl.curve(z, torch.zeros(5, 3))


def test_warped_angle_density_matches_the_change_of_variables():
    # P(h(Z) <= 1/4) = h^-1(1/4): the angle law is not uniform when warp != 0
    x = sl.sample_curve(200_000, torch.eye(2, dtype=torch.float64), warp=0.6, seed=1)
    frac = float(((x[:, 0] >= 0) & (x[:, 1] >= 0)).double().mean())  # angle in [0, pi/2]
    z = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    expected = float(z[torch.searchsorted(sl.warped_angle(z, 0.6), torch.tensor(0.25,
                                          dtype=torch.float64))])
    assert frac == pytest.approx(expected, abs=4e-3)


def test_perturb_adds_noise_of_the_given_scale():
    x = torch.zeros(100_000, 3, dtype=torch.float64)
    y = sl.perturb(x, 0.2, seed=0)
    assert float(y.std()) == pytest.approx(0.2, rel=0.01)
    assert torch.equal(sl.perturb(x, 0.0), x)
    with pytest.raises(ValueError, match="tau"):
        sl.perturb(x, -1.0)


def test_quadrature_integrates_polynomials():
    z, lw = sl.quadrature(20, "normal")
    w = lw.exp()
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float((w * z ** 2).sum()) == pytest.approx(1.0, abs=1e-10)
    assert float((w * z ** 4).sum()) == pytest.approx(3.0, abs=1e-10)
    z, lw = sl.quadrature(64, "uniform")
    assert float((lw.exp() * torch.cos(2 * math.pi * z) ** 2).sum()) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        sl.quadrature(8, "cauchy")


def test_quadrature_likelihood_of_a_linear_generator_is_the_gaussian_marginal():
    # g(z) = a + b z, z ~ N(0, 1): p(x) = N(a, b b^T + sigma^2 I) exactly
    a, b, sigma = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 0.3, -0.7]), 1.0
    z, lw = sl.quadrature(80, "normal")
    centers = (a + z[:, None] * b).double()
    x = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + a
    got = sl.mixture_log_likelihood(x, centers, lw, sigma)
    cov = np.outer(b, b) + sigma ** 2 * np.eye(3)
    want = stats.multivariate_normal(a.numpy(), cov).logpdf(x.numpy())
    np.testing.assert_allclose(got.numpy(), want, atol=1e-8)


def test_circle_closed_form_matches_numerical_integration_and_midpoint_rule():
    basis = sl.isometry(4, seed=2)
    x = torch.tensor([[0.3, -0.8, 0.1, 0.5], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    sigma = 0.3
    closed = sl.circle_log_density(x, basis, sigma)
    for i in range(2):
        def f(t):
            q = basis.numpy()
            c = np.cos(2 * np.pi * t) * q[:, 0] + np.sin(2 * np.pi * t) * q[:, 1]
            return stats.multivariate_normal(c, sigma ** 2 * np.eye(4)).pdf(x[i].numpy())
        val, _ = integrate.quad(f, 0, 1, limit=200)
        assert float(closed[i]) == pytest.approx(math.log(val), abs=1e-8)
    z, lw = sl.quadrature(256, "uniform")
    mid = sl.mixture_log_likelihood(x, sl.curve(z, basis), lw, sigma)
    np.testing.assert_allclose(mid.numpy(), closed.numpy(), atol=1e-10)


def test_circle_log_density_on_the_circle_grows_like_sigma_to_minus_d_minus_1():
    basis = sl.isometry(6, seed=0)
    x = sl.sample_curve(10, basis)
    lo, hi = sl.circle_log_density(x, basis, 1e-3), sl.circle_log_density(x, basis, 1e-4)
    np.testing.assert_allclose((hi - lo).numpy(), 5 * math.log(10), atol=1e-3)
    with pytest.raises(ValueError):
        sl.circle_log_density(x, basis, 0.0)


def test_mixture_log_likelihood_checks_shapes_and_sigma():
    x, c, lw = torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(4)
    with pytest.raises(ValueError, match="centers"):
        sl.mixture_log_likelihood(x, torch.zeros(4, 3), lw, 1.0)
    with pytest.raises(ValueError, match="log_weights"):
        sl.mixture_log_likelihood(x, c, torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        sl.mixture_log_likelihood(x, c, lw, 0.0)


def test_stacked_generator_matches_its_copies_and_the_single_likelihood():
    model = sl.StackedCurveGenerator(3, 4, width=8, seed=0).double()
    z = torch.rand(5, dtype=torch.float64)
    out = model(z)
    assert out.shape == (3, 5, 4) and model.sample(7).shape == (3, 7, 4)
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    nll = sl.stacked_negative_log_likelihood(model, x, 32)
    zq, lw = sl.quadrature(32, "uniform")
    centers = model(zq)
    for c in range(3):
        want = -sl.mixture_log_likelihood(x[c], centers[c], lw, model.sigma[c]).mean()
        assert float(nll[c].detach()) == pytest.approx(float(want.detach()), abs=1e-9)
    with pytest.raises(ValueError, match="shape"):
        sl.stacked_negative_log_likelihood(model, x[:2], 32)


def test_member_minibatches_draw_from_each_data_set():
    data = [torch.zeros(5, 2), torch.ones(9, 2)]
    batch = next(sl.member_minibatches(data, 4))
    assert batch.shape == (2, 4, 2) and batch[0].sum() == 0 and batch[1].min() == 1
    with pytest.raises(ValueError, match="row shape"):
        next(sl.member_minibatches([torch.zeros(5, 2), torch.zeros(5, 3)], 4))


def test_single_generator_likelihood_trains_down():
    torch.manual_seed(0)
    model = sl.CurveGenerator(2, width=16).double()
    x = sl.sample_curve(200, sl.isometry(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = sl.negative_log_likelihood(model, x, 64).item()
    for _ in range(50):
        opt.zero_grad()
        sl.negative_log_likelihood(model, x, 64).backward()
        opt.step()
    assert sl.negative_log_likelihood(model, x, 64).item() < start
    assert model.sample(10).shape == (10, 2)
