"""Score augmentation (ScoreAug, Hou et al. 2025): augment the NOISY input of a diffusion model and
ask the denoiser, told which transform was applied, to predict the transformed target.

With x_t = alpha x_0 + sigma eps and a linear transform T, ScoreAug feeds T(x_t) to the network with
the label of T and regresses onto T(eps) (equivalently T(x_0) in the x_0-parametrization, since
T(x_t) - alpha T(x_0) = sigma T(eps)). Ordinary (conditioned) augmentation instead transforms the
clean data, x_t' = alpha T(x_0) + sigma eps, and regresses onto eps. For an orthogonal T (flips and
90-degree rotations) T(eps) ~ N(0, I), so the two coincide in law; for a non-orthogonal T (a shift
with zero fill) the noise of T(x_t) is T(eps), not fresh isotropic noise.

Transforms act on flattened square images (N, side * side). Labels: 0..7 are the dihedral group D4
(k % 4 quarter turns, then a transpose when k >= 4; 0 is the identity); 8..11 are one-pixel shifts
(right, left, down, up) with zero fill.

Score consistency: for an invertible linear T the law of y = T x_t has score
T^-T grad log p_t(T^-1 y) (change of variables); for orthogonal T this is T grad log p_t(T^T y),
which is also the score of the standard noised law of T x_0.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from ..core.models import MLP
from ..core.validation import check_int
from .denoisers import TimeFeatures
from .objectives import sample_times
from .processes import Process

N_DIHEDRAL = 8
SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (rows, columns) moved: right, left, down, up
N_LABELS = N_DIHEDRAL + len(SHIFTS)
NAMES = ("identity", "rot90", "rot180", "rot270", "transpose", "rot90+T", "rot180+T", "rot270+T",
         "shift right", "shift left", "shift down", "shift up")


def _side(x) -> int:
    if x.ndim != 2:
        raise ValueError(f"x has shape {tuple(x.shape)}, must be (N, side * side)")
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features per row, must be a square number")
    return side


def _check_label(label: int):
    if not isinstance(label, int) or not 0 <= label < N_LABELS:
        raise ValueError(f"label {label!r} must be an int in [0, {N_LABELS})")


def transform(x, label: int):
    """Apply transform `label` to every row of x (N, side * side)."""
    side = _side(x)
    _check_label(label)
    img = x.reshape(len(x), side, side)
    if label < N_DIHEDRAL:
        img = torch.rot90(img, label % 4, dims=(1, 2))
        if label >= 4:
            img = img.transpose(1, 2)
    else:
        dr, dc = SHIFTS[label - N_DIHEDRAL]
        img = torch.roll(img, shifts=(dr, dc), dims=(1, 2)).clone()
        if dr == 1:
            img[:, 0, :] = 0
        elif dr == -1:
            img[:, -1, :] = 0
        if dc == 1:
            img[:, :, 0] = 0
        elif dc == -1:
            img[:, :, -1] = 0
    return img.reshape(len(x), side * side)


@functools.lru_cache(maxsize=8)
def _index_maps(side: int, device):
    """Per label, the source pixel of every output pixel and a 0/1 mask for the zero fill."""
    pos = torch.arange(side * side, dtype=torch.float64).reshape(1, -1)
    ones = torch.ones(1, side * side, dtype=torch.float64)
    idx = torch.stack([transform(pos, k)[0] for k in range(N_LABELS)]).round().long()
    mask = torch.stack([transform(ones, k)[0] for k in range(N_LABELS)])
    return idx.to(device), mask.to(device)


def transform_rows(x, labels):
    """Apply transform labels[i] to row i of x (one gather: every transform moves pixels)."""
    side = _side(x)
    labels = torch.as_tensor(labels, device=x.device).reshape(-1).long()
    if len(labels) != len(x):
        raise ValueError(f"got {len(labels)} labels for {len(x)} rows")
    if len(labels) and (labels.min() < 0 or labels.max() >= N_LABELS):
        raise ValueError(f"labels must lie in [0, {N_LABELS})")
    idx, mask = _index_maps(side, x.device)
    return torch.gather(x, 1, idx[labels]) * mask[labels].to(x.dtype)


def transform_matrix(label: int, side: int, dtype=torch.float64):
    """The (side^2, side^2) matrix M of transform `label`: transform(x) = x @ M.T."""
    check_int("side", side)
    eye = torch.eye(side * side, dtype=dtype)
    return transform(eye, label).T


def random_labels(n: int, p_augment: float, labels=tuple(range(1, N_LABELS)), generator=None):
    """n labels: identity (0) with probability 1 - p_augment, else uniform among `labels`."""
    if not 0 <= p_augment <= 1:
        raise ValueError(f"p_augment == {p_augment}, must be in [0, 1]")
    labels = torch.as_tensor(list(labels))
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= N_LABELS:
        raise ValueError(f"labels must be a non-empty subset of 0..{N_LABELS - 1}")
    pick = labels[torch.randint(len(labels), (n,), generator=generator)]
    augment = torch.rand(n, generator=generator) < p_augment
    return torch.where(augment, pick, torch.zeros_like(pick))


class ConditionedMLPDenoiser(nn.Module):
    """eps_theta(x, t, label) for points in R^dim: an MLP on [x, Fourier time features, one-hot
    label of the augmentation]; label None means the identity (0)."""

    def __init__(self, dim: int, n_labels: int = N_LABELS, width: int = 256, depth: int = 3,
                 time_features: int = 16, activation: str = "gelu"):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.n_labels = check_int("n_labels", n_labels)
        self.time = TimeFeatures(time_features)
        self.net = MLP(dim + 2 * (time_features // 2) + n_labels, dim, width=width, depth=depth,
                       activation=activation)

    def forward(self, x, t, label=None):
        n = len(x)
        if label is None:
            label = torch.zeros(n, dtype=torch.long, device=x.device)
        label = torch.as_tensor(label, device=x.device).reshape(-1).expand(n)
        if label.min() < 0 or label.max() >= self.n_labels:
            raise ValueError(f"labels must lie in [0, {self.n_labels})")
        onehot = nn.functional.one_hot(label.long(), self.n_labels).to(x)
        return self.net(torch.cat([x, self.time(t, n).to(x), onehot], 1))


METHODS = ("baseline", "clean augmentation", "ScoreAug")


def augmented_loss(model, x0, process: Process, method: str, p_augment: float = 0.5,
                   t_min: float = 1e-3, generator=None):
    """Noise-prediction loss of one batch under `method`:
    'baseline': |eps_theta(x_t, t, 0) - eps|^2;
    'clean augmentation': x_t = alpha T(x_0) + sigma eps, |eps_theta(x_t, t, T) - eps|^2;
    'ScoreAug': |eps_theta(T(x_t), t, T) - T(eps)|^2 with x_t = alpha x_0 + sigma eps.
    T is drawn per row by `random_labels(p_augment)`; the mean over the batch of the squared error
    summed over coordinates."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} must be one of {METHODS}")
    n = len(x0)
    t = sample_times(n, t_min, process.t_max, generator, x0.dtype).to(x0.device)
    if method == "baseline":
        labels = torch.zeros(n, dtype=torch.long)
    else:
        labels = random_labels(n, p_augment, generator=generator)
    if method == "clean augmentation":
        x0 = transform_rows(x0, labels)
    xt, eps = process.perturb(x0, t, generator=generator)
    if method == "ScoreAug":
        xt, eps = transform_rows(xt, labels), transform_rows(eps, labels)
    pred = model(xt, t, labels.to(x0.device))
    return ((pred - eps) ** 2).flatten(1).sum(1).mean()


