import pytest
import torch

from repro.core import data


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
