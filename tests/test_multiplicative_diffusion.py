import math

import pytest
import torch

from repro.generative_diffusion import mixtures, samplers
from repro.generative_diffusion import multiplicative_diffusion as md

pytestmark = pytest.mark.usefixtures("float64")


def law():
    covs = torch.tensor([[[0.2, 0.05], [0.05, 0.1]], [[0.1, 0.0], [0.0, 0.3]]])
    return md.LogNormalMixture(mixtures.GaussianMixture([[-1.0, 0.5], [0.5, -0.5]], covs,
                                                        weights=[1.0, 2.0]))


def gbm():
    return md.GeometricBrownianMotion(mu=0.7, sigma=1.3)


def test_log_prob_matches_torch_lognormal_for_one_component():
    m, s = torch.tensor([0.3, -0.2]), torch.tensor([0.5, 0.8])
    one = md.LogNormalMixture(mixtures.GaussianMixture(m[None], torch.diag(s ** 2)[None]))
    x = torch.rand(20, 2) + 0.1
    expected = torch.distributions.LogNormal(m, s).log_prob(x).sum(1)
    assert torch.allclose(one.log_prob(x), expected, atol=1e-12)


def test_score_and_hyvarinen_score_are_gradients_of_log_prob():
    p = law().noised(gbm(), 0.3)
    x = (torch.rand(30, 2) * 3 + 0.05).requires_grad_()
    grad, = torch.autograd.grad(p.log_prob(x).sum(), x)
    assert torch.allclose(p.score(x.detach()), grad, atol=1e-10)
    assert torch.allclose(p.hyvarinen_score(x.detach()), x.detach() * grad, atol=1e-10)


def test_perturb_is_the_exact_gbm_solution():
    # x_t = x_0 exp((mu - s^2/2) t + s W_t): log x_t - log x_0 ~ N(b t, s^2 t)
    g = torch.Generator().manual_seed(0)
    proc, t = gbm(), 0.4
    x0 = torch.full((200_000, 1), 2.0)
    xt, eps = proc.perturb(x0, t, generator=g)
    z = (xt / x0).log()
    assert torch.allclose(z, proc.log_drift * t + proc.s * math.sqrt(t) * eps, atol=1e-12)
    assert abs(float(z.mean()) - proc.log_drift * t) < 0.01
    assert abs(float(z.var()) - proc.s ** 2 * t) < 0.01


def test_forward_euler_in_x_space_is_lognormal():
    g = torch.Generator().manual_seed(1)
    proc = gbm()
    x = proc.simulate(torch.ones(100_000, 1), 500, generator=g)
    z = x.log()
    assert abs(float(z.mean()) - proc.log_drift) < 0.02
    assert abs(float(z.var()) - proc.s ** 2) < 0.03


def test_noised_law_matches_perturbed_samples():
    g = torch.Generator().manual_seed(2)
    p, proc, t = law(), gbm(), 0.5
    xt, _ = proc.perturb(p.sample(200_000, g), t, generator=g)
    exact = p.noised(proc, t).log_mixture
    assert torch.allclose(xt.log().mean(0), exact.mean, atol=0.01)
    assert torch.allclose(torch.cov(xt.log().T), exact.covariance, atol=0.02)


def test_conditional_target_is_x_times_the_conditional_score():
    proc, t = gbm(), 0.2
    x0 = torch.tensor([[1.5, 0.3]])
    eps = torch.tensor([[0.4, -1.1]])
    xt, _ = proc.perturb(x0, t, noise=eps)
    cond = md.LogNormalMixture(mixtures.GaussianMixture(
        x0.log() + proc.log_drift * t, (proc.s ** 2 * t * torch.eye(2))[None]))
    assert torch.allclose(md.conditional_hyvarinen_score(eps, proc, t),
                          cond.hyvarinen_score(xt), atol=1e-12)


def test_dsm_minus_esm_does_not_depend_on_the_model():
    g = torch.Generator().manual_seed(3)
    p, proc, t = law(), gbm(), 0.3
    x0 = p.sample(100_000, g)
    eps = torch.randn(x0.shape, generator=g)
    exact = lambda x, s: p.noised(proc, float(s)).hyvarinen_score(x)
    other = lambda x, s: -torch.ones_like(x) + 0.3 * x
    d0, e0 = md.score_matching_terms(exact, p, x0, proc, t, eps)
    d1, e1 = md.score_matching_terms(other, p, x0, proc, t, eps)
    diff = (d1 - e1) - (d0 - e0)
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(diff))
    assert float(e0.max()) < 1e-20                            # the exact score has zero M-ESM


def test_mdsm_loss_is_weighted_mdsm_of_the_noise_model():
    proc = gbm()
    model = lambda y, t: 0.1 * y
    x0 = torch.rand(64, 2) + 0.5
    loss = md.multiplicative_dsm_loss(model, x0, proc, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    t = 1e-3 + (proc.t_max - 1e-3) * torch.rand(64, generator=g)
    xt, eps = proc.perturb(x0, t, generator=g)
    h = md.hyvarinen_model(model, proc)(xt, t)
    weighted = (proc.s ** 2 * t[:, None] * (h - md.conditional_hyvarinen_score(eps, proc, t)) ** 2)
    assert torch.allclose(loss, weighted.sum(1).mean(), atol=1e-10)


def test_both_samplers_reach_the_data_law_with_the_exact_score():
    g = torch.Generator().manual_seed(5)
    p, proc = law(), gbm()
    h = lambda x, t: p.noised(proc, float(t)).hyvarinen_score(x)
    times = samplers.time_grid(400, 1.0, 1e-3)
    target = p.noised(proc, 1e-3).log_mixture
    for sampler in (md.dale_langevin, md.ambient_sampler):
        x = sampler(h, proc, p.noised(proc, 1.0).sample(20_000, g), times, generator=g)
        assert bool((x > 0).all())
        assert torch.allclose(x.log().mean(0), target.mean, atol=0.05)
        assert torch.allclose(torch.cov(x.log().T), target.covariance, atol=0.05)


def test_dale_langevin_step_is_exponentiated_gradient():
    proc = gbm()
    x = torch.tensor([[0.5, 2.0]])
    h = lambda y, t: torch.full_like(y, 0.25)
    times = torch.tensor([0.6, 0.5])
    g = torch.Generator().manual_seed(6)
    out = md.dale_langevin(h, proc, x, times, generator=g)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    d = 0.1
    expected = x * torch.exp(d * (proc.s ** 2 * 1.25 - proc.log_drift) + proc.s * math.sqrt(d) * z)
    assert torch.allclose(out, expected, atol=1e-12)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="sigma"):
        md.GeometricBrownianMotion(sigma=0.0)
    with pytest.raises(ValueError, match="positive"):
        gbm().perturb(torch.tensor([[1.0, -1.0]]), 0.1)
    with pytest.raises(ValueError, match="positive"):
        law().log_prob(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="decreasing"):
        md.dale_langevin(lambda x, t: x, gbm(), torch.ones(3, 2), torch.tensor([0.1, 0.5]))
    with pytest.raises(ValueError, match="GaussianMixture"):
        md.LogNormalMixture([[0.0]])
    with pytest.raises(ValueError, match="t_min"):
        md.multiplicative_dsm_loss(lambda y, t: y, torch.ones(4, 2), gbm(), t_min=0.0)
    with pytest.raises(ValueError, match="log_var"):
        gbm().prior((3, 2), 0.0, -1.0)
