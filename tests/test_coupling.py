import math

import pytest
import torch
from torch.autograd.functional import jacobian

from repro.normalizing_flows import coupling, potentials
from layer_checks import autograd_log_det, randomize


class _Chain(torch.nn.Module):
    """Layers in sequence with the same (forward, inverse) interface: the stack under test."""

    def __init__(self, layers):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x):
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            total = total + ld
        return x, total

    def inverse(self, u):
        total = u.new_zeros(u.shape[0])
        for layer in reversed(self.layers):
            u, ld = layer.inverse(u)
            total = total + ld
        return u, total


def _stack(dim):
    return _Chain([coupling.AffineCoupling(dim, hidden=8), coupling.Permute(dim),
                   coupling.MaskedAutoregressive(dim, hidden=8), coupling.AdditiveCoupling(dim, hidden=8),
                   coupling.Scaling(dim)])


LAYERS = [
    (lambda: coupling.AffineCoupling(2, hidden=8), 2),
    (lambda: coupling.AffineCoupling(4, mask=[0, 1, 0, 1], hidden=8), 4),
    (lambda: coupling.AdditiveCoupling(3, hidden=8), 3),
    (lambda: coupling.Scaling(3), 3),
    (lambda: coupling.MaskedAutoregressive(3, hidden=8), 3),
    (lambda: coupling.MaskedAutoregressive(4, hidden=5), 4),
    (lambda: coupling.Permute(4, [2, 0, 3, 1]), 4),
    (lambda: _stack(3), 3),
]


