import pytest
import torch

from repro.generative_diffusion.mixtures import GaussianMixture

pytestmark = pytest.mark.usefixtures("float64")


def mixture():
    covs = torch.tensor([[[1.0, 0.3], [0.3, 0.5]], [[0.2, 0.0], [0.0, 0.8]], [[0.6, -0.2], [-0.2, 0.4]]])
    return GaussianMixture([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]], covs, weights=[1.0, 2.0, 0.5])


def test_log_prob_matches_torch_distributions():
    gm = mixture()
    x = torch.randn(50, 2)
    comps = torch.distributions.MultivariateNormal(gm.means, gm.covariances)
    expected = torch.logsumexp(gm.weights.log() + comps.log_prob(x[:, None, :]), 1)
    assert torch.allclose(gm.log_prob(x), expected, atol=1e-12)


def test_score_is_the_gradient_of_log_prob():
    gm = mixture().noised(0.7, 0.4)
    x = torch.randn(30, 2, requires_grad=True)
    grad, = torch.autograd.grad(gm.log_prob(x).sum(), x)
    assert torch.allclose(gm.score(x.detach()), grad, atol=1e-12)


def test_samples_have_the_mixture_moments():
    gm = mixture()
    x = gm.sample(400_000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.mean(0), gm.mean, atol=0.01)
    assert torch.allclose(torch.cov(x.T), gm.covariance, atol=0.02)


def test_denoise_is_the_gaussian_posterior_mean():
    # one component N(m, S): E[x0 | xt] = m + a S (a^2 S + s^2 I)^-1 (xt - a m)
    m, s_cov = torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.4], [0.4, 0.7]])
    gm = GaussianMixture(m[None], s_cov[None])
    a, s = 0.6, 0.5
    x = torch.randn(10, 2)
    gain = a * s_cov @ torch.linalg.inv(a * a * s_cov + s * s * torch.eye(2))
    assert torch.allclose(gm.denoise(x, a, s), m + (x - a * m) @ gain.T, atol=1e-12)


def test_posterior_is_prior_times_likelihood():
    gm = mixture()
    op, noise, y = torch.tensor([[1.0, 0.5]]), 0.3, torch.tensor([1.2])
    post = gm.posterior(op, noise, y)
    x = torch.randn(40, 2) * 2
    log_lik = -0.5 * ((y - x @ op.T) ** 2).sum(1) / noise ** 2
    gap = post.log_prob(x) - gm.log_prob(x) - log_lik
    assert torch.allclose(gap, gap[0].expand_as(gap), atol=1e-10)


def test_embedded_samples_lie_on_the_subspace():
    basis = torch.linalg.qr(torch.randn(5, 2))[0]
    data = mixture().embedded(basis)
    x = data.sample(1000)
    off = x - x @ basis @ basis.T
    assert off.abs().max() < 1e-10
    # its noised law is regular and has the right covariance
    noised = data.noised(1.0, 0.1)
    assert torch.allclose(noised.covariance, basis @ mixture().covariance @ basis.T
                          + 0.01 * torch.eye(5), atol=1e-12)
    assert torch.isfinite(noised.log_prob(x)).all()


def test_bad_input_raises():
    with pytest.raises(ValueError, match="exactly one"):
        GaussianMixture([[0.0]])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([[0.0], [1.0]], scales=[1.0, 1.0], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        mixture().score(torch.zeros(3, 3))
