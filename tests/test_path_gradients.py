"""Fast path gradients (repro.normalizing_flows.path_gradients): the recursion against autograd,
the fast estimator against the slow drop-in one, unbiasedness, and zero variance at q = p."""
import copy

import pytest
import torch

from repro.normalizing_flows import path_gradients as pg
from repro.normalizing_flows.coupling import (AffineCoupling, FlowModel, MaskedAutoregressive,
                                              Permute)
from repro.normalizing_flows.sampling import gradient_samples, reverse_kl_loss
from repro.normalizing_flows.targets import GaussianMixture
from layer_checks import randomize


def make_flow(seed=0, maf=True, hidden=8):
    torch.manual_seed(seed)
    layers = [AffineCoupling(2, hidden=hidden), Permute(2), AffineCoupling(2, hidden=hidden)]
    if maf:
        layers += [Permute(2), MaskedAutoregressive(2, hidden=hidden)]
    return randomize(FlowModel(layers, 2).double(), scale=0.4, seed=seed)


TARGET = GaussianMixture([[-1.5, 0.0], [1.5, 0.5]], [0.7, 0.9])


def grads(loss, flow):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(flow.parameters()))])


def test_sampling_score_matches_autograd():
    flow = make_flow()
    x, v = pg.sample_with_score(flow, 64, torch.Generator().manual_seed(1))
    xd = x.detach().requires_grad_()
    (ref,) = torch.autograd.grad(flow.log_prob(xd).sum(), xd)
    torch.testing.assert_close(v, ref, atol=1e-10, rtol=0)


def test_sampling_matches_flow_sample():
    flow = make_flow()
    x, _ = pg.sample_with_score(flow, 16, torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, flow.sample(16, torch.Generator().manual_seed(3)),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("maf", [False, True])
def test_fast_equals_slow_path_gradient(maf):
    flow = make_flow(maf=maf)
    fast = grads(pg.fast_path_loss(flow, TARGET.energy, 128, torch.Generator().manual_seed(2)),
                 flow)
    slow = grads(reverse_kl_loss(flow, TARGET.energy, 128, path=True,
                                 generator=torch.Generator().manual_seed(2)), flow)
    assert slow.abs().max() > 1e-3
    torch.testing.assert_close(fast, slow, atol=1e-10, rtol=0)


def test_pushforward_score_matches_autograd():
    """w from the data-side recursion is grad_u log p^0(u), p^0 = f_# p, at u = f(x)."""
    flow = make_flow()
    x = TARGET.sample(32, torch.Generator().manual_seed(4))
    u, w = x, -pg._force(TARGET.energy, x)
    for layer in flow.layers:
        u, w = pg._density_step(layer, u, w)
    ud = u.detach().requires_grad_()
    z, log_p0 = ud, torch.zeros(len(ud), dtype=ud.dtype)
    for layer in reversed(flow.layers):
        z, ld_inverse = layer.inverse(z)
        log_p0 = log_p0 + ld_inverse                                # log|det dg/du|
    log_p0 = log_p0 - TARGET.energy(z)
    (ref,) = torch.autograd.grad(log_p0.sum(), ud)
    torch.testing.assert_close(w, ref, atol=1e-10, rtol=0)


def _mean_z2(a, b):
    """Mean over parameter entries of the squared z-score of mean(a) - mean(b) (independent draws):
    about 1 when both estimate the same expectation."""
    diff = a.mean(0) - b.mean(0)
    se2 = a.var(0) / len(a) + b.var(0) / len(b)
    keep = se2 > 1e-20
    return (diff[keep] ** 2 / se2[keep]).mean().item()


def test_reverse_path_gradient_unbiased():
    flow = make_flow(maf=False)
    gen = torch.Generator().manual_seed(5)
    params = list(flow.parameters())
    std = gradient_samples(lambda: reverse_kl_loss(flow, TARGET.energy, 32, generator=gen),
                           params, 300)
    fast = gradient_samples(lambda: pg.fast_path_loss(flow, TARGET.energy, 32, gen), params, 300)
    assert _mean_z2(fast, std) < 2.0
    # the test can fail: leaving out the target's force biases the estimator
    def biased():
        x, v = pg.sample_with_score(flow, 32, gen)
        return (v * x).sum(1).mean()
    assert _mean_z2(gradient_samples(biased, params, 300), std) > 5.0


def test_forward_path_gradient_unbiased():
    flow = make_flow(maf=False)
    gen = torch.Generator().manual_seed(6)
    params = list(flow.parameters())
    std = gradient_samples(lambda: pg.ml_loss(flow, TARGET.sample(32, gen)), params, 300)
    path = gradient_samples(lambda: pg.forward_path_loss(flow, TARGET.energy,
                                                         TARGET.sample(32, gen)), params, 300)
    assert _mean_z2(path, std) < 2.0
    wrong = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.7, 0.9])  # the force of another target
    biased = gradient_samples(lambda: pg.forward_path_loss(flow, wrong.energy,
                                                           TARGET.sample(32, gen)), params, 300)
    assert _mean_z2(biased, std) > 5.0


def test_path_gradients_vanish_at_the_target():
    flow = make_flow()
    teacher = copy.deepcopy(flow)
    energy = lambda x: -teacher.log_prob(x)                          # noqa: E731
    gen = torch.Generator().manual_seed(7)
    assert grads(pg.fast_path_loss(flow, energy, 64, gen), flow).abs().max() < 1e-10
    x = flow.sample(64, gen).detach()
    assert grads(pg.forward_path_loss(flow, energy, x), flow).abs().max() < 1e-10
    assert grads(reverse_kl_loss(flow, energy, 64, generator=gen), flow).abs().max() > 1e-3
    assert grads(pg.ml_loss(flow, x), flow).abs().max() > 1e-3


def test_bad_input_raises():
    flow = make_flow()
    with pytest.raises(ValueError, match="FlowModel"):
        pg.fast_path_loss(torch.nn.Linear(2, 2), TARGET.energy, 8)
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        pg.forward_path_loss(flow, TARGET.energy, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="must be one of"):
        pg.conditioner_evaluations(flow, "fastest")
    assert pg.conditioner_evaluations(flow, "slow") == 2 * pg.conditioner_evaluations(flow, "fast")
