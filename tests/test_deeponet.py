"""Tests for repro.dynamics_pde_operators (operator_data, deeponet): the GRF sampler against its kernel, the RK4 solver and the data
generators against closed-form solutions, linear interpolation against numpy, the sensor error
kappa's 1/m^2 rate, the DeepONet / FNN shapes, both stacked as copies (`repro.core.stacked`), and the
vectorized trainer against single runs."""
import math

import numpy as np
import pytest
import torch

from repro.dynamics_pde_operators import operator_data as operators
from repro.core.stacked import StackedModels
from repro.dynamics_pde_operators.deeponet import (DeepONet, FNNOperator, fit_sizes,
                                                   mse, squared_errors)
from repro.dynamics_pde_operators.operator_data import (OperatorData, concat, fewer_sensors, interp_linear, kappa,
                                                        operator_data, rbf_kernel, rk4, sample_grf)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- Gaussian random field ---------------------------------------------------------------------
def test_rbf_kernel_values():
    x = torch.tensor([0.0, 0.1, 0.5], dtype=torch.float64)
    k = rbf_kernel(x, x, 0.2)
    torch.testing.assert_close(k.diagonal(), torch.ones(3, dtype=torch.float64))
    assert k[0, 1].item() == pytest.approx(math.exp(-0.5 * 0.25))
    assert k[0, 2].item() == pytest.approx(math.exp(-0.5 * 6.25))


def test_rbf_kernel_matches_sklearn():
    gp = pytest.importorskip("sklearn.gaussian_process.kernels")
    x = np.linspace(0, 1, 7)[:, None]
    ours = rbf_kernel(torch.from_numpy(x[:, 0]), torch.from_numpy(x[:, 0]), 0.3).numpy()
    np.testing.assert_allclose(ours, gp.RBF(length_scale=0.3)(x), rtol=1e-12)


def test_grf_sample_covariance_matches_the_kernel():
    x = torch.linspace(0, 1, 21, dtype=torch.float64)
    u = sample_grf(x, 40000, 0.2, generator=_gen())
    assert u.shape == (40000, 21) and u.dtype == torch.float64
    cov = u.T @ u / len(u)
    assert (cov - rbf_kernel(x, x, 0.2)).abs().max() < 0.03
    assert u.mean(0).abs().max() < 0.03


def test_grf_is_seeded_by_the_generator_or_the_global_seed():
    x = torch.linspace(0, 1, 11)
    torch.testing.assert_close(sample_grf(x, 3, 0.2, generator=_gen(5)), sample_grf(x, 3, 0.2, generator=_gen(5)))
    torch.manual_seed(1)
    a = sample_grf(x, 3, 0.2)
    torch.manual_seed(1)
    torch.testing.assert_close(a, sample_grf(x, 3, 0.2))
    assert not torch.equal(a, sample_grf(x, 3, 0.2, generator=_gen(2)))


def test_grf_samples_are_smooth_at_the_length_scale():
    # the RBF field's derivative has variance 1/l^2: u(x + h) - u(x) ~ h / l for small h
    x = torch.tensor([0.5, 0.501], dtype=torch.float64)
    u = sample_grf(x, 20000, 0.1, generator=_gen())
    assert ((u[:, 1] - u[:, 0]) / 0.001).std().item() == pytest.approx(10.0, rel=0.05)


@pytest.mark.parametrize("kw, match", [(dict(n=0, length_scale=0.2), "n == 0"),
                                        (dict(n=2, length_scale=0.0), "length_scale == 0.0")])
def test_grf_rejects_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        sample_grf(torch.linspace(0, 1, 5), **kw)


# --- interpolation and the ODE solver ------------------------------------------------------------
def test_interp_linear_matches_numpy():
    xk = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64)
    vals = torch.randn(3, 4, dtype=torch.float64, generator=_gen())
    x = torch.linspace(0, 1, 17, dtype=torch.float64)
    ours = interp_linear(xk, vals, x)
    for i in range(3):
        np.testing.assert_allclose(ours[i].numpy(), np.interp(x.numpy(), xk.numpy(), vals[i].numpy()))


