"""Tests of repro.generative_diffusion.ensemble_posterior: the tilted-path PDE against finite
differences, the exact initial law, the linear step against the Gaussian closed form, resampling,
and posterior moments against the closed-form Gaussian posterior."""
import math

import pytest
import torch

from repro.generative_diffusion import ensemble_posterior as ep
from repro.generative_diffusion import mixtures, processes, samplers


@pytest.fixture
def one_d():
    process = processes.ornstein_uhlenbeck(2.0)
    prior = mixtures.GaussianMixture([[-1.0], [1.5]], scales=[0.5, 0.7], weights=[0.3, 0.7])
    lik = ep.LinearGaussianLikelihood([[1.0]], 0.6, [0.8])
    return process, prior, lik


def test_likelihood_gradient_matches_autograd():
    lik = ep.LinearGaussianLikelihood([[1.0, 0.3], [0.2, -0.5]], 0.7, [0.4, -1.0])
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad(lik.log_prob(x).sum(), x)
    assert torch.allclose(lik.grad(x.detach()), grad)
    assert lik.laplacian() == pytest.approx(-(1 + 0.09 + 0.04 + 0.25) / 0.49)


def test_tilted_path_solves_its_pde(one_d):
    """q_t = p_t L / Z_t obeys d_tau q = -div((b + g^2 grad l) q) + g^2/2 lap q + (V - c) q."""
    process, prior, lik = one_d
    score = ep.mixture_score(prior, process)
    t, eps, dx = 0.7, 1e-4, 1e-3

    def log_q(x, s):
        return prior.noised(process.alpha(s), process.sigma(s)).log_prob(x) + lik.log_prob(x)

    xs = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    lhs = -(log_q(xs, t + eps) - log_q(xs, t - eps)) / (2 * eps)     # d/dtau = -d/dt
    g2 = float(process.g(t)) ** 2

    def flux(x):
        return (-float(process.f(t)) * x + g2 * (score(x, t) + lik.grad(x)))[:, 0] \
            * log_q(x, t).exp()

    q = log_q(xs, t).exp()
    div = (flux(xs + dx) - flux(xs - dx)) / (2 * dx)
    lap = (log_q(xs + dx, t).exp() - 2 * q + log_q(xs - dx, t).exp()) / dx ** 2
    rhs = (-div + 0.5 * g2 * lap) / q + ep.reweighting_potential(score, process, lik, xs, t)
    resid = lhs - rhs
    assert float((resid - resid.mean()).abs().max()) < 1e-2 * float(lhs.std())


def test_tilted_gaussian_is_the_gaussian_posterior():
    a, y = [[1.0, 0.3]], [2.0]
    lik = ep.LinearGaussianLikelihood(a, 0.5, y)
    mean, cov = lik.tilted_gaussian(1.0)
    exact = mixtures.GaussianMixture([[0.0, 0.0]], scales=[1.0]).posterior(a, 0.5, y)
    assert torch.allclose(mean, exact.means[0]) and torch.allclose(cov, exact.covariances[0])


def test_linear_step_keeps_the_stationary_gaussian():
    """Prior N(0, I) under OU has score -x (linear), so the step is exact: from N(0, I) L it must
    keep the law whose Fokker-Planck flow it solves; check its mean against the ODE's solution."""
    process = processes.ornstein_uhlenbeck(2.0)
    lik = ep.LinearGaussianLikelihood([[1.0]], 0.5, [2.0])
    x = torch.zeros(200000, 1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    h = 0.3
    out = ep.linear_step(lambda z, t: torch.zeros_like(z), process, lik, x, 1.0, h, gen)
    k = 1.0 - 2.0 / 0.25                                  # -f - g^2 a^2 / s^2, f = -1, g^2 = 2
    c = 2.0 * 2.0 / 0.25
    mean = c * math.expm1(k * h) / k
    var = 2.0 * math.expm1(2 * k * h) / (2 * k)
    assert float(out.mean()) == pytest.approx(mean, abs=0.01)
    assert float(out.var()) == pytest.approx(var, rel=0.02)


def test_resampling_is_unbiased():
    gen = torch.Generator().manual_seed(1)
    log_w = torch.log(torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64))
    for method in ep.RESAMPLERS:
        idx = ep.resample(log_w, 30000, method, gen)
        freq = torch.bincount(idx, minlength=3).double() / 30000
        assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64), atol=0.01)
    assert ep.effective_sample_size(torch.zeros(8)) == pytest.approx(8.0)


