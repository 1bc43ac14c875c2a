import math

import pytest
import torch

from repro.normalizing_flows import splines
from layer_checks import autograd_log_det, randomize

TWO_PI = 2 * math.pi


def _spline_params(k=5, seed=0, shape=()):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape + (n,), generator=gen, dtype=torch.float64) for n in (k, k, k - 1)]


LAYERS = [  # (layer, sampler of valid inputs)
    (lambda: splines.RationalQuadraticSpline(3, bins=6, bound=2.0), lambda g, n: 3 * torch.randn(n, 3, generator=g)),
    (lambda: splines.SmoothRampMixture(2, components=3), lambda g, n: torch.rand(n, 2, generator=g)),
    (lambda: splines.MobiusCircle(4, components=3), lambda g, n: TWO_PI * torch.rand(n, 4, generator=g)),
    (lambda: splines.CircularSpline(2, bins=5), lambda g, n: TWO_PI * torch.rand(n, 2, generator=g)),
]


@pytest.mark.parametrize("make, sample", LAYERS)
def test_layer_inverts_and_log_det_matches_jacobian(make, sample):
    layer = randomize(make().double())
    x = sample(torch.Generator().manual_seed(1), 16).double()
    y, log_det = layer(x)
    x_back, log_det_inv = layer.inverse(y)
    assert log_det.shape == (16,)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det_inv, -log_det, atol=1e-9, rtol=0)
    torch.testing.assert_close(log_det[:4], autograd_log_det(layer, x[:4]), atol=1e-9, rtol=0)


@pytest.mark.parametrize("make, sample", LAYERS)
def test_layer_starts_at_identity(make, sample):
    layer = make().double()
    x = sample(torch.Generator().manual_seed(2), 8).double()
    y, log_det = layer(x)
    if isinstance(layer, splines.SmoothRampMixture):   # not the identity: a smooth S-curve
        assert (y - x).abs().max() > 1e-3
    else:
        # to float32 rounding: the spline's unit-slope start is stored before .double()
        torch.testing.assert_close(y, x, atol=1e-8, rtol=0)
        torch.testing.assert_close(log_det, torch.zeros(8, dtype=torch.float64), atol=1e-7, rtol=0)


@pytest.mark.parametrize("make", [lambda: splines.RationalQuadraticSpline(2), lambda: splines.SmoothRampMixture(2),
                                  lambda: splines.MobiusCircle(2), lambda: splines.CircularSpline(2)])
def test_layer_rejects_wrong_shape(make):
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        make()(torch.zeros(5, 3))


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="bins == 0, must be an int >= 1"):
        splines.RationalQuadraticSpline(2, bins=0)
    with pytest.raises(ValueError, match="components == -1"):
        splines.SmoothRampMixture(2, components=-1)
    with pytest.raises(ValueError, match="dim == 0"):
        splines.MobiusCircle(0)


# --- rational-quadratic spline ---

def test_spline_inverse_and_derivative_vs_autograd():
    w, h, d = _spline_params()
    x = torch.linspace(-3.5, 3.5, 301, dtype=torch.float64, requires_grad=True)
    y, log_deriv = splines.rational_quadratic_spline(x, w, h, d, bound=3.0)
    grad, = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(log_deriv, grad.log(), atol=1e-10, rtol=0)
    x_back, log_inv = splines.rational_quadratic_spline(y, w, h, d, inverse=True, bound=3.0)
    torch.testing.assert_close(x_back, x.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(log_inv, -log_deriv, atol=1e-10, rtol=0)


def test_spline_is_monotone_identity_outside_and_continuous_at_knots():
    w, h, d = _spline_params(k=4, seed=3)
    x = torch.linspace(-3, 3, 20001, dtype=torch.float64)
    y, _ = splines.rational_quadratic_spline(x, w, h, d, bound=2.0)
    inside = x.abs() <= 2
    assert (y[inside].diff() > 0).all()
    torch.testing.assert_close(y[~inside], x[~inside])
    assert (y[inside].diff() < 0.05).all()                                  # no jumps
    knots = splines._knots(w, -2.0, 2.0)
    eps = 1e-9
    left, dl = splines.rational_quadratic_spline(knots - eps, w, h, d, bound=2.0)
    right, dr = splines.rational_quadratic_spline(knots + eps, w, h, d, bound=2.0)
    torch.testing.assert_close(left, right, atol=1e-7, rtol=0)              # value continuous
    torch.testing.assert_close(dl, dr, atol=1e-6, rtol=0)                   # slope continuous
    torch.testing.assert_close(splines.rational_quadratic_spline(knots, w, h, d, bound=2.0)[0],
                               splines._knots(h, -2.0, 2.0))                      # knots map to knots


def test_spline_broadcasts_batched_parameters():
    w, h, d = _spline_params(shape=(3,))
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y, log_deriv = splines.rational_quadratic_spline(x, w, h, d)
    for j in range(3):
        yj, lj = splines.rational_quadratic_spline(x[:, j], w[j], h[j], d[j])
        torch.testing.assert_close(y[:, j], yj)
        torch.testing.assert_close(log_deriv[:, j], lj)


def test_spline_rejects_mismatched_parameters():
    w, h, d = _spline_params(k=5)
    with pytest.raises(ValueError, match="must be K, K and K - 1"):
        splines.rational_quadratic_spline(torch.zeros(3), w, h, torch.zeros(5))
    with pytest.raises(ValueError, match="must be K, K and K - 0"):
        splines.circular_spline(torch.zeros(3), w, h, d)


# --- smooth ramp mixture ---

def _smooth_params(seed=0, k=3):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(k, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3)]


