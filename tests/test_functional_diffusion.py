"""Tests of repro.generative_diffusion.functional_diffusion against closed forms, numerical
quadrature, Monte Carlo and the shared sampler."""
import math

import pytest
import torch

from repro.generative_diffusion import functional_diffusion as fd, samplers


def test_basis_is_orthonormal_on_a_fine_grid_and_matches_cos_sin():
    s = fd.grid(64)
    basis = fd.fourier_basis(s, 9)
    assert torch.allclose(basis.T @ basis / 64, torch.eye(9, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(basis[:, 3], math.sqrt(2) * torch.cos(4 * math.pi * s))
    assert torch.allclose(basis[:, 4], math.sqrt(2) * torch.sin(4 * math.pi * s))
    assert fd.frequencies(5).tolist() == [0, 1, 1, 2, 2]


def test_sampling_theorem_exact_above_and_aliased_below():
    g = torch.Generator().manual_seed(0)
    coef = torch.randn(4, 11, generator=g, dtype=torch.float64)
    fine = torch.rand(50, generator=g, dtype=torch.float64)
    for n in (11, 12, 30):
        values = fd.evaluate(coef, fd.grid(n))
        assert torch.allclose(fd.coefficients_from_values(values, 11), coef, atol=1e-10)
        assert torch.allclose(fd.reconstruct(values, fine, 11), fd.evaluate(coef, fine), atol=1e-10)
    values = fd.evaluate(coef, fd.grid(7))
    assert (fd.reconstruct(values, fine, 11) - fd.evaluate(coef, fine)).abs().max() > 0.1


def test_random_sinusoids_are_the_stated_functions():
    g = torch.Generator().manual_seed(1)
    coef = fd.random_sinusoids(200, 9, generator=g)
    values = fd.evaluate(coef, fd.grid(64))
    spectrum = torch.fft.rfft(values, dim=1).abs()
    peak = spectrum.argmax(1)
    assert set(peak.tolist()) <= {1, 2, 3}
    amplitude = values.abs().max(1).values
    assert bool((amplitude > 0.49).all() and (amplitude < 1.01).all())


def test_marginals_solve_the_moment_equations():
    # d mean / dt = f mean, d var / dt = 2 f var + g^2 per mode: check by finite differences
    process = fd.FunctionalProcess(fd.matern_eigenvalues(7, 0.2, 1.5), 0.1, 20.0, heat=0.01)
    for t in (0.1, 0.5, 0.9):
        h = 1e-6
        a, s2 = process.alpha(t), process.sigma(t) ** 2
        da = (process.alpha(t + h) - process.alpha(t - h)) / (2 * h)
        ds2 = (process.sigma(t + h) ** 2 - process.sigma(t - h) ** 2) / (2 * h)
        assert torch.allclose(da, process.f(t) * a, rtol=1e-6)
        assert torch.allclose(ds2, 2 * process.f(t) * s2 + process.g(t) ** 2, rtol=1e-5)
    assert torch.allclose(process.sigma(1.0) ** 2, process.stationary_variance(), rtol=1e-4)


def test_perturb_matches_the_marginal_by_monte_carlo_and_per_row_times():
    g = torch.Generator().manual_seed(2)
    process = fd.FunctionalProcess(fd.matern_eigenvalues(5), 0.1, 20.0)
    x0 = torch.ones(40000, 5, dtype=torch.float64)
    xt, _ = process.perturb(x0, 0.3, generator=g)
    assert torch.allclose(xt.mean(0), process.alpha(0.3), atol=0.02)
    assert torch.allclose(xt.var(0), process.sigma(0.3) ** 2, rtol=0.05)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    xt, eps = process.perturb(x0[:2], t, generator=g)
    assert torch.allclose(xt[1], process.alpha(0.7) + process.sigma(0.7) * eps[1])


def test_exact_gp_score_and_reverse_sde_recover_the_gp():
    g = torch.Generator().manual_seed(3)
    law = fd.SpectralGaussianProcess(fd.matern_eigenvalues(9, 0.1, 1.0, 0.5))
    process = fd.FunctionalProcess(fd.matern_eigenvalues(9, 0.2, 1.0), 0.1, 20.0)
    # the score is the gradient of the Gaussian log-density
    x = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    v = law.noised_variance(process, 0.4)
    (-(x ** 2) / (2 * v)).sum().backward()
    assert torch.allclose(law.score(x.detach(), 0.4, process), x.grad)
    start = process.prior((20000, 9), generator=g)
    out = samplers.euler_maruyama(lambda y, t: law.score(y, t, process), process, start,
                                  samplers.time_grid(400, 1.0, 1e-3), generator=g)
    assert torch.allclose(out.var(0), law.c, rtol=0.06)


def test_trace_class_and_white_eigenvalues():
    r = fd.matern_eigenvalues(2001, 0.2, 1.0)
    assert float(r.sum()) < 10 and float(fd.white_eigenvalues(2001).sum()) == 2001
    tail = (1 + math.pi ** 2) ** -2
    assert torch.allclose(fd.matern_eigenvalues(3, 0.5, 2.0, 3.0),
                          3.0 * torch.tensor([1.0, tail, tail], dtype=torch.float64))


def test_gp_covariance_on_points():
    law = fd.SpectralGaussianProcess(torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64))
    s = torch.tensor([0.0, 0.25], dtype=torch.float64)
    # k(s, s') = 1 + 0.5 * 2 cos(2 pi (s - s'))
    expected = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(law.covariance(s), expected, atol=1e-12)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="odd"):
        fd.frequencies(4)
    with pytest.raises(ValueError, match="n_modes"):
        fd.FunctionalProcess(torch.ones(4))
    with pytest.raises(ValueError, match="noise_eigenvalues"):
        fd.FunctionalProcess(torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="heat"):
        fd.FunctionalProcess(torch.ones(3), heat=-1.0)
    with pytest.raises(ValueError, match="smoothness"):
        fd.matern_eigenvalues(5, smoothness=0.0)
    with pytest.raises(ValueError, match="frequencies_"):
        fd.random_sinusoids(3, 5, frequencies_=(1, 3))
    with pytest.raises(ValueError, match="x0"):
        fd.FunctionalProcess(torch.ones(3)).perturb(torch.ones(2, 5), 0.5)
    with pytest.raises(ValueError, match="points"):
        fd.fourier_basis(torch.ones(2, 2), 3)
    with pytest.raises(ValueError, match="modes"):
        fd.SpectralGaussianProcess(torch.ones(5)).score(torch.ones(1, 5), 0.5,
                                                         fd.FunctionalProcess(torch.ones(3)))
