"""EvoNorm-B0 and -S0 against the paper's equations and against torch's own normalization layers."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from repro.normalization import evonorm


def _x(n=6, c=8, h=5, w=4, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


def test_group_std_is_group_norms_denominator():
    x = _x()
    for groups in (1, 2, 4, 8):
        std = evonorm.group_std(x, groups)
        mean = x.reshape(6, groups, -1).mean(-1).repeat_interleave(8 // groups, 1)[..., None, None]
        torch.testing.assert_close((x - mean) / std, F.group_norm(x, groups), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="does not divide"):
        evonorm.group_std(x, 3)


def test_instance_std_is_instance_norms_denominator():
    x = _x()
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close((x - mean) / evonorm.instance_std(x), F.instance_norm(x),
                               atol=1e-5, rtol=1e-5)


def _randomized(layer):
    """The layer with random gamma, beta and v, so that the equations are checked away from init."""
    with torch.no_grad():
        for p in (layer.gamma, layer.beta, layer.v):
            p.copy_(torch.randn_like(p))
    return layer


def test_s0_matches_its_equation():
    x = _x()
    layer = _randomized(evonorm.EvoNormS0(8, groups=4))
    grouped = x.reshape(6, 4, 2, 5, 4)
    std = (grouped.var(dim=(2, 3, 4), unbiased=False, keepdim=True) + 1e-5).sqrt()
    expected = (x * torch.sigmoid(layer.v * x)).reshape_as(grouped) / std
    expected = expected.reshape_as(x) * layer.gamma + layer.beta
    torch.testing.assert_close(layer(x), expected)


def test_s0_without_its_nonlinearity_is_an_uncentred_group_norm():
    # dropping the sigmoid gate leaves x / group std: GroupNorm without the centring, which equals
    # GroupNorm on inputs whose groups have mean zero
    x = _x()
    x = x - x.reshape(6, 4, -1).mean(-1).repeat_interleave(2, 1)[..., None, None]
    layer = evonorm.EvoNormS0(8, groups=4)
    ungated = x / evonorm.group_std(x, 4)
    torch.testing.assert_close(ungated * layer.gamma + layer.beta, F.group_norm(x, 4),
                               atol=1e-5, rtol=1e-5)
    # with v = 0 the gate is a constant 1/2: S0 is then half that uncentred group norm
    with torch.no_grad():
        layer.v.zero_()
    torch.testing.assert_close(layer(x), 0.5 * F.group_norm(x, 4), atol=1e-5, rtol=1e-5)


def test_s0_is_batch_independent_and_batch_norm_is_not():
    x = _x()
    s0, bn = evonorm.EvoNormS0(8), nn.BatchNorm2d(8)
    torch.testing.assert_close(s0(x)[:1], s0(x[:1]))
    assert not torch.allclose(bn(x)[:1], bn(x[:1]), atol=1e-3)


def test_b0_matches_its_equation_and_tracks_the_batch_variance():
    x = _x()
    layer = _randomized(evonorm.EvoNormB0(8, momentum=0.1))
    batch_var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    den = torch.maximum((batch_var + 1e-5).sqrt(), layer.v * x + evonorm.instance_std(x))
    torch.testing.assert_close(layer(x), x / den * layer.gamma + layer.beta)
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * batch_var)
    layer.eval()  # evaluation uses the moving variance, so one example alone gives the same output
    den = torch.maximum((layer.running_var + 1e-5).sqrt(), layer.v * x + evonorm.instance_std(x))
    torch.testing.assert_close(layer(x), x / den * layer.gamma + layer.beta)
    torch.testing.assert_close(layer(x)[:1], layer(x[:1]))


def test_b0_is_batch_norm_without_centring_when_the_batch_std_wins():
    # with v = 0 and instance statistics below the batch's, B0 is x / batch std: BatchNorm's
    # training output on a batch whose channels have mean zero
    x = _x()
    x = x - x.mean(dim=(0, 2, 3), keepdim=True)
    layer = evonorm.EvoNormB0(8)
    with torch.no_grad():
        layer.v.fill_(-10.0)  # v x + s_i is then below s_b wherever x > 0 ...
    out = layer(x)
    bn = F.batch_norm(x, None, None, training=True)
    mask = x > 0.5
    torch.testing.assert_close(out[mask], bn[mask], atol=1e-5, rtol=1e-5)


def test_b0_is_scale_invariant_and_s0_is_not():
    x = _x()
    b0, s0 = evonorm.EvoNormB0(8, eps=1e-12), evonorm.EvoNormS0(8, eps=1e-12)
    torch.testing.assert_close(b0(7.0 * x), b0(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(s0(7.0 * x), s0(x), atol=1e-3)


def test_without_nonlinearity_both_are_affine():
    x = _x()
    for layer in (evonorm.EvoNormB0(8, nonlinearity=False),
                  evonorm.EvoNormS0(8, nonlinearity=False)):
        torch.testing.assert_close(layer(x), x * layer.gamma + layer.beta)


def test_cnn_output_shape_and_each_factory_is_used():
    x = _x(n=3, c=1, h=8, w=8)
    for name, factory in evonorm.NORM_ACTS.items():
        built = []

        def counting(channels, factory=factory):
            built.append(channels)
            return factory(channels)

        model = evonorm.NormActCNN(1, 10, 8, counting, channels=8)
        assert model(x).shape == (3, 10), name
        assert built == [8, 8], name
        kinds = [type(m) for m in model.features]
        assert kinds.count(nn.ReLU) == 0, name  # the factory brings its own activation
    with pytest.raises(TypeError, match="factory"):
        evonorm.NormActCNN(1, 10, 8, "batch")


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="divide"):
        evonorm.EvoNormS0(8, groups=3)
    with pytest.raises(ValueError, match="momentum"):
        evonorm.EvoNormB0(8, momentum=0.0)
