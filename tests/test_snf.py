"""Tests of repro.normalizing_flows.snf: the inverted layer, the SNF's two losses and path weights,
and the double well's exact sampler."""
import math

import pytest
import torch

from layer_checks import autograd_log_det, randomize
from repro.normalizing_flows import coupling, sampling, snf, targets


def _layers(seed=0):
    torch.manual_seed(seed)
    return [randomize(coupling.AffineCoupling(2, mask=m, hidden=8), scale=0.3, seed=seed + i)
            .double() for i, m in enumerate(([1, 0], [0, 1], [1, 0]))]


def test_inverted_is_invertible_and_its_log_det_matches_autograd():
    layer = snf.Inverted(_layers()[0])
    z = torch.randn(6, 2, dtype=torch.float64)
    x, log_det = layer(z)
    back, log_det_back = layer.inverse(x)
    torch.testing.assert_close(back, z, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det_back, -log_det, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det, autograd_log_det(layer, z), atol=1e-10, rtol=0)


def test_deterministic_chain_losses_are_the_flows_likelihood_and_kl():
    layers = _layers()
    chain = snf.SNF([snf.Inverted(layer) for layer in layers], dim=2).double()
    flow = coupling.FlowModel(list(reversed(layers)), dim=2).double()
    x = torch.randn(50, 2, dtype=torch.float64)
    torch.testing.assert_close(chain.ml_loss(x), -flow.log_prob(x).mean(), atol=1e-10, rtol=0)
    gen = torch.Generator().manual_seed(3)
    energy = targets.GaussianMixture([[0.0, 0.0]], [1.5]).energy
    xs, log_w = chain.sample_with_log_weights(40, energy, gen)
    torch.testing.assert_close(log_w, -flow.log_prob(xs) - energy(xs), atol=1e-10, rtol=0)


def test_snf_weights_are_unbiased_for_log_z():
    """E[w] = Z: with Metropolis blocks and random layers, the reweighted log Z of a Gaussian
    mixture lands within 4 standard errors of the exact value."""
    target = targets.GaussianMixture([[-2.0, 0.0], [2.0, 0.5]], [0.7, 0.9], weights=[1.0, 3.0])
    steps = []
    for i, layer in enumerate(_layers(1)):
        steps += [snf.Inverted(layer),
                  sampling.Metropolis(snf.InterpolatedEnergy(target.energy, i / 2), 0.5, 5)]
    chain = snf.SNF(steps, dim=2).double()
    with torch.no_grad():
        _, log_w = chain.sample_with_log_weights(40_000, target.energy,
                                                 torch.Generator().manual_seed(0))
    log_z, se = sampling.log_z_estimate(log_w)
    assert abs(log_z - target.log_z) < 4 * se


def test_ml_loss_bounds_and_gradients_flow_through_blocks():
    target = targets.DoubleWell(c=-0.5)
    steps = [snf.Inverted(_layers()[0]), sampling.Metropolis(target.energy, 0.3, 3),
             snf.Inverted(_layers()[1])]
    chain = snf.SNF(steps, dim=2).double()
    x = snf.DoubleWellSampler(target).sample(64, torch.Generator().manual_seed(0))
    loss = chain.ml_loss(x, torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in chain.steps[0].parameters())
    chain.zero_grad()
    chain.kl_loss(64, target.energy, torch.Generator().manual_seed(2)).backward()
    assert all(p.grad is not None for p in chain.steps[2].parameters())


def test_double_well_sampler_matches_quadrature():
    target = targets.DoubleWell(a=1.0, b=6.0, c=-0.5)
    exact = snf.DoubleWellSampler(target)
    from scipy.integrate import quad
    log_z1 = target.log_z - 0.5 * math.log(2 * math.pi)  # the x1 factor of Z
    f = lambda t: math.exp(-target.energy_first(t) - log_z1)
    assert exact.probability(0.0, 10.0) == pytest.approx(quad(f, 0, 6, points=[1.7])[0], abs=1e-6)
    x = exact.sample(200_000, torch.Generator().manual_seed(0))
    assert x.shape == (200_000, 2)
    assert (x[:, 0] > 0).double().mean().item() == pytest.approx(exact.probability(0, 10),
                                                                 abs=0.004)
    assert x[:, 1].std().item() == pytest.approx(1.0, abs=0.01)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="lam"):
        snf.InterpolatedEnergy(lambda x: x.sum(-1), 1.5)
    chain = snf.SNF([snf.Inverted(_layers()[0])], dim=2)
    with pytest.raises(ValueError, match="must be"):
        chain.ml_loss(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="low < high"):
        snf.DoubleWellSampler(targets.DoubleWell()).probability(1.0, 0.0)