@pytest.mark.parametrize("make, dim", LAYERS)
def test_inverse_undoes_forward_and_negates_log_det(make, dim):
    layer = randomize(make().double(), scale=0.5)
    x = 1.5 * torch.randn(50, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u, log_det = layer(x)
    x_back, log_det_inverse = layer.inverse(u)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_det_inverse, -log_det, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("make, dim", LAYERS)
def test_log_det_matches_autograd_jacobian(make, dim):
    layer = randomize(make().double(), scale=0.5)
    x = 1.5 * torch.randn(5, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(layer(x)[1], autograd_log_det(layer, x))
    u = layer(x)[0]
    torch.testing.assert_close(layer.inverse(u)[1], autograd_log_det(layer.inverse, u))


def test_layers_move_points():
    """Guards the tests above: randomised layers are far from the identity (so invertibility means something)."""
    for make, dim in LAYERS:
        layer = randomize(make().double(), scale=0.5)
        x = torch.randn(20, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        assert (layer(x)[0] - x).abs().max() > 1e-2


def test_new_layers_start_as_identity():
    x = torch.randn(10, 3)
    for layer in (coupling.AffineCoupling(3), coupling.AdditiveCoupling(3), coupling.MaskedAutoregressive(3)):
        u, log_det = layer(x)
        torch.testing.assert_close(u, x)
        torch.testing.assert_close(log_det, torch.zeros(10))


def test_coupling_keeps_the_conditioning_coordinates():
    for cls in (coupling.AffineCoupling, coupling.AdditiveCoupling):
        layer = randomize(cls(4, mask=[1, 0, 0, 1], hidden=8).double(), scale=0.5)
        x = torch.randn(30, 4, dtype=torch.float64)
        u = layer(x)[0]
        assert torch.equal(u[:, [0, 3]], x[:, [0, 3]])
        assert (u[:, [1, 2]] - x[:, [1, 2]]).abs().min() > 0


def test_affine_coupling_log_scale_is_bounded_by_scale():
    layer = randomize(coupling.AffineCoupling(2, hidden=8).double(), scale=5.0)
    x = 100 * torch.randn(200, 2, dtype=torch.float64)
    assert (layer(x)[1].abs() <= layer.scale[1].abs() + 1e-12).all()


def test_additive_coupling_is_volume_preserving():
    layer = randomize(coupling.AdditiveCoupling(3, hidden=8).double(), scale=1.0)
    x = torch.randn(4, 3, dtype=torch.float64)
    u, log_det = layer(x)
    assert torch.equal(log_det, torch.zeros(4, dtype=torch.float64))
    assert (u - x).abs().max() > 1e-2
    torch.testing.assert_close(autograd_log_det(layer, x), torch.zeros(4, dtype=torch.float64))


def test_made_jacobian_is_lower_triangular_and_uses_the_past():
    dim = 4
    layer = randomize(coupling.MaskedAutoregressive(dim, hidden=12).double(), scale=0.5)
    for x in torch.randn(3, dim, dtype=torch.float64):
        jac = jacobian(lambda v: layer(v[None])[0][0], x)
        assert torch.equal(jac.triu(1), torch.zeros(dim, dim, dtype=torch.float64))
        below = jac.tril(-1)[torch.tril_indices(dim, dim, -1).unbind()]
        assert (below.abs() > 1e-8).all()                            # every earlier coordinate is seen
        # the MADE outputs for coordinate i (shift and log-scale) do not see x_i itself
        out_jac = jacobian(lambda v: torch.cat(layer._shift_log_scale(v[None]), 1)[0], x)
        assert torch.equal(out_jac[:dim].triu(), torch.zeros(dim, dim, dtype=torch.float64))
        assert torch.equal(out_jac[dim:].triu(), torch.zeros(dim, dim, dtype=torch.float64))


def test_made_masks_are_autoregressive():
    m1, m2, m3 = coupling.made_masks(3, 6)
    connected = (m3.double() @ m2.double() @ m1.double()) > 0       # (2D, D): is there any path?
    expected = torch.tensor([[j < i for j in range(3)] for i in range(3)]).repeat(2, 1)
    assert torch.equal(connected, expected)


def _random_model(dim=2):
    layers = [coupling.AffineCoupling(dim, hidden=8), coupling.Permute(dim),
              coupling.MaskedAutoregressive(dim, hidden=8), coupling.Permute(dim),
              coupling.AffineCoupling(dim, hidden=8), coupling.Scaling(dim)]
    return randomize(coupling.FlowModel(layers, dim).double(), scale=0.4, seed=4)


def test_flow_model_density_integrates_to_one_on_a_grid():
    model = _random_model()
    points, area = potentials.grid(lim=10.0, n=500)
    with torch.no_grad():
        mass = (model.log_prob(points).exp() * area).sum().item()
    assert abs(mass - 1) < 1e-6
    # the model is not the base: the quadrature checks the layers' log-dets, not just the Gaussian
    base = torch.distributions.Normal(0.0, 1.0).log_prob(points).sum(1)
    assert (model.log_prob(points[:1000]) - base[:1000]).detach().abs().max() > 0.1


def test_sample_and_log_prob_agree_with_log_prob():
    model = _random_model()
    x, log_p = model.sample_and_log_prob(200, generator=torch.Generator().manual_seed(5))
    assert x.shape == (200, 2) and x.dtype == torch.float64
    torch.testing.assert_close(log_p, model.log_prob(x), atol=1e-10, rtol=1e-10)
    again = model.sample(200, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(again, x, atol=0, rtol=0)


def test_log_prob_is_differentiable():
    model = _random_model()
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    model.log_prob(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_maximum_likelihood_on_two_moons_beats_the_standard_normal():
    from sklearn.datasets import make_moons
    torch.manual_seed(0)
    data = torch.tensor(make_moons(1500, noise=0.05, random_state=0)[0], dtype=torch.float32)
    train, held_out = data[:1000], data[1000:]
    layers = []
    for k in range(4):
        layers += [coupling.AffineCoupling(2, mask=[k % 2, 1 - k % 2], hidden=32), coupling.MaskedAutoregressive(2, hidden=32)]
    model = coupling.FlowModel(layers, 2)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(300):
        loss = -model.log_prob(train).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        nll = -model.log_prob(held_out).mean().item()
    normal_nll = -torch.distributions.Normal(0.0, 1.0).log_prob(held_out).sum(1).mean().item()
    assert math.isfinite(nll) and nll < normal_nll - 1.0, (nll, normal_nll)


@pytest.mark.parametrize("make, message", [
    (lambda: coupling.AffineCoupling(1), "dim == 1, must be an int >= 2"),
    (lambda: coupling.AffineCoupling(3, mask=[1, 1, 1]), "must be 3 zeros and ones"),
    (lambda: coupling.AdditiveCoupling(3, mask=[1, 0]), "must be 3 zeros and ones"),
    (lambda: coupling.AffineCoupling(2, mask=[2, 0]), "must be 2 zeros and ones"),
    (lambda: coupling.AffineCoupling(2, hidden=0), "hidden == 0"),
    (lambda: coupling.MaskedAutoregressive(0), "dim == 0"),
    (lambda: coupling.Scaling(-1), "dim == -1"),
    (lambda: coupling.Permute(3, [0, 0, 1]), "must be a permutation of 0..2"),
    (lambda: coupling.FlowModel([], 2).sample(0), "n == 0"),
    (lambda: coupling.FlowModel([], 2).log_prob(torch.zeros(4, 3)), r"must be \(N, 2\)"),
    (lambda: coupling.AffineCoupling(2)(torch.zeros(3)), r"must be \(N, 2\)"),
    (lambda: coupling.MaskedAutoregressive(3).inverse(torch.zeros(2, 2)), r"must be \(N, 3\)"),
])
def test_bad_input_raises_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()
