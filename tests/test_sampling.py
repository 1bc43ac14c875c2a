import math

import pytest
import torch
from torch import nn

from repro.normalizing_flows import planar_radial
from repro.normalizing_flows.sampling import (Langevin, Metropolis, ess_fraction, flow_log_weights,
                                              gradient_samples, gradient_variance, log_z_estimate,
                                              reverse_kl_loss, weighted_mean)
from repro.normalizing_flows.targets import GaussianMixture

MEAN = torch.tensor([1.0, -1.0], dtype=torch.float64)
SCALE = torch.tensor([0.7, 1.5], dtype=torch.float64)


def _target():
    """One diagonal Gaussian N(MEAN, SCALE^2) with weight 3: log Z = log 3 + log 2 pi exactly."""
    return GaussianMixture(means=MEAN[None], scales=SCALE[None], weights=[3.0])


def _prior_energy(z):
    return 0.5 * (z ** 2).sum(-1) + 0.5 * z.shape[1] * math.log(2 * math.pi)


def _affine():
    """A fixed deterministic layer that moves the prior part of the way towards the target."""
    layer = planar_radial.DiagonalAffine(2).double()
    with torch.no_grad():
        layer.mu.copy_(torch.tensor([0.4, -0.2]))
        layer.log_sigma.copy_(torch.tensor([-0.3, 0.1]))
    return layer


BLOCKS = {
    "metropolis": lambda u: [Metropolis(u, step=0.8, steps=3)],
    "langevin": lambda u: [Langevin(u, step=0.3, steps=4)],
    "mala": lambda u: [Langevin(u, step=0.3, steps=4, metropolis=True)],
    "mixed": lambda u: [Langevin(u, step=0.2, steps=2), Metropolis(u, step=0.5),
                        Langevin(u, step=0.2)],
}


@pytest.mark.parametrize("kind", list(BLOCKS))
def test_importance_weights_estimate_log_z_and_the_mean(kind):
    target, gen = _target(), torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        x, log_w = flow_log_weights([_affine()] + BLOCKS[kind](target.energy), z, _prior_energy,
                                    target.energy, gen)
    estimate, se = log_z_estimate(log_w)
    assert 0 < se < 0.02
    assert abs(estimate - target.log_z) < 4 * se
    ess = 1 / (torch.softmax(log_w, 0) ** 2).sum()
    assert ((weighted_mean(x, log_w) - MEAN).abs() < 4 * SCALE / ess.sqrt()).all()


def test_unadjusted_langevin_needs_its_path_weights():
    """Large unadjusted steps bias the samples (the chain's law is not the target); dropping
    Delta S from the weights then gives a wrong log Z, so the test above can fail."""
    target, gen = _target(), torch.Generator().manual_seed(1)
    z = torch.randn(20_000, 2, generator=gen, dtype=torch.float64)
    block = Langevin(target.energy, step=0.6, steps=4)
    with torch.no_grad():
        x, delta_s = block(z, gen)
    estimate, se = log_z_estimate(_prior_energy(z) - target.energy(x) + delta_s)
    assert abs(estimate - target.log_z) < 4 * se
    without, _ = log_z_estimate(_prior_energy(z) - target.energy(x))
    assert abs(without - target.log_z) > 0.5


@pytest.mark.parametrize("block", [Metropolis(_target().energy, step=1.0),
                                   Langevin(_target().energy, step=0.4, metropolis=True)],
                         ids=["metropolis", "mala"])
def test_a_long_chain_reaches_the_target_moments(block):
    n, gen = 4000, torch.Generator().manual_seed(2)
    x = 0.1 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(300):
            x, _ = block(x, gen)
    assert ((x.mean(0) - MEAN).abs() < 4 * SCALE / math.sqrt(n)).all()
    assert ((x.var(0) - SCALE ** 2).abs() < 4 * SCALE ** 2 * math.sqrt(2 / n)).all()


