import pytest
import torch

from repro.normalizing_flows import kernel_coupling as kc
from layer_checks import autograd_log_det, randomize

GEN = torch.Generator().manual_seed(1)

LAYERS = [
    (lambda: kc.KernelCoupling(2, n_support=5), 2),
    (lambda: kc.KernelCoupling(4, mask=[0, 1, 0, 1], n_support=7, lengthscale=0.7), 4),
    (lambda: kc.kernel_flow(3, depth=3, n_support=4), 3),
]


def _points(dim, n=40):
    return 1.5 * torch.randn(n, dim, dtype=torch.float64, generator=GEN)


@pytest.mark.parametrize("make, dim", LAYERS[:2])
def test_inverse_undoes_forward_and_negates_log_det(make, dim):
    layer = randomize(make().double(), scale=0.5)
    x = _points(dim)
    u, log_det = layer(x)
    x_back, log_det_inverse = layer.inverse(u)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_det_inverse, -log_det, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("make, dim", LAYERS[:2])
def test_log_det_matches_autograd(make, dim):
    layer = randomize(make().double(), scale=0.5)
    x = _points(dim, 6)
    torch.testing.assert_close(layer(x)[1], autograd_log_det(layer, x), atol=1e-10, rtol=1e-10)


def test_flow_sample_log_prob_agree():
    flow = randomize(kc.kernel_flow(3, depth=3, n_support=4).double(), scale=0.5)
    x, log_p = flow.sample_and_log_prob(30, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(flow.log_prob(x), log_p, atol=1e-10, rtol=1e-10)


def test_conditioner_is_its_kernel_expansion():
    """f(x) = sum_m alpha_m exp(-|b(x - z_m)|^2 / 2 l^2), written out term by term."""
    layer = randomize(kc.KernelCoupling(3, mask=[1, 0, 1], n_support=5).double(), scale=0.8)
    net, x = layer.net, _points(3, 8)
    b, z, alpha, l = net.mask, net.support, net.alpha, net.log_lengthscale.exp()
    expected = torch.stack([sum(alpha[m] * torch.exp(-((b * (xi - z[m])) ** 2).sum() / (2 * l ** 2))
                                for m in range(len(z))) for xi in x])
    torch.testing.assert_close(net(x), expected, atol=1e-12, rtol=1e-12)
    # the transformed coordinate does not enter the conditioner
    moved = x.clone()
    moved[:, 1] += 3.0
    torch.testing.assert_close(net(moved), net(x), atol=1e-12, rtol=1e-12)


def test_new_layer_is_identity_and_param_count():
    layer = kc.KernelCoupling(2, n_support=16)
    x = torch.randn(10, 2)
    u, log_det = layer(x)
    torch.testing.assert_close(u, x)
    torch.testing.assert_close(log_det, torch.zeros(10))
    # support points (16, 2), weights (16, 4), log length-scale, the coupling's 2 scales
    assert kc.n_parameters(layer) == 16 * 2 + 16 * 4 + 1 + 2
    kernel, mlp = kc.kernel_flow(2, 4, 16), kc.realnvp_flow(2, 4, 32)
    assert kc.n_parameters(mlp) > 10 * kc.n_parameters(kernel)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dim=2, n_support=0, d_out=2), "n_support"),
    (dict(dim=2, n_support=3, d_out=2, lengthscale=0.0), "lengthscale"),
    (dict(dim=2, n_support=3, d_out=2, mask=[0, 0]), "mask"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kc.KernelExpansion(**kwargs)


def test_bad_input_shape_raises():
    with pytest.raises(ValueError, match="must be"):
        kc.KernelCoupling(3)(torch.zeros(4, 2))
