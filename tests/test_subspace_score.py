import pytest
import torch

from repro.generative_diffusion import subspace_score as ss
from repro.generative_diffusion.mixtures import GaussianMixture
from repro.generative_diffusion.processes import VariancePreserving

pytestmark = pytest.mark.usefixtures("float64")


def latent_mixture():
    return GaussianMixture([[1.0, 1.0], [-1.0, 0.5], [0.0, -1.2]], scales=[0.3, 0.4, 0.25],
                           weights=[1.0, 2.0, 1.5])


def test_random_basis_is_orthonormal():
    a = ss.random_basis(12, 3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (12, 3)
    assert torch.allclose(a.T @ a, torch.eye(3, dtype=a.dtype), atol=1e-12)


def test_score_decomposes_into_latent_and_orthogonal_parts():
    # grad log p_t(x) = A grad log p_t^z(A^T x) - (I - A A^T) x / sigma^2 for x0 = A z
    a = ss.random_basis(7, 2, generator=torch.Generator().manual_seed(1))
    lat = latent_mixture()
    alpha, sigma = 0.8, 0.3
    x = torch.randn(40, 7)
    exact = lat.embedded(a).noised(alpha, sigma).score(x)
    parts = lat.noised(alpha, sigma).score(x @ a) @ a.T + ss.orthogonal_score(x, a, sigma)
    assert torch.allclose(exact, parts, atol=1e-8)
    # the orthogonal part of the exact score is exactly orthogonal_score
    proj = torch.eye(7, dtype=x.dtype) - a @ a.T
    assert torch.allclose(exact @ proj, ss.orthogonal_score(x, a, sigma), atol=1e-8)


def test_subspace_denoiser_with_true_basis_and_latent_score_is_exact():
    process = VariancePreserving()
    a = ss.random_basis(6, 2, generator=torch.Generator().manual_seed(2))
    lat = latent_mixture()
    net = ss.SubspaceDenoiser(6, 2, process).double()
    net.raw_basis.data = a.clone()
    t = torch.tensor(0.3)
    alpha, sigma = float(process.alpha(t)), float(process.sigma(t))
    # f(z, t) = z + sigma^2 grad log p_t^z(z) makes s = (V f - x) / sigma^2 the exact score
    net.latent = lambda z, t: z + sigma ** 2 * lat.noised(alpha, sigma).score(z)
    x = torch.randn(25, 6)
    exact = lat.embedded(a).noised(alpha, sigma).score(x)
    assert torch.allclose(net.basis, a, atol=1e-12)
    assert torch.allclose(-net(x, t) / sigma, exact, atol=1e-8)


def test_subspace_denoiser_shapes_and_per_row_times():
    net = ss.SubspaceDenoiser(5, 2, VariancePreserving()).double()
    x, t = torch.randn(8, 5), torch.rand(8) * 0.9 + 0.05
    assert net(x, t).shape == (8, 5)
    v = net.basis
    assert torch.allclose(v.T @ v, torch.eye(2, dtype=v.dtype), atol=1e-12)
    with pytest.raises(ValueError, match="must be \\(N, 5\\)"):
        net(torch.randn(8, 4), t)


def test_subspace_distance_and_random_expectation():
    a = ss.random_basis(10, 2, generator=torch.Generator().manual_seed(3))
    assert ss.subspace_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    rotated = a @ torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=a.dtype)   # same span
    assert ss.subspace_distance(rotated, a) == pytest.approx(0.0, abs=1e-12)
    gen = torch.Generator().manual_seed(4)
    d2 = [ss.subspace_distance(ss.random_basis(10, 2, generator=gen), a) ** 2 for _ in range(4000)]
    assert sum(d2) / len(d2) == pytest.approx(ss.random_subspace_distance2(10, 2), rel=0.02)


def test_off_subspace_variance_of_noised_subspace_data():
    a = ss.random_basis(9, 2, generator=torch.Generator().manual_seed(5))
    x = latent_mixture().embedded(a).noised(1.0, 0.2).sample(200_000, torch.Generator().manual_seed(6))
    assert ss.off_subspace_variance(x, a) == pytest.approx(0.04, rel=0.01)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="latent_dim"):
        ss.random_basis(2, 3)
    with pytest.raises(ValueError, match="latent_dim"):
        ss.SubspaceDenoiser(2, 3, VariancePreserving())
    with pytest.raises(ValueError, match="same shape"):
        ss.subspace_distance(torch.eye(4)[:, :2], torch.eye(5)[:, :2])
    with pytest.raises(ValueError, match="must have 4"):
        ss.orthogonal_score(torch.randn(3, 4), torch.eye(5)[:, :2], 0.5)
    with pytest.raises(ValueError, match="whole space"):
        ss.off_subspace_variance(torch.randn(3, 2), torch.eye(2))


def test_orthogonal_score_keeps_float64_when_the_default_dtype_is_float32():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        a = ss.random_basis(5, 2, generator=torch.Generator().manual_seed(7))
        x = torch.randn(10, 5, dtype=torch.float64)
        sigma = 0.0773
        expected = -(x - x @ a @ a.T) / sigma ** 2
        assert torch.allclose(ss.orthogonal_score(x, a, sigma), expected, rtol=1e-14, atol=0)
    finally:
        torch.set_default_dtype(before)