def test_interp_linear_refuses_to_extrapolate():
    with pytest.raises(ValueError, match="outside the known range"):
        interp_linear(torch.tensor([0.0, 1.0]), torch.zeros(1, 2), torch.tensor([1.5]))


def test_rk4_antiderivative_of_sin_and_exactness_on_cubics():
    x = torch.linspace(0, 1, 201, dtype=torch.float64)
    u = torch.stack([torch.sin(2 * math.pi * x), 4 * x ** 3 - 3 * x ** 2 + 1])
    xs, s = rk4(operators.antiderivative_rhs, u, x)
    assert xs.shape == (101,) and s.shape == (2, 101)
    exact_sin = (1 - torch.cos(2 * math.pi * xs)) / (2 * math.pi)
    assert (s[0] - exact_sin).abs().max() < 1e-8   # Simpson, h = 0.01: ~ h^4 (2 pi)^4 / 180
    torch.testing.assert_close(s[1], xs ** 4 - xs ** 3 + xs, rtol=0, atol=1e-13)  # Simpson is exact


def test_rk4_nonlinear_ode_closed_forms():
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    # u = c constant, s(0) = 0: s = sqrt(c) tanh(sqrt(c) x)
    c = 2.0
    _, s = rk4(operators.nonlinear_ode_rhs, torch.full((1, 101), c, dtype=torch.float64), x)
    exact = math.sqrt(c) * torch.tanh(math.sqrt(c) * x[::2])
    assert (s[0] - exact).abs().max() < 1e-7
    # u = 0, s(0) = 1: s = 1 / (1 + x)
    xs, s = rk4(operators.nonlinear_ode_rhs, torch.zeros(1, 101, dtype=torch.float64), x, s0=1.0)
    assert (s[0] - 1 / (1 + xs)).abs().max() < 1e-7


def test_rk4_error_is_fourth_order():
    errs = []
    for n in [21, 41, 81]:
        x = torch.linspace(0, 1, n, dtype=torch.float64)
        _, s = rk4(operators.nonlinear_ode_rhs, torch.full((1, n), 2.0, dtype=torch.float64), x)
        errs.append(abs(s[0, -1].item() - math.sqrt(2) * math.tanh(math.sqrt(2))))
    assert np.log2(errs[0] / errs[1]) == pytest.approx(4, abs=0.3)
    assert np.log2(errs[1] / errs[2]) == pytest.approx(4, abs=0.3)


@pytest.mark.parametrize("n, match", [(4, "odd number"), (1, "odd number")])
def test_rk4_needs_an_odd_grid(n, match):
    x = torch.linspace(0, 1, n)
    with pytest.raises(ValueError, match=match):
        rk4(operators.antiderivative_rhs, torch.zeros(1, n), x)


def test_rk4_checks_the_shape_of_u():
    with pytest.raises(ValueError, match="must be"):
        rk4(operators.antiderivative_rhs, torch.zeros(1, 5), torch.linspace(0, 1, 7))


# --- data sets ---------------------------------------------------------------------------------
def test_operator_data_shapes_sensors_and_antiderivative_values():
    d = operator_data("antiderivative", 30, m=11, length_scale=0.3, points_per_function=4, generator=_gen())
    assert len(d) == 30 and d.u.shape == (30, 11) and d.y.shape == d.s.shape == (30, 4)
    torch.testing.assert_close(d.sensors, torch.linspace(0, 1, 11, dtype=torch.float64))
    # on the sensors, the trapezoid rule applied to u is close to G(u) (error ~ h^2 |u'| / 12)
    full = operator_data("antiderivative", 5, m=41, length_scale=0.3, points_per_function=None, generator=_gen(1))
    assert full.y.shape == (5, 161) and full.s[:, 0].abs().max() == 0
    trapezoid = torch.cat([torch.zeros(5, 1, dtype=torch.float64),
                           torch.cumulative_trapezoid(full.u, full.sensors, dim=1)], dim=1)
    assert (trapezoid - full.s[:, ::4]).abs().max() < 1e-3