def denoising_loss(model, x0, process: Process, times, noise):
    """Per-sample noise-prediction error on the identity transform, averaged over the given times,
    with fixed noise (times (T,), noise (T, N, D)): the held-out loss of the paper's overfitting
    curves, with common random numbers so that models are compared on the same draws."""
    times = torch.as_tensor(times, dtype=x0.dtype).reshape(-1)
    if noise.shape != (len(times), *x0.shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, must be "
                         f"({len(times)}, {', '.join(map(str, x0.shape))})")
    total = torch.zeros(len(x0), dtype=x0.dtype, device=x0.device)
    with torch.no_grad():
        for t, eps in zip(times, noise):
            xt, _ = process.perturb(x0, t, noise=eps)
            total += ((model(xt, t) - eps) ** 2).sum(1)
    return total / len(times)


def transformed_score(score, matrix):
    """The score of y = M x for x with score `score` and M invertible: M^-T score(M^-1 y)."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix has shape {tuple(m.shape)}, must be square")
    inv = torch.linalg.inv(m)

    def f(y):
        return score(y @ inv.T) @ inv
    return f


def nearest_neighbour_ratio(samples, reference):
    """d1 / d2: distance of each sample to its nearest row of `reference` over the distance to
    the second nearest (small: a near copy of one training image)."""
    d = torch.cdist(samples.double(), reference.double())
    two = d.topk(2, dim=1, largest=False).values
    return two[:, 0] / two[:, 1]
