import math

import pytest
import torch
from torch.autograd.functional import jacobian

from repro.normalizing_flows import dlgm, planar_radial


def _data(n=40, pixels=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, pixels, generator=gen) > 0.5).float()


def test_tied_models_start_equal_and_shapes_are_per_model():
    torch.manual_seed(0)
    vae = dlgm.FlowVAE(6, [0, 0, 3, 3], latent=2, hidden=5)
    for p in vae.parameters():
        torch.testing.assert_close(p[0], p[2])                       # replicate 0 of both lengths
        torch.testing.assert_close(p[1], p[3])
        assert not torch.equal(p[0], p[1]) or p.abs().max() == 0       # replicates differ (biases start at 0)
    z, log_q = vae.posterior(_data(), samples=3)
    assert z.shape == (4, 40, 3, 2) and log_q.shape == (4, 40, 3)
    assert vae.free_energy(_data()).shape == (4, 40) and vae.bound(_data(), samples=2, chunk=16).shape == (4, 40)


def test_posterior_log_density_matches_the_change_of_variables():
    torch.manual_seed(1)
    vae = dlgm.FlowVAE(6, [4], latent=2, hidden=5).double()
    with torch.no_grad():                                            # flows far from the identity
        vae.enc2.weight.mul_(20)
    x = _data(n=1).double()
    torch.manual_seed(2)
    z_k, log_q = vae.posterior(x, samples=1)
    # redo the map from the same noise: z_0 = mu + sigma eps, then the flow, with its Jacobian by autograd
    out = vae.enc2(torch.tanh(vae.enc1(x.expand(1, 1, 6))))[0, 0]
    mu, log_sigma, flow = out[:2], out[2:4], out[4:].reshape(4, 5)
    w, u, b = flow[:, :2], flow[:, 2:4], flow[:, 4]
    torch.manual_seed(2)
    eps = torch.randn(1, 1, 2, dtype=torch.float64)[0, 0]

    def f(e):
        z0 = mu + log_sigma.exp() * e
        return planar_radial.planar_layers(z0[None], w, planar_radial.planar_u_hat(w, u), b)[0][0]

    torch.testing.assert_close(z_k[0, 0, 0], f(eps))
    log_base = (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi)).sum()
    expected = log_base - torch.linalg.slogdet(jacobian(f, eps))[1]
    torch.testing.assert_close(log_q[0, 0, 0], expected)


def test_the_bound_is_above_minus_log_likelihood():
    # one latent dimension: log p(x) = log of the integral of p(x | z) N(z) dz, by quadrature
    torch.manual_seed(3)
    vae = dlgm.FlowVAE(6, [0, 2], latent=1, hidden=5).double()
    with torch.no_grad():
        vae.dec2.weight.mul_(8)
    x = _data(n=5).double()
    z = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    log_joint = vae.log_joint(x, z.view(1, 1, -1, 1).expand(2, 5, -1, 1))   # (2, 5, Z)
    log_px = torch.logsumexp(log_joint, -1) + math.log(z[1] - z[0])
    bound = vae.bound(x, samples=20_000)
    assert (bound >= -log_px - 0.02).all()                           # Monte Carlo error only
    assert (bound + log_px).max() > 0.05                             # and the bound is not tight here


def test_fit_lowers_the_bound_and_shares_the_warm_start():
    torch.manual_seed(4)
    x = _data(n=64, pixels=8)
    vae = dlgm.FlowVAE(8, [0, 3], latent=2, hidden=8)
    before = vae.bound(x, samples=8).mean(-1)
    dlgm.fit(vae, x, steps=40, batch_size=16, lr=0.01, shared_steps=40, warmup=10)
    for p in vae.parameters():                                        # flows never switched on: identical models
        torch.testing.assert_close(p[0], p[1])
    assert vae.flows_on and (vae.bound(x, samples=8).mean(-1) < before).all()
    dlgm.fit(vae, x, steps=20, batch_size=16, lr=0.01, shared_steps=0)
    assert not torch.equal(vae.enc2.weight[0], vae.enc2.weight[1])


def test_binarize_and_bad_arguments():
    torch.testing.assert_close(dlgm.binarize(torch.tensor([0.0, 8.0, 8.5, 16.0]), 8), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="lengths is empty"):
        dlgm.FlowVAE(6, [])
    with pytest.raises(ValueError, match="length == -1"):
        dlgm.FlowVAE(6, [0, -1])
    with pytest.raises(ValueError, match="beta == 2"):
        dlgm.FlowVAE(6, [1]).free_energy(_data(), beta=2)


def test_the_shared_phase_trains_one_model_per_replicate_as_if_all_had_trained():
    x = _data(n=64, pixels=8)
    torch.manual_seed(5)
    fast = dlgm.FlowVAE(8, [0, 0, 2, 2], latent=2, hidden=8)
    slow = dlgm.FlowVAE(8, [0, 0, 2, 2], latent=2, hidden=8)
    slow.load_state_dict(fast.state_dict())
    torch.manual_seed(6)
    dlgm.fit(fast, x, steps=30, batch_size=16, lr=0.01, shared_steps=12, warmup=10)
    # the same recipe with every model computed in the shared phase
    torch.manual_seed(6)
    opt = torch.optim.Adam(slow.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 30)
    batches = dlgm.train.batches(x, batch_size=16, seed=0)
    for step in range(30):
        (batch,) = next(batches)
        slow.flows_on = step >= 12
        opt.zero_grad()
        slow.free_energy(batch, 1, planar_radial.annealing(step, 10)).mean(-1).sum().backward()
        opt.step()
        sched.step()
    for p_fast, p_slow in zip(fast.parameters(), slow.parameters()):
        torch.testing.assert_close(p_fast, p_slow, atol=1e-5, rtol=1e-4)