def test_smooth_mixture_maps_unit_interval_monotonically():
    params = _smooth_params()
    x = torch.linspace(0, 1, 10001, dtype=torch.float64)
    y, log_deriv = splines.smooth_ramp_mixture(x, *params)
    torch.testing.assert_close(y[[0, -1]], torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-14, rtol=0)
    assert (y.diff() > 0).all()
    xg = x.clone().requires_grad_()
    grad, = torch.autograd.grad(splines.smooth_ramp_mixture(xg, *params)[0].sum(), xg)
    torch.testing.assert_close(log_deriv, grad.log(), atol=1e-10, rtol=0)


def test_smooth_mixture_inverse_gradients_match_forward():
    """Gradients of the bisection inverse (inverse function theorem) against finite differences and
    against 1 / f'(x) from autograd of the forward map."""
    params = _smooth_params(seed=1)
    y = torch.tensor([0.05, 0.3, 0.5, 0.77, 0.97], dtype=torch.float64, requires_grad=True)
    x, _ = splines.smooth_ramp_mixture(y, *params, inverse=True)
    dx_dy, = torch.autograd.grad(x.sum(), y, retain_graph=True)
    log_deriv = splines.smooth_ramp_mixture(x.detach(), *params)[1]
    torch.testing.assert_close(dx_dy, (-log_deriv).exp().detach(), atol=1e-10, rtol=0)
    loss = lambda *p: (splines.smooth_ramp_mixture(y.detach(), *p, inverse=True)[0] ** 2).sum()  # noqa: E731
    assert torch.autograd.gradcheck(loss, tuple(p.detach().requires_grad_() for p in params), eps=1e-6, atol=1e-6)
    # the inverse's log-det is differentiable too, through x and the parameters
    loss2 = lambda *p: splines.smooth_ramp_mixture(y.detach(), *p, inverse=True)[1].sum()  # noqa: E731
    assert torch.autograd.gradcheck(loss2, tuple(p.detach().requires_grad_() for p in params), eps=1e-6, atol=1e-6)


def _second_derivative(fn, x):
    x = x.clone().requires_grad_()
    first, = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    second, = torch.autograd.grad(first.sum(), x)
    return second


def test_smooth_mixture_has_continuous_second_derivative_where_spline_does_not():
    params = [p.detach() for p in _smooth_params(seed=2)]
    b, a = torch.sigmoid(params[0]), 1 + torch.nn.functional.softplus(params[1])
    ends = torch.cat([b - 0.5 / a, b + 0.5 / a])                 # where each ramp starts and stops
    ends = ends[(ends > 0.01) & (ends < 0.99)]
    assert len(ends) > 0
    h = 1e-6
    f = lambda v: splines.smooth_ramp_mixture(v, *params)[0]  # noqa: E731
    jump = (_second_derivative(f, ends + h) - _second_derivative(f, ends - h)).abs().max()
    assert jump < 1e-3
    # the same check finds the jump of the rational-quadratic spline's second derivative at its knots
    w, hh, d = _spline_params(k=4, seed=3)
    knots = splines._knots(w, -2.0, 2.0)[1:-1]
    g = lambda v: splines.rational_quadratic_spline(v, w, hh, d, bound=2.0)[0]  # noqa: E731
    assert (_second_derivative(g, knots + h) - _second_derivative(g, knots - h)).abs().max() > 1e-2


