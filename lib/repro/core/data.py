"""Data made in code or shipped inside packages: nothing here downloads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

SKLEARN_SETS = {"digits": skd.load_digits, "breast_cancer": skd.load_breast_cancer,
                "wine": skd.load_wine, "iris": skd.load_iris}
SYNTHETIC_2D = ("moons", "circles", "blobs")


@dataclass
class Split:
    """A train/test split as tensors, with the number of input features and classes."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def to(self, device) -> "Split":
        return Split(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)))


def _split(x, y, test_size, seed, standardize) -> Split:
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    if standardize:
        scaler = StandardScaler().fit(x_tr)
        x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)
    g = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)
    return Split(f(x_tr), g(y_tr), f(x_te), g(y_te))


def sklearn_dataset(name: str, test_size: float = 0.25, seed: int = 0, standardize: bool = True) -> Split:
    """One of scikit-learn's bundled classification sets, split and standardized on the train part."""
    if name not in SKLEARN_SETS:
        raise ValueError(f"unknown data set {name!r}; bundled ones: {', '.join(SKLEARN_SETS)}")
    x, y = SKLEARN_SETS[name](return_X_y=True)
    return _split(x, y, test_size, seed, standardize)


def classification_2d(name: str, n: int = 1000, noise: float = 0.1, test_size: float = 0.25,
                      seed: int = 0) -> Split:
    """A synthetic 2-D classification set: 'moons', 'circles' or 'blobs' (three classes)."""
    if name == "moons":
        x, y = skd.make_moons(n, noise=noise, random_state=seed)
    elif name == "circles":
        x, y = skd.make_circles(n, noise=noise, factor=0.5, random_state=seed)
    elif name == "blobs":
        x, y = skd.make_blobs(n, centers=3, cluster_std=1 + 10 * noise, random_state=seed)
    else:
        raise ValueError(f"unknown 2-D set {name!r}; valid: {', '.join(SYNTHETIC_2D)}")
    return _split(x, y, test_size, seed, standardize=True)


def mnist1d(n_samples: int = 5000, train_split: float = 0.8, seed: int = 42,
            standardize: bool = False) -> Split:
    """Greydanus's MNIST-1D (40-sample signals, 10 classes), generated locally by the `mnist1d`
    package rather than downloaded. Seed 42 with 5000 samples is the package's standard set.
    `standardize` scales each of the 40 positions to zero mean and unit variance on the train part."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=False)
    args.num_samples, args.train_split, args.seed = n_samples, train_split, seed
    data = make_dataset(args)
    if standardize:
        scaler = StandardScaler().fit(data["x"])
        data["x"], data["x_test"] = scaler.transform(data["x"]), scaler.transform(data["x_test"])
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)
    g = lambda a: torch.as_tensor(a, dtype=torch.long)
    return Split(f(data["x"]), g(data["y"]), f(data["x_test"]), g(data["y_test"]))
