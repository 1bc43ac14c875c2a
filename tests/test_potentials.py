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