def test_ensemble_matches_a_gaussian_posterior():
    process = processes.ornstein_uhlenbeck(3.0)
    prior = mixtures.GaussianMixture([[1.0, -1.0]], covariances=[[[1.0, 0.5], [0.5, 0.8]]])
    lik = ep.LinearGaussianLikelihood([[1.0, 0.3]], 1.0, [2.0])
    post = prior.posterior([[1.0, 0.3]], 1.0, [2.0])
    gen = torch.Generator().manual_seed(0)
    x = ep.ensemble_posterior(ep.mixture_score(prior, process), process, lik, 4000,
                              samplers.time_grid(100, 3.0, 1e-3), generator=gen)
    std = post.covariances[0].diagonal().sqrt()
    assert float(((x.mean(0) - post.means[0]) / std).abs().max()) < 0.25
    assert torch.allclose(torch.cov(x.T), post.covariances[0], atol=0.2)


def test_dps_runs_and_shifted_score_shifts():
    process = processes.ornstein_uhlenbeck(2.0)
    prior = mixtures.GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], scales=[0.5, 0.5])
    score = ep.mixture_score(prior, process)
    lik = ep.LinearGaussianLikelihood([[1.0, 0.0]], 0.5, [1.0])
    gen = torch.Generator().manual_seed(0)
    x = ep.dps(score, process, lik, 256, samplers.time_grid(50, 2.0, 1e-3), 1.0, gen)
    assert x.shape == (256, 2) and bool(torch.isfinite(x).all())
    assert float(x[:, 0].mean()) > 0.5                    # pulled to the measured mode
    z = torch.randn(4, 2, dtype=torch.float64)
    shifted = ep.shifted_score(score, [0.3, -0.4])(z, 0.5) - score(z, 0.5)
    assert torch.allclose(shifted, torch.tensor([[0.3, -0.4]], dtype=torch.float64).expand(4, 2))


def test_mode_weights_estimate_posterior_weights():
    post = mixtures.GaussianMixture([[-2.0], [2.0]], scales=[0.5, 0.5], weights=[0.3, 0.7])
    x = post.sample(20000, torch.Generator().manual_seed(0))
    assert torch.allclose(ep.mode_weights(post, x), post.weights, atol=0.015)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="operator"):
        ep.LinearGaussianLikelihood([1.0, 2.0], 0.5, [1.0])
    with pytest.raises(ValueError, match="noise_std"):
        ep.LinearGaussianLikelihood([[1.0]], 0.0, [1.0])
    lik = ep.LinearGaussianLikelihood([[1.0]], 0.5, [1.0])
    with pytest.raises(ValueError, match="must be"):
        lik.grad(torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="method"):
        ep.resample(torch.zeros(3), method="stratified-ish")
    with pytest.raises(ValueError, match="non-finite"):
        ep.resample(torch.full((3,), -math.inf))
    process = processes.ornstein_uhlenbeck(1.0)
    with pytest.raises(ValueError, match="decreasing"):
        ep.ensemble_posterior(lambda x, t: -x, process, lik, 8, [0.1, 0.5])
    with pytest.raises(ValueError, match="ess_threshold"):
        ep.ensemble_posterior(lambda x, t: -x, process, lik, 8, [0.5, 0.1], ess_threshold=0.0)
    with pytest.raises(ValueError, match="scale"):
        ep.dps(lambda x, t: -x, process, lik, 8, [0.5, 0.1], scale=-1.0)
