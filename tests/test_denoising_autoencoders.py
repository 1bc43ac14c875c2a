import pytest
import torch

from repro.generative_diffusion.denoising_autoencoders import (ReconstructionMLP,
                                                               approximate_metropolis,
                                                               contractive_loss, dae_loss,
                                                               jacobian_frobenius2,
                                                               reconstruction_score,
                                                               score_line_integral)
from repro.generative_diffusion.mixtures import GaussianMixture

pytestmark = pytest.mark.usefixtures("float64")


class Linear(torch.nn.Module):
    """r(x) = A x, for closed forms."""

    def __init__(self, a):
        super().__init__()
        self.a = torch.as_tensor(a, dtype=torch.float64)

    def forward(self, x):
        return x @ self.a.T


def test_dae_loss_matches_its_closed_form_for_a_linear_map():
    # x0 ~ N(0, s^2 I), r(x) = a x: E|a (x0 + sigma eps) - x0|^2 = D ((a - 1)^2 s^2 + a^2 sigma^2)
    s, sigma, a, d = 0.7, 0.3, 0.8, 2
    x0 = s * torch.randn(400_000, d, generator=torch.Generator().manual_seed(0))
    loss = dae_loss(Linear(a * torch.eye(d)), x0, sigma, torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(d * ((a - 1) ** 2 * s ** 2 + a ** 2 * sigma ** 2), rel=1e-2)


def test_dae_loss_is_least_at_the_posterior_mean():
    # for Gaussian data the minimizer over a of the closed form above is s^2 / (s^2 + sigma^2)
    s, sigma = 0.7, 0.3
    x0 = s * torch.randn(200_000, 1, generator=torch.Generator().manual_seed(0))
    best = s ** 2 / (s ** 2 + sigma ** 2)
    losses = [dae_loss(Linear([[a]]), x0, sigma, torch.Generator().manual_seed(1)).item()
              for a in (best - 0.1, best, best + 0.1)]
    assert losses[1] < min(losses[0], losses[2])


def test_jacobian_norm_matches_jacrev():
    torch.manual_seed(0)
    model = ReconstructionMLP(3, width=16, depth=2).double()
    x = torch.randn(7, 3)
    jac2, r = jacobian_frobenius2(model, x, create_graph=False)
    expected = torch.stack([torch.func.jacrev(model)(row[None])[0, :, 0].pow(2).sum()
                            for row in x])
    assert torch.allclose(jac2, expected, atol=1e-12)
    assert torch.allclose(r, model(x))


def test_contractive_loss_of_a_linear_map():
    a = torch.tensor([[0.9, 0.2], [-0.1, 0.7]])
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    expected = ((x @ a.T - x) ** 2).sum(1).mean() + 0.05 * (a ** 2).sum()
    assert contractive_loss(Linear(a), x, 0.05).item() == pytest.approx(expected.item(), abs=1e-12)


def test_contractive_loss_gradient_reaches_the_parameters():
    torch.manual_seed(0)
    model = ReconstructionMLP(2, width=8, depth=1).double()
    contractive_loss(model, torch.randn(10, 2), 0.1).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_reconstruction_score_of_the_optimal_linear_dae():
    # r*(x) = s^2 / (s^2 + sigma^2) x, so (r* - x) / sigma^2 = -x / (s^2 + sigma^2)
    s, sigma = 0.7, 0.3
    x = torch.randn(5, 1)
    score = reconstruction_score(Linear([[s ** 2 / (s ** 2 + sigma ** 2)]]), sigma ** 2)
    assert torch.allclose(score(x), -x / (s ** 2 + sigma ** 2), atol=1e-12)


def mixture():
    return GaussianMixture([[0.0, 0.0], [2.0, 1.0]], scales=[0.5, 0.8], weights=[1.0, 2.0])


def test_line_integral_of_the_score_is_the_log_density_difference():
    gm = mixture()
    g = torch.Generator().manual_seed(0)
    x, y = 2 * torch.randn(20, 2, generator=g), 2 * torch.randn(20, 2, generator=g)
    assert torch.allclose(score_line_integral(gm.score, x, y, points=40),
                          gm.log_prob(y) - gm.log_prob(x), atol=1e-8)


def test_line_integral_is_exact_for_a_gaussian_from_two_nodes():
    gm = GaussianMixture([[1.0, -1.0]], [[[1.0, 0.4], [0.4, 0.7]]])
    x, y = torch.randn(10, 2), torch.randn(10, 2)
    assert torch.allclose(score_line_integral(gm.score, x, y, points=2),
                          gm.log_prob(y) - gm.log_prob(x), atol=1e-12)


def exact_metropolis(log_prob, x, steps, step_size, generator):
    for _ in range(steps):
        proposal = x + step_size * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        u = torch.rand(len(x), generator=generator, dtype=x.dtype)
        x = torch.where((u.log() < log_prob(proposal) - log_prob(x))[:, None], proposal, x)
    return x


def test_chain_with_an_exact_gaussian_score_is_exact_metropolis():
    gm = GaussianMixture([[1.0, -1.0]], [[[1.0, 0.4], [0.4, 0.7]]])
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    ours, rate = approximate_metropolis(gm.score, x, 30, 0.8, points=2,
                                        generator=torch.Generator().manual_seed(1))
    theirs = exact_metropolis(gm.log_prob, x, 30, 0.8, torch.Generator().manual_seed(1))
    assert torch.allclose(ours, theirs, atol=1e-12)
    assert 0 < rate < 1


def test_chain_reaches_the_target_moments():
    gm = GaussianMixture([[1.0, -1.0]], [[[1.0, 0.4], [0.4, 0.7]]])
    x = torch.zeros(4000, 2)
    out, _ = approximate_metropolis(gm.score, x, 200, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.mean(0), gm.mean, atol=0.06)
    assert torch.allclose(torch.cov(out.T), gm.covariance, atol=0.08)


@pytest.mark.parametrize("call, match", [
    (lambda: dae_loss(ReconstructionMLP(2), torch.zeros(4, 2), 0.0), "sigma"),
    (lambda: dae_loss(ReconstructionMLP(2), torch.zeros(4), 0.1), r"\(N, D\)"),
    (lambda: contractive_loss(ReconstructionMLP(2), torch.zeros(4, 2), -1.0), "penalty"),
    (lambda: reconstruction_score(ReconstructionMLP(2), 0.0), "scale"),
    (lambda: score_line_integral(lambda z: z, torch.zeros(3, 2), torch.zeros(2, 2)), "match"),
    (lambda: score_line_integral(lambda z: z, torch.zeros(3, 2), torch.zeros(3, 2), 0), "points"),
    (lambda: approximate_metropolis(lambda z: z, torch.zeros(3, 2), 0, 0.1), "steps"),
    (lambda: approximate_metropolis(lambda z: z, torch.zeros(3, 2), 5, 0.0), "step_size"),
    (lambda: ReconstructionMLP(0), "dim"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_losses_of_a_stack_are_the_losses_of_its_copies():
    from repro.core.stacked import StackedModels
    torch.manual_seed(0)
    models = [ReconstructionMLP(2, width=8, depth=2).double() for _ in range(3)]
    stack = StackedModels(models)
    x = torch.randn(3, 20, 2)
    expected = torch.stack([contractive_loss(m, x[i], 0.1) for i, m in enumerate(models)])
    assert torch.allclose(contractive_loss(stack, x, 0.1), expected, atol=1e-12)
    ours = dae_loss(stack, x, 0.2, torch.Generator().manual_seed(1))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([((m(x[i] + 0.2 * eps[i]) - x[i]) ** 2).sum(1).mean()
                            for i, m in enumerate(models)])
    assert torch.allclose(ours, expected, atol=1e-12)
