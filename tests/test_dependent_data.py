"""The dependent-data likelihood: it is the i.i.d. one when Sigma = I, and it is the multivariate
normal density of vec(U) (with covariance I_D kron Sigma) on small cases. It adds no flow layer,
so there is no invertibility or log-det check beyond those of coupling.py."""
import math

import pytest
import torch

from repro.normalizing_flows import coupling, dependent_data as dd
from layer_checks import randomize


def _flow(dim=2, seed=0):
    flow = coupling.FlowModel([coupling.AffineCoupling(dim, hidden=8), coupling.Permute(dim),
                               coupling.AffineCoupling(dim, hidden=8)], dim).double()
    return randomize(flow, scale=0.5, seed=seed)


def _direct(u, sigma):
    """log N(vec(U); 0, I_D kron Sigma), column by column."""
    mvn = torch.distributions.MultivariateNormal(torch.zeros(sigma.shape[0], dtype=sigma.dtype),
                                                 covariance_matrix=sigma)
    return sum(mvn.log_prob(u[:, j]) for j in range(u.shape[1]))


COVARIANCES = [
    lambda: dd.EquicorrelatedBlocks([3, 1, 4], rho=0.7),
    lambda: dd.EquicorrelatedBlocks([2, 5], rho=-0.2),
    lambda: dd.DenseCovariance(dd.ar1_correlation(8, 0.6)),
    lambda: dd.DenseCovariance(dd.EquicorrelatedBlocks([4, 4], rho=0.9).matrix()),
]


@pytest.mark.parametrize("make", COVARIANCES)
def test_matches_direct_multivariate_normal(make):
    cov = make()
    u = torch.randn(cov.n, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direct = _direct(u, cov.matrix())
    assert float(dd.matrix_normal_log_prob(u, cov)) == pytest.approx(float(direct), rel=1e-10)
    assert cov.log_det() == pytest.approx(float(torch.logdet(cov.matrix())), abs=1e-10)


@pytest.mark.parametrize("make", COVARIANCES)
def test_quadratic_gradient_is_precision_times_u(make):
    cov = make()
    u = torch.randn(cov.n, 2, dtype=torch.float64, requires_grad=True)
    cov.quadratic(u).backward()
    expected = 2 * torch.linalg.solve(cov.matrix(), u.detach())
    assert torch.allclose(u.grad, expected, atol=1e-10)


def test_identity_covariance_gives_iid_likelihood():
    flow = _flow()
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    iid = flow.log_prob(x).mean()
    for cov in (dd.EquicorrelatedBlocks([1] * 7, rho=0.5), dd.EquicorrelatedBlocks([7], rho=0.0),
                dd.DenseCovariance(torch.eye(7))):
        got = float(dd.dependent_log_likelihood(flow, x, cov).detach())
        assert got == pytest.approx(float(iid.detach()), rel=1e-12)


def test_dependent_likelihood_is_direct_density_of_latents_plus_log_det():
    flow = _flow(seed=3)
    cov = dd.EquicorrelatedBlocks([2, 3], rho=0.8)
    x = torch.randn(cov.n, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    u, log_det = dd.latent_and_log_det(flow, x)
    assert torch.allclose(flow.base_log_prob(u) + log_det, flow.log_prob(x), atol=1e-12)
    expected = (_direct(u, cov.matrix()) + log_det.sum()) / cov.n
    assert float(dd.dependent_log_likelihood(flow, x, cov)) == pytest.approx(float(expected),
                                                                             rel=1e-10)


@pytest.mark.parametrize("make", [lambda: dd.EquicorrelatedBlocks([5, 5, 10], rho=0.6),
                                  lambda: dd.DenseCovariance(dd.ar1_correlation(20, 0.7))])
def test_samples_have_the_covariance(make):
    cov = make()
    gen = torch.Generator().manual_seed(5)
    u = cov.sample(20000, generator=gen, dtype=torch.float64)                 # (n, many)
    empirical = u @ u.T / u.shape[1]
    assert torch.allclose(empirical, cov.matrix(), atol=0.05)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="rho"):
        dd.EquicorrelatedBlocks([3, 2], rho=1.0)
    with pytest.raises(ValueError, match="rho"):
        dd.EquicorrelatedBlocks([3], rho=-0.6)
    with pytest.raises(ValueError, match="cluster size"):
        dd.EquicorrelatedBlocks([3, 0], rho=0.5)
    with pytest.raises(ValueError, match="positive definite"):
        dd.DenseCovariance(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        dd.DenseCovariance(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="phi"):
        dd.ar1_correlation(5, 1.0)
    cov = dd.EquicorrelatedBlocks([2, 2], rho=0.3)
    with pytest.raises(ValueError, match="4, D"):
        cov.quadratic(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="rows"):
        dd.dependent_log_likelihood(_flow(), torch.zeros(5, 2, dtype=torch.float64), cov)
    assert math.isfinite(cov.log_det())


@pytest.mark.parametrize("make", COVARIANCES)
def test_leading_copy_dimensions(make):
    cov = make()
    u = torch.randn(3, cov.n, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    batched = dd.matrix_normal_log_prob(u, cov)
    assert batched.shape == (3,)
    assert torch.allclose(batched, torch.stack([dd.matrix_normal_log_prob(ui, cov) for ui in u]))


def test_stacked_copies_match_single_flows():
    from repro.core import stacked
    cov = dd.EquicorrelatedBlocks([3, 3], rho=0.5)
    ens = stacked.Ensemble.from_seeds(lambda: dd.FlowLatent(_flow()), [0, 1]).double()
    x = torch.randn(2, cov.n, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    batched = dd.mean_log_likelihood(*ens(x), cov)
    single = [dd.dependent_log_likelihood(m.flow, xi, cov) for m, xi in zip(ens.members(), x)]
    assert torch.allclose(batched, torch.stack(single).detach(), atol=1e-12)