def test_operator_data_is_reproducible_and_accepts_a_function_g():
    a = operator_data("nonlinear-ode", 5, m=6, generator=_gen(3))
    b = operator_data(operators.nonlinear_ode_rhs, 5, m=6, generator=_gen(3))
    for f in ["u", "y", "s"]:
        torch.testing.assert_close(getattr(a, f), getattr(b, f))


def test_operator_data_redraws_blown_up_solutions():
    d = operator_data("nonlinear-ode", 300, m=11, points_per_function=None, reject_above=1.0, generator=_gen())
    assert len(d) == 300 and d.s.abs().max() <= 1.0 and torch.isfinite(d.s).all()


def test_operator_data_subset_and_to():
    d = operator_data("antiderivative", 10, m=5, generator=_gen())
    sub = d.subset(4).to()
    assert len(sub) == 4 and sub.u.dtype == torch.float32 and sub.n_triples == 4
    torch.testing.assert_close(sub.u, d.u[:4].float())
    with pytest.raises(ValueError, match="n == 11"):
        d.subset(11)


@pytest.mark.parametrize("kw, match", [
    (dict(problem="heat"), "problem == 'heat'"),
    (dict(m=1), "m == 1"),
    (dict(refine=0), "refine == 0"),
    (dict(points_per_function=0), "points_per_function == 0"),
    (dict(reject_above=-1.0), "reject_above == -1.0"),
])
def test_operator_data_rejects_bad_arguments(kw, match):
    args = dict(problem="antiderivative", n_functions=3, m=5) | kw
    with pytest.raises(ValueError, match=match):
        operator_data(**args)


# --- the sensor error ---------------------------------------------------------------------------
def test_kappa_falls_like_one_over_m_squared():
    x = torch.linspace(0, 1, 801, dtype=torch.float64)
    u = sample_grf(x, 50, 0.2, generator=_gen())
    ks = [kappa(u, x, m).mean().item() for m in [21, 41, 81]]
    assert np.polyfit(np.log([20, 40, 80]), np.log(ks), 1)[0] == pytest.approx(-2, abs=0.15)
    # a linear function is interpolated exactly
    assert kappa((2 * x - 1)[None], x, 5).item() < 1e-12
    # for u = x^2 the interpolation error is h^2 / 4 at the midpoints; its rms is h^2 / sqrt(30)
    h = 1 / 4
    assert kappa((x ** 2)[None], x, 5).item() == pytest.approx(h ** 2 / 4)
    assert kappa((x ** 2)[None], x, 5, reduce="rms").item() == pytest.approx(h ** 2 / math.sqrt(30), rel=2e-3)


def test_rms_kappa_grows_like_one_over_l_squared():
    x = torch.linspace(0, 1, 801, dtype=torch.float64)
    ks = [kappa(sample_grf(x, 50, l, generator=_gen()), x, 41, reduce="rms").pow(2).mean().sqrt().item()
          for l in [0.1, 0.2, 0.4]]
    assert np.polyfit(np.log([0.1, 0.2, 0.4]), np.log(ks), 1)[0] == pytest.approx(-2, abs=0.15)


def test_kappa_needs_sensors_on_the_grid_and_a_known_reduction():
    x = torch.linspace(0, 1, 11)
    with pytest.raises(ValueError, match="does not contain 4 equispaced sensors"):
        kappa(torch.zeros(1, 11), x, 4)
    with pytest.raises(ValueError, match="reduce == 'mean'"):
        kappa(torch.zeros(1, 11), x, 3, reduce="mean")


# --- models ------------------------------------------------------------------------------------
def test_deeponet_is_a_dot_product_of_branch_and_trunk_plus_bias():
    torch.manual_seed(0)
    net = DeepONet(7, p=5, width=8)
    with torch.no_grad():
        net.b0.fill_(0.3)
    u, y = torch.randn(3, 7), torch.rand(3, 4)
    out = net(u, y)
    assert out.shape == (3, 4)
    b, t = net.branch(u), net.trunk(y.unsqueeze(-1))
    torch.testing.assert_close(out, (b[:, None, :] * t).sum(-1) + 0.3)
    assert (t >= 0).all()       # the trunk ends with its activation (ReLU)
    assert DeepONet(7, bias=False).b0 is None


