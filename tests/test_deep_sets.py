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


@pytest.mark.parametrize("cell", sorted(deep_sets.CELLS))
def test_setrnn_shape_and_order_dependence(cell):
    torch.manual_seed(0)
    model = deep_sets.SetRNN(3, 1, hidden=8, cell=cell).double()
    x = torch.randn(16, 6, 3, dtype=torch.float64)
    assert model(x).shape == (16, 1)
    assert deep_sets.permutation_gap(model, x, n_perms=5, generator=torch.Generator().manual_seed(0)) > 1e-6


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
    with pytest.raises(ValueError, match="cell"):
        deep_sets.SetRNN(3, 1, cell="rnn")
    with pytest.raises(ValueError, match="expected"):
        _deepsets()(torch.randn(4, 3))
    with pytest.raises(ValueError, match="expected"):
        deep_sets.SetRNN(3, 1)(torch.randn(4, 3))
    with pytest.raises(ValueError, match="expected"):
        deep_sets.permutation_gap(_deepsets(), torch.randn(4, 3))
    with pytest.raises(ValueError, match="must be an int >= 1"):
        deep_sets.sum_of_digits(0, 3)
