"""Tests of repro.generative_diffusion.pnp_hvae against closed forms and the authors' update
rules."""
import math

import pytest
import torch

from repro.generative_diffusion import pnp_hvae as ph


def _gauss_nll(z, m, s):
    return 0.5 * ((z - m) / s) ** 2 + torch.log(s)


def test_combine_gaussians_minimizes_the_weighted_criterion():
    torch.manual_seed(0)
    m_q, m_p = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    s_q, s_p = torch.rand(5, dtype=torch.float64) + 0.2, torch.rand(5, dtype=torch.float64) + 0.2
    T = 0.6
    z = ph.combine_gaussians(m_q, s_q, m_p, s_p, T).requires_grad_(True)
    crit = (_gauss_nll(z, m_q, s_q) + (T ** -2 - 1) * _gauss_nll(z, m_p, s_p)).sum()
    (grad,) = torch.autograd.grad(crit, z)
    assert grad.abs().max() < 1e-12


def test_combine_gaussians_limits_and_authors_form():
    m_q, s_q = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
    m_p, s_p = torch.tensor([0.0, 3.0]), torch.tensor([1.5, 0.7])
    # T = 1: the encoder's mean (no pull towards the prior)
    torch.testing.assert_close(ph.combine_gaussians(m_q, s_q, m_p, s_p, 1.0), m_q)
    # T -> 0: the prior's mean
    torch.testing.assert_close(ph.combine_gaussians(m_q, s_q, m_p, s_p, 1e-4), m_p, atol=1e-5,
                               rtol=0)
    # the authors' sample_reg with a = 1, b = 1 - T^2 and prior variance (s_p T)^2
    T = 0.7
    pS, qS, a, b = (s_p * T) ** 2, s_q ** 2, 1.0, 1 - T ** 2
    authors = (a * m_q / qS + b * m_p / pS) / (a / qS + b / pS)
    torch.testing.assert_close(ph.combine_gaussians(m_q, s_q, m_p, s_p, T), authors)


@pytest.mark.parametrize("T", [0.0, -0.5, 1.5])
def test_combine_gaussians_rejects_bad_temperature(T):
    with pytest.raises(ValueError, match="temperature"):
        ph.combine_gaussians(torch.zeros(1), torch.ones(1), torch.zeros(1), torch.ones(1), T)


@pytest.mark.parametrize("shared", [True, False])
def test_data_step_matches_normal_equations_and_lstsq(shared):
    torch.manual_seed(1)
    n, m, d, sigma, gamma = 4, 5, 6, 0.3, 0.7
    A = torch.randn(m, d, dtype=torch.float64) if shared else torch.randn(n, m, d,
                                                                           dtype=torch.float64)
    x = torch.randn(n, d, dtype=torch.float64)
    p = ph.LinearProblem.observe(A, x, sigma)
    v = torch.randn(n, d, dtype=torch.float64)
    got = p.data_step(v, gamma)
    for i in range(n):
        Ai = A if shared else A[i]
        # the minimizer as a stacked least-squares problem [A/sigma; I/gamma] x = [y/sigma; v/gamma]
        M = torch.cat([Ai / sigma, torch.eye(d, dtype=torch.float64) / gamma])
        rhs = torch.cat([p.y[i] / sigma, v[i] / gamma])
        want = torch.linalg.lstsq(M, rhs.unsqueeze(1)).solution.squeeze(1)
        torch.testing.assert_close(got[i], want)
    # a second call at the same gamma reuses the cached inverse and gives the same answer
    torch.testing.assert_close(p.data_step(v, gamma), got)


