"""Tests of repro.normalizing_flows.rotations: quaternions, the (double) Moebius maps on S^3 with
their log-determinants against a tangent-space Jacobian, the augmented flow on SO(3) x R^3, and
the Bingham-mixture target's normalizer and samples."""
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from layer_checks import randomize
from repro.normalizing_flows import rotations as R

DT = torch.float64


def _points(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = R.uniform_quaternions(n, g, DT)
    w = R._centre(torch.randn(n, 4, generator=g, dtype=DT))
    return q, w


def _tangent_basis(p):
    """Three orthonormal vectors (4, 3) orthogonal to the unit vector p (4,)."""
    m = torch.cat([p[:, None], torch.eye(4, dtype=p.dtype)[:, :3]], 1)
    return torch.linalg.qr(m)[0][:, 1:]


def _tangent_log_det(fn, q):
    """log|det| of a map S^3 -> S^3 at each row of q, from the autograd Jacobian restricted to the
    tangent spaces at q and at fn(q)."""
    out = []
    for qi in q:
        jac = jacobian(lambda x: fn(x[None])[0], qi)
        e, f = _tangent_basis(qi), _tangent_basis(fn(qi[None])[0])
        out.append(torch.linalg.slogdet(f.T @ jac @ e)[1])
    return torch.stack(out)


def test_quaternion_matrix_round_trip_and_sign():
    q, _ = _points(20)
    m = R.quaternion_to_matrix(q)
    torch.testing.assert_close(m @ m.transpose(-1, -2), torch.eye(3, dtype=DT).expand(20, 3, 3))
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(20, dtype=DT))
    torch.testing.assert_close(R.quaternion_to_matrix(-q), m)
    back = R.matrix_to_quaternion(m)
    sign = torch.sign((back * q).sum(1, keepdim=True))
    torch.testing.assert_close(back * sign, q)


def test_quaternion_product_composes_rotations():
    q, _ = _points(5, seed=1)
    p, _ = _points(5, seed=2)
    torch.testing.assert_close(R.quaternion_to_matrix(R.quaternion_multiply(p, q)),
                               R.quaternion_to_matrix(p) @ R.quaternion_to_matrix(q))


def test_double_moebius_is_the_sum_of_two_moebius_maps():
    q, w = _points()
    s = R.moebius(q, w)[0] + R.moebius(q, -w)[0]
    torch.testing.assert_close(R.double_moebius(q, w)[0], s / s.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("fn", [R.double_moebius, R.moebius])
def test_maps_stay_on_the_sphere_and_log_det_matches_tangent_jacobian(fn):
    q, w = _points()
    y, log_det = fn(q, w)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(len(q), dtype=DT))
    for i in range(len(q)):
        expected = _tangent_log_det(lambda x: fn(x, w[i:i + 1])[0], q[i:i + 1])
        torch.testing.assert_close(log_det[i:i + 1], expected, atol=1e-9, rtol=0)


def test_double_moebius_inverse_and_antipodal_symmetry():
    q, w = _points()
    y, ld = R.double_moebius(q, w)
    back, ld_inv = R.double_moebius_inverse(y, w)
    torch.testing.assert_close(back, q, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld + ld_inv, torch.zeros_like(ld), atol=1e-10, rtol=0)
    y_neg, ld_neg = R.double_moebius(-q, w)
    torch.testing.assert_close(y_neg, -y)
    torch.testing.assert_close(ld_neg, ld)
    # the single map is an involution and is not odd
    torch.testing.assert_close(R.moebius(R.moebius(q, w)[0], w)[0], q)
    assert (R.moebius(-q, w)[0] + R.moebius(q, w)[0]).abs().max() > 1e-3


def _flow(symmetric=True, scale=0.5):
    torch.manual_seed(0)
    return randomize(R.AugmentedRotationFlow(blocks=2, hidden=8, symmetric=symmetric).to(DT),
                     scale=scale)


@pytest.mark.parametrize("symmetric", [True, False])
def test_flow_invertible_and_sample_log_prob_consistent(symmetric):
    flow = _flow(symmetric)
    g = torch.Generator().manual_seed(3)
    x, log_p = flow.sample_and_log_prob(50, generator=g)
    torch.testing.assert_close(x[:, :4].norm(dim=1), torch.ones(50, dtype=DT))
    torch.testing.assert_close(flow.log_prob(x), log_p, atol=1e-10, rtol=0)
    z = x
    for layer in flow.layers:
        z = layer(z)[0]
    for layer in reversed(flow.layers):
        z = layer.inverse(z)[0]
    torch.testing.assert_close(z, x, atol=1e-10, rtol=0)


def test_flow_density_is_antipodally_symmetric_only_when_built_so():
    g = torch.Generator().manual_seed(4)
    for symmetric in (True, False):
        flow = _flow(symmetric)
        x = flow.sample(100, generator=g)
        flipped = torch.cat([-x[:, :4], x[:, 4:]], 1)
        gap = (flow.log_prob(x) - flow.log_prob(flipped)).abs().max().item()
        assert (gap < 1e-10) if symmetric else (gap > 1e-3)


def test_flow_density_integrates_to_one():
    """E_{uniform q, Gaussian a}[q_flow(q, a) / base(q, a)] = 1 by Monte Carlo."""
    flow = _flow(scale=0.15)             # far from the base, yet not so far that the MC fails
    g = torch.Generator().manual_seed(5)
    n = 200_000
    x = torch.cat([R.uniform_quaternions(n, g, DT), torch.randn(n, 3, generator=g, dtype=DT)], 1)
    with torch.no_grad():
        ratio = torch.exp(flow.log_prob(x) - flow.base_log_prob(x))
    se = ratio.std() / math.sqrt(n)
    assert abs(ratio.mean().item() - 1) < 4 * se.item() + 1e-3


def test_bingham_mixture_normalizer_and_samples():
    g = torch.Generator().manual_seed(6)
    target = R.BinghamMixture(R.uniform_quaternions(3, g, DT), kappa=10.0)
    u = R.uniform_quaternions(400_000, g, DT)
    lw = target.log_prob_unnormalized(u)
    mc = (torch.logsumexp(lw, 0) - math.log(len(u))).item()
    assert abs(mc - target.log_z) < 0.02
    # an expectation under the exact samples matches the reweighted uniform estimate
    f = lambda q: (q @ target.modes.T).pow(2).max(1).values
    exact = f(target.sample(100_000, g)).mean().item()
    reweighted = (torch.softmax(lw, 0) * f(u)).sum().item()
    assert abs(exact - reweighted) < 0.01
    torch.testing.assert_close(target.log_prob(-u[:10]), target.log_prob(u[:10]))


def test_uniform_quaternions_have_the_haar_density():
    q = R.uniform_quaternions(10, torch.Generator().manual_seed(0), DT)
    torch.testing.assert_close(R.haar_log_prob(q), torch.zeros(10, dtype=DT))


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        R.haar_log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        R.AugmentedRotationFlow(blocks=1).log_prob(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        R.matrix_to_quaternion(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError):
        R.BinghamMixture(torch.ones(2, 4), kappa=-1.0)
