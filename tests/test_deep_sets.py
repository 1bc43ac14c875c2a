import itertools

import pytest
import torch
from torch import nn

from repro.representation_learning import deep_sets


def _deepsets(pool="sum"):
    torch.manual_seed(0)
    phi = nn.Sequential(nn.Linear(3, 8), nn.Tanh())
    return deep_sets.DeepSets(phi, nn.Linear(8, 2), pool=pool)


@pytest.mark.parametrize("pool", deep_sets.POOLS)
def test_deepsets_is_permutation_invariant(pool):
    model = _deepsets(pool).double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    gap = deep_sets.permutation_gap(model, x, n_perms=10, generator=torch.Generator().manual_seed(0))
    assert gap < 1e-12
    assert model(x).shape == (5, 2)


def test_deepsets_sum_matches_reference():
    model = _deepsets("sum")
    x = torch.randn(4, 6, 3)
    reference = model.rho(torch.stack([sum(model.phi(xi) for xi in s) for s in x]))
    torch.testing.assert_close(model(x), reference)


@pytest.mark.parametrize("pool, reference", [("sum", lambda x: x.sum(1)), ("mean", lambda x: x.mean(1)),
                                             ("max", lambda x: x.max(1).values)])
def test_deepsets_with_identity_phi_pools_the_elements(pool, reference):
    model = deep_sets.DeepSets(nn.Identity(), nn.Identity(), pool=pool)
    x = torch.randn(2, 3, 2)
    torch.testing.assert_close(model(x), reference(x))


@pytest.mark.parametrize("pool", deep_sets.POOLS)
def test_deepsets_prefixes_are_the_outputs_on_truncated_sets(pool):
    model = _deepsets(pool).double()
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    prefixes = model.prefixes(x)
    assert prefixes.shape == (4, 6, 2)
    for t in range(1, 7):
        torch.testing.assert_close(prefixes[:, t - 1], model(x[:, :t]))


@pytest.mark.parametrize("cell", sorted(deep_sets.CELLS))
def test_setrnn_prefixes_are_the_outputs_on_truncated_sequences(cell):
    torch.manual_seed(0)
    model = deep_sets.SetRNN(3, 1, hidden=8, cell=cell).double()
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    prefixes = model.prefixes(x)
    for t in range(1, 6):
        torch.testing.assert_close(prefixes[:, t - 1], model(x[:, :t]))


@pytest.mark.parametrize("cell", sorted(deep_sets.CELLS))
def test_setrnn_shape_and_order_dependence(cell):
    torch.manual_seed(0)
    model = deep_sets.SetRNN(3, 1, hidden=8, cell=cell).double()
    x = torch.randn(16, 6, 3, dtype=torch.float64)
    assert model(x).shape == (16, 1)
    assert deep_sets.permutation_gap(model, x, n_perms=5, generator=torch.Generator().manual_seed(0)) > 1e-6


@pytest.mark.parametrize("pool", deep_sets.POOLS)
def test_perm_equivariant_layer_is_equivariant(pool):
    torch.manual_seed(0)
    layer = deep_sets.PermEquivariant(3, 4, pool=pool).double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    assert layer(x).shape == (5, 7, 4)
    assert deep_sets.equivariance_gap(layer, x, n_perms=10, generator=torch.Generator().manual_seed(0)) < 1e-12
    # a plain dense layer on the concatenated elements is not equivariant
    dense = nn.Sequential(nn.Flatten(), nn.Linear(21, 28), nn.Unflatten(1, (7, 4))).double()
    assert deep_sets.equivariance_gap(dense, x, n_perms=3, generator=torch.Generator().manual_seed(0)) > 1e-3


