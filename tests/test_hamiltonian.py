import numpy as np
import pytest
import torch

from repro.optimization.hamiltonian import heavy_ball_trajectory

CURVATURES, START = [0.01, 1.0], [1.0, 1.0]


def test_heavy_ball_matches_its_recursion():
    lr, mu, lam = 0.01, 0.9, np.array(CURVATURES)
    run = heavy_ball_trajectory(CURVATURES, START, lr=lr, momentum=mu, steps=20)
    x, m = np.array(START), np.zeros(2)
    for t in range(20):
        f, h = 0.5 * (lam * x ** 2).sum(), 0.5 * (lam * x ** 2).sum() + 0.5 * lr * (m ** 2).sum()
        assert run.loss[t] == pytest.approx(f, rel=1e-12)
        assert run.hamiltonian[t] == pytest.approx(h, rel=1e-12)
        g = lam * x
        m = mu * m + g
        assert run.descent[t] == pytest.approx(g @ (lr * m), rel=1e-12)
        x = x - lr * m
    assert run.loss.iloc[-1] == pytest.approx(0.5 * (lam * x ** 2).sum(), rel=1e-12)
    assert len(run) == 21 and np.isnan(run.descent.iloc[-1])


def test_plain_momentum_overshoots_and_cautious_does_not():
    kw = dict(lr=0.0025, momentum=0.95, steps=600)  # damping 1, underdamped
    plain = heavy_ball_trajectory(CURVATURES, START, **kw)
    cautious = heavy_ball_trajectory(CURVATURES, START, cautious=True, **kw)
    assert (np.diff(plain.loss) > 0).any()          # the loss of heavy ball oscillates
    assert not (np.diff(cautious.loss) > 0).any()
    assert (cautious.descent.dropna() >= 0).all()
    for run in (plain, cautious):                   # both decrease the energy
        assert not (np.diff(run.hamiltonian) > 0).any()


def test_cautious_equals_heavy_ball_while_every_coordinate_agrees():
    # in one dimension from rest the momentum and the gradient agree until the first overshoot
    kw = dict(lr=0.001, momentum=0.5, steps=5)
    plain = heavy_ball_trajectory([1.0], [1.0], **kw)
    cautious = heavy_ball_trajectory([1.0], [1.0], cautious=True, **kw)
    np.testing.assert_allclose(cautious.loss, plain.loss, rtol=1e-6)


@pytest.mark.parametrize("kw, match", [
    (dict(lr=-1.0, momentum=0.9, steps=3), "lr"), (dict(lr=0.1, momentum=1.0, steps=3), "momentum"),
    (dict(lr=0.1, momentum=0.9, steps=0), "steps")])
def test_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        heavy_ball_trajectory(CURVATURES, START, **kw)


def test_curvatures_must_match_start():
    with pytest.raises(ValueError, match="curvatures"):
        heavy_ball_trajectory([1.0, 2.0, 3.0], START, lr=0.1, momentum=0.9, steps=2)
    with pytest.raises(ValueError, match="curvatures"):
        heavy_ball_trajectory(torch.tensor([0.0, 1.0]), START, lr=0.1, momentum=0.9, steps=2)
