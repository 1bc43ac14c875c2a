import math

import pytest
import torch

from repro import data, densities


@pytest.mark.parametrize("name, features, classes", [("digits", 64, 10), ("iris", 4, 3),
                                                     ("wine", 13, 3), ("breast_cancer", 30, 2)])
def test_sklearn_sets(name, features, classes):
    split = data.sklearn_dataset(name, seed=1)
    assert split.n_features == features and split.n_classes == classes
    assert abs(split.x_train.mean().item()) < 1e-5  # standardized on the train part
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.long


def test_unknown_sets():
    with pytest.raises(ValueError, match="bundled ones: digits"):
        data.sklearn_dataset("mnist")
    with pytest.raises(ValueError, match="valid: moons, circles, blobs"):
        data.classification_2d("spirals")


def test_classification_2d_and_mnist1d():
    split = data.classification_2d("moons", n=200, seed=0)
    assert split.n_features == 2 and len(split.x_train) == 150
    m = data.mnist1d(n_samples=500, seed=3)
    assert m.x_train.shape == (400, 40) and m.n_classes == 10
    assert torch.equal(m.x_test, data.mnist1d(n_samples=500, seed=3).x_test)
    s = data.mnist1d(n_samples=500, seed=3, standardize=True)
    assert s.x_train.mean(0).abs().max() < 1e-5 and (s.x_train.std(0, correction=0) - 1).abs().max() < 1e-4


def test_log_normalizer_of_a_gaussian():
    # U = |z|^2 / 2 integrates to 2 pi
    assert densities.log_normalizer(lambda z: 0.5 * (z ** 2).sum(1)) == pytest.approx(math.log(2 * math.pi), abs=1e-6)


def test_potentials():
    z = torch.randn(64, 2, dtype=torch.float64)
    for name in densities.POTENTIALS:
        u = densities.potential(name)(z)
        assert u.shape == (64,) and torch.isfinite(u).all()
    flipped = z * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(densities.potential("U1")(z), densities.potential("U1")(flipped))
    with pytest.raises(ValueError, match="valid: U1, U2, U3, U4"):
        densities.potential("U5")


def test_confined_is_unchanged_inside_and_integrable():
    u2 = densities.potential("U2")
    z = torch.tensor([[3.9, 0.5], [-1.0, 2.0]], dtype=torch.float64)
    assert torch.equal(densities.confined(u2)(z), u2(z))
    far = torch.tensor([[6.0, 0.0]], dtype=torch.float64)
    assert densities.confined(u2)(far) - u2(far) == pytest.approx(0.5 * (2 / 0.4) ** 2)
    wide = [densities.log_normalizer(densities.confined(u2), lim=lim, n=150 * lim) for lim in (8, 16)]
    assert wide[0] == pytest.approx(wide[1], abs=1e-6)