def test_fnn_operator_sees_u_and_y_concatenated():
    torch.manual_seed(0)
    net = FNNOperator(6, width=10)
    u, y = torch.randn(2, 6), torch.rand(2, 3)
    out = net(u, y)
    assert out.shape == (2, 3)
    torch.testing.assert_close(out[1, 2], net.net(torch.cat([u[1], y[1, 2:3]]))[0])


@pytest.mark.parametrize("cls", [DeepONet, FNNOperator])
def test_models_check_the_number_of_sensors(cls):
    with pytest.raises(ValueError, match="m = 5"):
        cls(5)(torch.zeros(2, 4), torch.zeros(2, 1))


def test_mse_and_trimmed_mse():
    d = OperatorData(torch.linspace(0, 1, 3), torch.zeros(4, 3), torch.zeros(4, 250), torch.zeros(4, 250))
    d.s[0, 0] = 10.0                                     # one outlier among 1000 triples

    class Zero(torch.nn.Module):
        def forward(self, u, y):
            return torch.zeros_like(y)

    assert mse(Zero(), d) == pytest.approx(0.1)
    assert mse(Zero(), d, trim=0.001) == 0.0
    with pytest.raises(ValueError, match="trim == 1"):
        mse(Zero(), d, trim=1)


# --- training ----------------------------------------------------------------------------------
def test_fit_sizes_learns_the_antiderivative():
    data = operator_data("antiderivative", 200, m=11, points_per_function=5, generator=_gen()).to()
    test = operator_data("antiderivative", 100, m=11, points_per_function=5, generator=_gen(1)).to()
    models, hist = fit_sizes(lambda: DeepONet(11, p=16, width=16), data, [200], steps=300,
                             batch_size=50, lr=1e-2, record_every=100)
    assert list(hist.step) == [100, 200, 300]
    assert mse(models[0], test) < 0.05 * test.s.var().item()
    assert not models[0].training


def test_fit_sizes_members_do_not_depend_on_each_other():
    data = operator_data("nonlinear-ode", 40, m=6, points_per_function=3, generator=_gen()).to()
    make = lambda: DeepONet(6, p=4, width=4)  # noqa: E731
    alone, _ = fit_sizes(make, data, [10], steps=20, batch_size=8, lr=1e-2, seed=3)
    together, _ = fit_sizes(make, data, [10, 40], steps=20, batch_size=8, lr=1e-2, seed=3)
    for a, b in zip(alone[0].parameters(), together[0].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(together[0].parameters(), together[1].parameters()))


@pytest.mark.parametrize("kw, match", [(dict(sizes=[0]), "sizes == \\[0\\]"), (dict(sizes=[41]), "sizes == \\[41\\]"),
                                        (dict(steps=0), "steps == 0")])
def test_fit_sizes_rejects_bad_arguments(kw, match):
    data = operator_data("antiderivative", 40, m=6, generator=_gen()).to()
    args = dict(sizes=[10], steps=5, batch_size=8, lr=1e-3) | kw
    with pytest.raises(ValueError, match=match):
        fit_sizes(lambda: DeepONet(6, p=4, width=4), data, **args)


@pytest.mark.parametrize("kw, match", [(dict(lr=[1e-3, 1e-3]), "learning rates"),
                                        (dict(starts=[35]), "starts == \\[35\\]")])
def test_fit_sizes_checks_lrs_and_starts(kw, match):
    data = operator_data("antiderivative", 40, m=6, generator=_gen()).to()
    args = dict(sizes=[10], steps=5, batch_size=8, lr=1e-3) | kw
    with pytest.raises(ValueError, match=match):
        fit_sizes(lambda: DeepONet(6, p=4, width=4), data, **args)


