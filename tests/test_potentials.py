import math

import pytest
import torch

from repro.normalizing_flows import potentials


def test_log_normalizer_of_a_gaussian():
    # U = |z|^2 / 2 integrates to 2 pi
    assert potentials.log_normalizer(lambda z: 0.5 * (z ** 2).sum(1)) == pytest.approx(math.log(2 * math.pi), abs=1e-6)


def test_potentials():
    z = torch.randn(64, 2, dtype=torch.float64)
    for name in potentials.POTENTIALS:
        u = potentials.potential(name)(z)
        assert u.shape == (64,) and torch.isfinite(u).all()
    flipped = z * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(potentials.potential("U1")(z), potentials.potential("U1")(flipped))
    with pytest.raises(ValueError, match="potential == 'U5', must be one of 'U1', 'U2', 'U3', 'U4'"):
        potentials.potential("U5")


def test_confined_is_unchanged_inside_and_integrable():
    u2 = potentials.potential("U2")
    z = torch.tensor([[3.9, 0.5], [-1.0, 2.0]], dtype=torch.float64)
    assert torch.equal(potentials.confined(u2)(z), u2(z))
    far = torch.tensor([[6.0, 0.0]], dtype=torch.float64)
    assert potentials.confined(u2)(far) - u2(far) == pytest.approx(0.5 * (2 / 0.4) ** 2)
    wide = [potentials.log_normalizer(potentials.confined(u2), lim=lim, n=150 * lim) for lim in (8, 16)]
    assert wide[0] == pytest.approx(wide[1], abs=1e-6)


def test_grid_is_the_midpoint_rule():
    zz, area = potentials.grid(lim=2.0, n=4)
    assert area == pytest.approx(1.0)
    assert sorted(set(zz[:, 0].tolist())) == [-1.5, -0.5, 0.5, 1.5]          # cell centres, no endpoints
    assert zz[1].tolist() == [-0.5, -1.5] and zz[4].tolist() == [-1.5, -0.5]  # rows run along z2


@pytest.mark.parametrize("lim, n", [(2.0, 40), (1.0, 11)])
def test_log_normalizer_matches_the_closed_form_on_a_box(lim, n):
    # the integral of exp(-|z|^2 / 2) over [-lim, lim]^2 is (sqrt(2 pi) erf(lim / sqrt 2))^2; the midpoint
    # rule errs by at most (2 lim) h^2 max|f''| / 24 per axis, f'' = (x^2 - 1) exp(-x^2 / 2), |f''| <= 1;
    # counting the box's edges at full weight (the former grid) errs by about h f(lim) per axis: far more
    exact = 2 * math.log(math.sqrt(2 * math.pi) * math.erf(lim / math.sqrt(2)))
    h = 2 * lim / n
    one_axis = math.sqrt(2 * math.pi) * math.erf(lim / math.sqrt(2))
    bound = 2 * (2 * lim) * h ** 2 / 24 / one_axis                      # on log Z, to first order
    measured = potentials.log_normalizer(lambda z: 0.5 * (z ** 2).sum(1), lim=lim, n=n)
    assert abs(measured - exact) <= bound
    edges = 2 * h * math.exp(-lim ** 2 / 2) / one_axis
    assert bound < edges / 4


def test_mass_outside_a_window_of_a_gaussian():
    share = potentials.mass_outside(lambda z: 0.5 * (z ** 2).sum(1), window=1.0, lim=8.0, n=800)
    assert share == pytest.approx(math.erfc(1 / math.sqrt(2)), abs=1e-4)
    u2 = potentials.confined(potentials.potential("U2"))
    assert potentials.mass_outside(u2) == pytest.approx(1 / 9, abs=0.005)   # two half-walls of 0.4 sqrt(pi / 2) per 8 inside


def test_best_diagonal_gaussian_finds_a_gaussian_target_and_one_mode_of_u1():
    mu, sigma = torch.tensor([1.0, -0.5]), torch.tensor([0.5, 1.2])
    target = lambda z: 0.5 * (((z - mu.double()) / sigma.double()) ** 2).sum(1)  # noqa: E731
    found_mu, found_log_sigma, free, at_bound = potentials.best_diagonal_gaussian(target)
    torch.testing.assert_close(found_mu.float(), mu, atol=1e-4, rtol=0)
    torch.testing.assert_close(found_log_sigma.exp().float(), sigma, atol=1e-4, rtol=0)
    assert free == pytest.approx(-potentials.log_normalizer(target, lim=10.0, n=1000), abs=1e-4) and not at_bound
    u1 = potentials.confined(potentials.potential("U1"))
    found_mu, _, free, at_bound = potentials.best_diagonal_gaussian(u1)
    assert abs(found_mu[0].item()) > 1.5 and not at_bound              # on one mode, not the saddle z1 = 0
    assert free + potentials.log_normalizer(u1) > math.log(2)          # a one-mode fit pays at least log 2