class GaussianFlow(nn.Module):
    """q = N(mu, diag exp(2 log_sigma)) by reparameterization; log_prob is differentiable in x."""

    def __init__(self, mu, log_sigma):
        super().__init__()
        self.mu = nn.Parameter(torch.as_tensor(mu, dtype=torch.float64).clone())
        self.log_sigma = nn.Parameter(torch.as_tensor(log_sigma, dtype=torch.float64).clone())

    def log_prob(self, x):
        return (-0.5 * ((x - self.mu) / self.log_sigma.exp()) ** 2 - self.log_sigma).sum(-1) \
            - 0.5 * x.shape[1] * math.log(2 * math.pi)

    def sample_and_log_prob(self, n, generator=None):
        x = self.mu + self.log_sigma.exp() * torch.randn(n, self.mu.shape[0], generator=generator,
                                                        dtype=torch.float64)
        return x, self.log_prob(x)


def _exact_kl_gradient(flow):
    """d KL(q || p) / d (mu, log_sigma) for diagonal Gaussians, by autograd on the closed form."""
    mu, ls = flow.mu.detach().requires_grad_(), flow.log_sigma.detach().requires_grad_()
    kl = (SCALE.log() - ls + ((2 * ls).exp() + (mu - MEAN) ** 2) / (2 * SCALE ** 2) - 0.5).sum()
    return torch.cat(torch.autograd.grad(kl, [mu, ls]))


@pytest.mark.parametrize("path", [False, True])
def test_both_estimators_are_unbiased(path):
    flow, target = GaussianFlow([0.2, 0.5], [0.3, -0.4]), _target()
    gen = torch.Generator().manual_seed(3)

    def loss():
        return reverse_kl_loss(flow, target.energy, 8, path=path, generator=gen)
    grads = gradient_samples(loss, flow.parameters(), 1000)
    se = grads.std(0) / math.sqrt(len(grads))
    assert ((grads.mean(0) - _exact_kl_gradient(flow)).abs() < 4 * se + 1e-12).all()


def test_at_the_optimum_only_the_path_estimator_has_no_variance():
    flow, target = GaussianFlow(MEAN, SCALE.log()), _target()
    gen = torch.Generator().manual_seed(4)
    variances = [gradient_variance(lambda: reverse_kl_loss(flow, target.energy, 8, path=path,
                                                           generator=gen),
                                   flow.parameters(), 50) for path in (False, True)]
    assert variances[0] > 0.05
    assert variances[1] < 1e-20


def test_planar_radial_flow_works_for_the_standard_estimator_only():
    flow = planar_radial.gaussian_flow(torch.zeros(2), torch.zeros(2)).double()
    loss = reverse_kl_loss(flow, _target().energy, 16, generator=torch.Generator().manual_seed(5))
    loss.backward()
    assert flow.blocks[0].mu.grad is not None
    with pytest.raises(ValueError, match="not differentiable in x"):
        reverse_kl_loss(flow, _target().energy, 16, path=True)


def test_bad_input_raises():
    u = _target().energy
    with pytest.raises(ValueError, match="step =="):
        Metropolis(u, step=0.0)
    with pytest.raises(ValueError, match="steps =="):
        Langevin(u, step=0.1, steps=0)
    with pytest.raises(ValueError, match="must be \\(N, D\\)"):
        Langevin(u, step=0.1)(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="n =="):
        reverse_kl_loss(GaussianFlow([0.0], [0.0]), u, 0)
    with pytest.raises(ValueError, match="repeats =="):
        gradient_variance(lambda: torch.zeros((), requires_grad=True), [torch.zeros(1)], 1)


def test_ess_fraction_of_equal_and_degenerate_weights():
    assert ess_fraction(torch.zeros(10)) == pytest.approx(1.0)
    assert ess_fraction(torch.tensor([0.0, -1e9])) == pytest.approx(0.5)
    assert ess_fraction(torch.tensor([0.0, math.log(3.0)])) == pytest.approx(16 / 20)