# --- stacked copies, per-copy learning rates, data for them ----------------------------------------
@pytest.mark.parametrize("make", [lambda: DeepONet(6, p=5, width=7), lambda: FNNOperator(6, width=9)])
def test_stacked_models_compute_what_their_members_compute(make):
    models = []
    for s in range(3):
        torch.manual_seed(s)
        models.append(make())
        if getattr(models[-1], "b0", None) is not None:
            with torch.no_grad():
                models[-1].b0.fill_(0.1 * s)
    stack = StackedModels(models)
    u, y = torch.randn(3, 4, 6), torch.rand(3, 4, 5)
    out = stack(u, y)
    assert out.shape == (3, 4, 5) and len(stack) == 3
    for e, model in enumerate(models):
        torch.testing.assert_close(out[e], model(u[e], y[e]))
    with torch.no_grad():                       # members() copies the stacked weights back
        for p in stack.parameters():
            p.mul_(2.0)
    back = stack.members()
    out2 = stack(u, y)
    for e, model in enumerate(back):
        assert not model.training
        torch.testing.assert_close(out2[e], model(u[e], y[e]))


def test_fit_sizes_copies_with_their_own_learning_rate_and_data():
    a = operator_data("antiderivative", 12, m=6, points_per_function=3, generator=_gen()).to()
    b = operator_data("nonlinear-ode", 10, m=6, points_per_function=3, generator=_gen(1)).to()
    both, starts = concat([a, b])
    assert starts == [0, 12] and len(both) == 22
    make = lambda: DeepONet(6, p=4, width=4)  # noqa: E731
    alone_a, _ = fit_sizes(make, a, [12], steps=15, batch_size=5, lr=3e-3, seed=1)
    alone_b, _ = fit_sizes(make, b, [10], steps=15, batch_size=5, lr=1e-2, seed=1)
    together, _ = fit_sizes(make, both, [12, 10], starts=starts, steps=15, batch_size=5, lr=[3e-3, 1e-2], seed=1)
    for alone, copy in [(alone_a[0], together[0]), (alone_b[0], together[1])]:
        for p, q in zip(alone.parameters(), copy.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_concat_needs_matching_shapes():
    with pytest.raises(ValueError, match="same number"):
        concat([operator_data("antiderivative", 3, m=5, generator=_gen()),
                operator_data("antiderivative", 3, m=6, generator=_gen())])


def test_fewer_sensors_replaces_u_by_its_interpolant():
    d = operator_data("antiderivative", 4, m=13, points_per_function=2, generator=_gen())
    f = fewer_sensors(d, 4)                                      # every 4th of the 13 sensors
    torch.testing.assert_close(f.u[:, ::4], d.u[:, ::4])        # kept sensors unchanged
    assert not torch.allclose(f.u, d.u)
    x = d.sensors
    np.testing.assert_allclose(f.u[0].numpy(), np.interp(x.numpy(), x[::4].numpy(), d.u[0, ::4].numpy()))
    assert f.y is d.y and f.s is d.s
    lin = OperatorData(x, (3 * x - 1)[None], d.y[:1], d.s[:1])
    torch.testing.assert_close(fewer_sensors(lin, 3).u, lin.u)  # a linear u is seen exactly
    with pytest.raises(ValueError, match="do not contain 6"):
        fewer_sensors(d, 6)


def test_squared_errors_per_triple():
    d = OperatorData(torch.linspace(0, 1, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 4))

    class Zero(torch.nn.Module):
        def forward(self, u, y):
            return torch.zeros_like(y)

    torch.testing.assert_close(squared_errors(Zero(), d), torch.ones(2, 4))


def test_fit_sizes_a_diverged_copy_does_not_stop_the_others():
    a = operator_data("antiderivative", 12, m=6, points_per_function=3, generator=_gen()).to()
    bad = OperatorData(a.sensors, a.u.clone(), a.y.clone(), a.s.clone())
    bad.s[:] = float("nan")                                      # every loss of this copy is NaN
    both, starts = concat([a, bad])
    make = lambda: DeepONet(6, p=4, width=4)  # noqa: E731
    alone, _ = fit_sizes(make, a, [12], steps=10, batch_size=5, lr=1e-2, seed=2)
    together, hist = fit_sizes(make, both, [12, 12], starts=starts, steps=10, batch_size=5, lr=1e-2, seed=2)
    for p, q in zip(alone[0].parameters(), together[0].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert np.isfinite(hist.loss).all()