def test_smooth_mixture_rejects_bad_input():
    params = [p.detach() for p in _smooth_params()]
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        splines.smooth_ramp_mixture(torch.tensor([1.5]), *params)
    with pytest.raises(ValueError, match="linear == 0, must be in"):
        splines.smooth_ramp_mixture(torch.tensor([0.5]), *params, linear=0)


# --- circle flows ---

def _circle_params(seed=0, k=3):
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(k, 2, generator=gen, dtype=torch.float64)
    return 0.9 * v / (1 + v.norm(dim=-1, keepdim=True)), torch.randn(k, generator=gen, dtype=torch.float64)


def test_mobius_maps_circle_onto_itself_and_is_periodic():
    w, weights = _circle_params()
    theta = torch.linspace(0, TWO_PI, 20001, dtype=torch.float64)[:-1]
    y, log_deriv = splines.mobius_circle(theta, w, weights)
    assert y.min() >= 0 and y.max() < TWO_PI
    assert (y.diff() > 0).all()                                      # increasing, one turn
    assert y[-1] > TWO_PI - 0.01 and y[0] == 0
    ends = torch.tensor([0.0, TWO_PI], dtype=torch.float64)
    y_ends, d_ends = splines.mobius_circle(ends, w, weights)
    gap = torch.remainder(y_ends[1] - y_ends[0] + math.pi, TWO_PI) - math.pi
    assert abs(gap) < 1e-12
    torch.testing.assert_close(d_ends[0], d_ends[1], atol=1e-12, rtol=0)
    tg = theta[::97].clone().requires_grad_()
    grad, = torch.autograd.grad(splines.mobius_circle(tg, w, weights)[0].sum(), tg)
    torch.testing.assert_close(log_deriv[::97], grad.log(), atol=1e-10, rtol=0)


def test_mobius_single_component_matches_complex_formula():
    w = torch.tensor([[0.3, -0.5]], dtype=torch.float64)
    theta = torch.tensor([0.4, 2.0, 5.0], dtype=torch.float64)
    y, _ = splines.mobius_circle(theta, w, torch.zeros(1, dtype=torch.float64))
    wc = torch.complex(w[0, 0], w[0, 1])

    def h(z):
        return (1 - wc.abs() ** 2) / (z - wc).abs() ** 2 * (z - wc) - wc

    expected = torch.remainder(torch.angle(h(torch.exp(1j * theta))) - torch.angle(h(torch.tensor(1 + 0j))), TWO_PI)
    torch.testing.assert_close(y, expected.to(torch.float64))


def test_circular_spline_is_periodic():
    w, h, d = _spline_params(k=6, seed=5)
    d = torch.cat([d, torch.tensor([1.7], dtype=torch.float64)])
    ends = torch.tensor([0.0, TWO_PI], dtype=torch.float64)
    y, log_deriv = splines.circular_spline(ends, w, h, d)
    torch.testing.assert_close(y, ends)
    torch.testing.assert_close(log_deriv[0], log_deriv[1])
    assert abs(log_deriv[0]) > 0.1                                    # the shared end slope is not 1
    theta = torch.linspace(0, TWO_PI, 5001, dtype=torch.float64)
    assert (splines.circular_spline(theta, w, h, d)[0].diff() > 0).all()


# the rectangle rule is spectrally accurate for the smooth Moebius density, second order for the
# spline's (its density has kinks at the knots), hence more points and a looser tolerance there
@pytest.mark.parametrize("make, n, atol", [(lambda: splines.MobiusCircle(1, components=3), 4000, 1e-8),
                                           (lambda: splines.CircularSpline(1), 100_000, 1e-6)])
def test_pushed_forward_uniform_density_integrates_to_one(make, n, atol):
    layer = randomize(make().double(), seed=4)
    y = torch.linspace(0, TWO_PI, n + 1, dtype=torch.float64)[:-1, None]
    _, log_det_inv = layer.inverse(y)
    density = log_det_inv.exp() / TWO_PI                              # uniform base on the circle
    total = density.sum() * TWO_PI / len(y)                          # periodic rectangle rule
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), atol=atol, rtol=0)
    assert density.max() > 1.5 / TWO_PI                               # genuinely non-uniform


def test_mobius_rejects_centres_outside_disk():
    with pytest.raises(ValueError, match="inside the unit disk"):
        splines.mobius_circle(torch.zeros(2), torch.tensor([[1.0, 0.5]]), torch.zeros(1))
