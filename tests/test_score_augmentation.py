import numpy as np
import pytest
import torch

from repro.generative_diffusion import mixtures, processes
from repro.generative_diffusion import score_augmentation as sa


def test_dihedral_transforms_match_numpy_and_are_orthogonal():
    img = np.arange(16.0).reshape(4, 4)
    x = torch.tensor(img.reshape(1, -1))
    for k in range(8):
        ref = np.rot90(img, k % 4)
        if k >= 4:
            ref = ref.T
        assert np.array_equal(sa.transform(x, k)[0].numpy(), ref.reshape(-1))
        m = sa.transform_matrix(k, 4)
        assert torch.allclose(m @ m.T, torch.eye(16, dtype=torch.float64))
    assert torch.equal(sa.transform(x, 0), x)


def test_shifts_move_pixels_and_fill_zeros():
    img = np.arange(1.0, 10.0).reshape(3, 3)
    x = torch.tensor(img.reshape(1, -1))
    right = sa.transform(x, 8)[0].reshape(3, 3).numpy()
    assert np.array_equal(right, np.array([[0, 1, 2], [0, 4, 5], [0, 7, 8.0]]))
    up = sa.transform(x, 11)[0].reshape(3, 3).numpy()
    assert np.array_equal(up, np.array([[4, 5, 6], [7, 8, 9], [0, 0, 0.0]]))
    m = sa.transform_matrix(8, 3)
    assert not torch.allclose(m @ m.T, torch.eye(9, dtype=torch.float64))


def test_transform_rows_matches_one_transform_per_row_and_matrices():
    x = torch.randn(40, 25, dtype=torch.float64)
    labels = torch.arange(40) % sa.N_LABELS
    out = sa.transform_rows(x, labels)
    for i in range(40):
        k = int(labels[i])
        assert torch.equal(out[i], sa.transform(x[i:i + 1], k)[0])
        assert torch.allclose(out[i], sa.transform_matrix(k, 5) @ x[i])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="square number"):
        sa.transform(torch.zeros(2, 10), 0)
    with pytest.raises(ValueError, match="must be an int in"):
        sa.transform(torch.zeros(2, 9), 12)
    with pytest.raises(ValueError, match="labels"):
        sa.transform_rows(torch.zeros(3, 9), [0, 1])
    with pytest.raises(ValueError, match="p_augment"):
        sa.random_labels(5, 1.5)
    with pytest.raises(ValueError, match="method"):
        sa.augmented_loss(None, torch.zeros(2, 4), processes.VariancePreserving(), "mixup")
    with pytest.raises(ValueError, match="noise has shape"):
        sa.denoising_loss(None, torch.zeros(2, 4), processes.VariancePreserving(), [0.5],
                          torch.zeros(2, 2, 4))


def test_random_labels_probability():
    g = torch.Generator().manual_seed(0)
    labels = sa.random_labels(20000, 0.5, generator=g)
    assert abs(float((labels == 0).float().mean()) - 0.5) < 0.02
    assert set(labels.tolist()) == set(range(sa.N_LABELS))
    assert (sa.random_labels(100, 0.0, generator=g) == 0).all()


class _Oracle(torch.nn.Module):
    """Returns the noise it is told about (to check which target each loss regresses on)."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x, t, label=None):
        self.seen = (x, t, label)
        return torch.zeros_like(x)


def test_scoreaug_loss_uses_transformed_noisy_input_and_target():
    proc = processes.VariancePreserving()
    x0 = torch.randn(64, 16, dtype=torch.float64)
    model = _Oracle()
    loss = sa.augmented_loss(model, x0, proc, "ScoreAug", p_augment=1.0,
                             generator=torch.Generator().manual_seed(3))
    # replay the same draws by hand
    g = torch.Generator().manual_seed(3)
    t = 1e-3 + (proc.t_max - 1e-3) * torch.rand(64, generator=g, dtype=torch.float64)
    labels = sa.random_labels(64, 1.0, generator=g)
    xt, eps = proc.perturb(x0, t, generator=g)
    assert torch.allclose(model.seen[0], sa.transform_rows(xt, labels))
    assert torch.equal(model.seen[2], labels)
    target = sa.transform_rows(eps, labels)
    assert float(loss) == pytest.approx(float((target ** 2).sum(1).mean()))
    # the target is T(x_t) - alpha T(x_0) over sigma: the transformed clean target
    a, s = proc.alpha(t)[:, None], proc.sigma(t)[:, None]
    assert torch.allclose((model.seen[0] - a * sa.transform_rows(x0, labels)) / s, target)


def test_denoiser_shapes_and_label_conditioning():
    net = sa.ConditionedMLPDenoiser(16, width=8, depth=2)
    x = torch.randn(5, 16)
    out0 = net(x, 0.3)
    assert out0.shape == (5, 16)
    assert torch.allclose(out0, net(x, 0.3, torch.zeros(5, dtype=torch.long)))
    assert not torch.allclose(out0, net(x, 0.3, torch.full((5,), 3)))
    with pytest.raises(ValueError, match="labels must lie"):
        net(x, 0.3, torch.full((5,), 12))


def test_transformed_score_is_the_score_of_the_transformed_law():
    g = torch.Generator().manual_seed(0)
    mix = mixtures.GaussianMixture(torch.randn(3, 9, generator=g, dtype=torch.float64),
                                   scales=[0.3, 0.5, 0.7])
    noised = mix.noised(0.6, 0.8)
    y = torch.randn(20, 9, generator=g, dtype=torch.float64)
    for m in (sa.transform_matrix(5, 3), torch.eye(9, dtype=torch.float64)
              + 0.3 * torch.randn(9, 9, generator=g, dtype=torch.float64)):
        want = noised.embedded(m).score(y)
        assert torch.allclose(sa.transformed_score(noised.score, m)(y), want, atol=1e-10)


def test_nearest_neighbour_ratio():
    ref = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    r = sa.nearest_neighbour_ratio(torch.tensor([[1.0, 0.0], [5.0, 0.0]]), ref)
    assert torch.allclose(r, torch.tensor([1 / 9, 1.0], dtype=torch.float64))