def test_perm_equivariant_sum_layer_is_lemma3_matrix():
    # one feature in and out: x -> gamma (I - 1 1^T) x + beta, a map of Lemma 3's form
    torch.manual_seed(0)
    layer = deep_sets.PermEquivariant(1, 1, pool="sum").double()
    x = torch.randn(3, 5, 1, dtype=torch.float64)
    gamma, beta = layer.gamma.weight.item(), layer.gamma.bias.item()
    theta = gamma * (torch.eye(5, dtype=torch.float64) - torch.ones(5, 5, dtype=torch.float64))
    torch.testing.assert_close(layer(x)[..., 0], x[..., 0] @ theta.T + beta)


def test_normalize_set():
    x = torch.randn(4, 50, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64) + 3.0
    y = deep_sets.NormalizeSet()(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(4, 3, dtype=torch.float64))
    torch.testing.assert_close(y.pow(2).mean((1, 2)), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(deep_sets.NormalizeSet()(2.5 * x - 7.0), y)  # translation and scale removed


@pytest.mark.parametrize("equivariant", [True, False])
def test_point_cloud_classifier(equivariant):
    torch.manual_seed(0)
    model = deep_sets.point_cloud_classifier(5, width=16, equivariant=equivariant).double().eval()
    x = torch.randn(6, 30, 3, dtype=torch.float64)
    assert model(x).shape == (6, 5)
    assert deep_sets.permutation_gap(model, x, n_perms=5, generator=torch.Generator().manual_seed(0)) < 1e-12
    layers = [m for m in model.phi if isinstance(m, deep_sets.PermEquivariant)]
    assert len(layers) == (3 if equivariant else 0)
    assert sum(isinstance(m, nn.Dropout) for m in model.rho) == 2


@pytest.mark.parametrize("m", range(2, 7))
def test_equivariant_linear_maps_are_lemma3(m):
    basis = deep_sets.equivariant_linear_maps(m)
    assert basis.shape == (2, m, m)
    flat = basis.reshape(2, -1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(2, dtype=torch.float64))  # orthonormal
    for target in (torch.eye(m, dtype=torch.float64), torch.ones(m, m, dtype=torch.float64)):
        projection = (flat @ target.reshape(-1)) @ flat
        torch.testing.assert_close(projection, target.reshape(-1))  # I and 1 1^T lie in the space


def test_equivariant_linear_maps_commute_with_every_permutation():
    m = 4
    basis = deep_sets.equivariant_linear_maps(m)
    for order in itertools.permutations(range(m)):
        p = torch.eye(m, dtype=torch.float64)[list(order)]
        for theta in basis:
            torch.testing.assert_close(p @ theta, theta @ p)
    assert deep_sets.equivariant_linear_maps(1).shape == (1, 1, 1)


def test_sum_of_digits():
    gen = torch.Generator().manual_seed(0)
    digits, total = deep_sets.sum_of_digits(100, 7, generator=gen)
    assert digits.shape == (100, 7) and total.shape == (100,)
    assert digits.unique().tolist() == list(range(10))  # every digit 0..9, and nothing else
    assert torch.equal(total, digits.sum(1))
    again, _ = deep_sets.sum_of_digits(100, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(digits, again)


def test_errors():
    with pytest.raises(ValueError, match="pool"):
        deep_sets.DeepSets(nn.Identity(), nn.Identity(), pool="median")
    with pytest.raises(ValueError, match="pool"):
        deep_sets.PermEquivariant(3, 3, pool="median")
    with pytest.raises(ValueError, match="cell"):
        deep_sets.SetRNN(3, 1, cell="rnn")
    with pytest.raises(ValueError, match="expected"):
        _deepsets()(torch.randn(4, 3))
    with pytest.raises(ValueError, match="expected"):
        deep_sets.SetRNN(3, 1)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="expected"):
        deep_sets.permutation_gap(_deepsets(), torch.randn(4, 3))
    with pytest.raises(ValueError, match="expected"):
        deep_sets.PermEquivariant(3, 3)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="must be an int >= 1"):
        deep_sets.sum_of_digits(0, 3)
    with pytest.raises(ValueError, match="n_classes"):
        deep_sets.point_cloud_classifier(1)