def test_linear_problem_rejects_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        ph.LinearProblem(torch.eye(3), torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="does not fit"):
        ph.LinearProblem(torch.eye(3), torch.zeros(2, 4), 0.1)
    with pytest.raises(ValueError, match=r"\(m, d\) or \(N, m, d\)"):
        ph.LinearProblem(torch.zeros(3), torch.zeros(2, 3), 0.1)
    p = ph.LinearProblem(torch.eye(3), torch.zeros(2, 3), 0.1)
    with pytest.raises(ValueError, match="gamma"):
        p.data_step(torch.zeros(2, 3), -1.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        p.data_step(torch.zeros(2, 4), 1.0)


def test_blur_matrix_is_a_normalized_symmetric_convolution():
    A = ph.blur_matrix(8, 1.0, dtype=torch.float64)
    torch.testing.assert_close(A, A.T)
    # an interior pixel's row sums to one (the kernel is normalized); a constant image stays
    # constant away from the border
    center = 3 * 8 + 4
    torch.testing.assert_close(A[center].sum(), torch.tensor(1.0, dtype=torch.float64))
    k1 = torch.exp(-torch.arange(-2.0, 3.0, dtype=torch.float64) ** 2 / 2)
    k = torch.outer(k1, k1) / torch.outer(k1, k1).sum()
    torch.testing.assert_close(A[center].reshape(8, 8)[1:6, 2:7], k)
    with pytest.raises(ValueError, match="std"):
        ph.blur_matrix(8, 0.0)


def test_inpainting_and_gradient_matrices():
    g = torch.Generator().manual_seed(0)
    M = ph.inpainting_matrices(200, 64, 0.5, g)
    keep = M.diagonal(dim1=1, dim2=2)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    assert abs(keep.mean().item() - 0.5) < 0.02
    with pytest.raises(ValueError, match="missing"):
        ph.inpainting_matrices(2, 4, 1.0)
    G = ph.gradient_matrix(4)
    assert G.shape == (2 * 4 * 3, 16)
    torch.testing.assert_close(G @ torch.ones(16), torch.zeros(len(G)))
    ramp = torch.arange(16.0)  # row-major: +1 along a row, +4 down a column
    assert set((G @ ramp).tolist()) == {1.0, 4.0}


def test_tikhonov_matches_the_normal_equations():
    torch.manual_seed(2)
    A, G = torch.randn(5, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    p = ph.LinearProblem.observe(A, torch.randn(3, 6, dtype=torch.float64), 0.2)
    x = ph.tikhonov(p, 0.5, G).requires_grad_(True)
    crit = (((x @ A.T - p.y) ** 2).sum() / (2 * 0.04) + 0.5 * ((x @ G.T) ** 2).sum() / 2)
    (grad,) = torch.autograd.grad(crit, x)
    assert grad.abs().max() < 1e-10
    with pytest.raises(ValueError, match="lam"):
        ph.tikhonov(p, 0.0, G)


def test_hvae_elbo_regularize_and_sample():
    torch.manual_seed(3)
    hv = ph.HierarchicalVAE(10, latents=(2, 3), width=16, decoder_std=0.2).double()
    x = torch.rand(7, 10, dtype=torch.float64)
    loss = hv.loss(x)
    assert torch.isfinite(loss) and loss.ndim == 0
    # T = 1 decodes the encoder's means: the same as a top-down walk picking m_q
    z, _ = hv._top_down(x, lambda l, m_q, s_q, m_p, s_p: m_q)
    torch.testing.assert_close(hv.regularize(x, 1.0), hv.decoder(z))
    # small T decodes the prior's means, whatever x is
    torch.testing.assert_close(hv.regularize(x, 1e-5), hv.regularize(torch.rand_like(x), 1e-5),
                               atol=1e-6, rtol=0)
    assert hv.sample(4, 0.5).shape == (4, 10)
    with pytest.raises(ValueError, match="one value per level"):
        hv.regularize(x, [0.5])
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        hv.loss(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="decoder_std"):
        ph.HierarchicalVAE(10, decoder_std=0.0)


def test_hvae_kl_term_matches_torch_distributions():
    torch.manual_seed(4)
    hv = ph.HierarchicalVAE(6, latents=(2,), width=8, decoder_std=1.0).double()
    x = torch.rand(3, 6, dtype=torch.float64)
    _, stats = hv._top_down(x, lambda l, m_q, s_q, m_p, s_p: m_q)
    m_q, s_q, m_p, s_p, _ = stats[0]
    ours = (torch.log(s_p / s_q) + (s_q ** 2 + (m_q - m_p) ** 2) / (2 * s_p ** 2) - 0.5).sum(1)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m_q, s_q),
                                            torch.distributions.Normal(m_p, s_p)).sum(1)
    torch.testing.assert_close(ours, ref)


def test_pnp_iterations_reach_the_fixed_point_of_a_linear_prior():
    # with a linear 'denoiser' D(x) = c x the PnP-HQS fixed point solves
    # x = (A^T A / s^2 + I / g^2)^-1 (A^T y / s^2 + c x / g^2) in closed form
    torch.manual_seed(5)
    A = torch.randn(4, 4, dtype=torch.float64)
    p = ph.LinearProblem.observe(A, torch.randn(2, 4, dtype=torch.float64), 0.5)
    c, g = 0.5, 0.8
    v, x, steps = ph.pnp_hqs(lambda x, level: c * x, p, g, 200)
    lhs = A.T @ A / 0.25 + (1 - c) * torch.eye(4, dtype=torch.float64) / g ** 2
    want = torch.linalg.solve(lhs, (p.y @ A / 0.25).T).T
    torch.testing.assert_close(x, want)
    assert steps.shape == (200, 2) and steps[-1].max() < 1e-10
    with pytest.raises(ValueError, match="iterations"):
        ph.pnp_hqs(lambda x, level: x, p, g, 0)


def test_pnp_hvae_runs_and_psnr():
    torch.manual_seed(6)
    hv = ph.HierarchicalVAE(4, latents=(2,), width=8)
    p = ph.LinearProblem.observe(torch.eye(4), torch.rand(3, 4), 0.1)
    mu, x, steps = ph.pnp_hvae(hv, p, 0.5, 5)
    assert mu.shape == x.shape == (3, 4) and steps.shape == (5, 3)
    ref = torch.full((1, 4), 0.5)
    assert math.isclose(ph.psnr(ref + 0.1, ref).item(), 20.0, rel_tol=1e-5)
    with pytest.raises(ValueError, match="peak"):
        ph.psnr(ref, ref, peak=0.0)
