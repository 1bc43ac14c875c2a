import math

import pytest
import torch
from torch import nn

from repro.infinite_width_kernels.ntk import (analytic_ntk, decay_factors, dynamics_operator, empirical_ntk,
                                             gaussian_prediction, kernel_eigen, kernel_quadratic_form,
                                             least_squares_descent, linear_dynamics)
from repro.infinite_width_kernels.abc_parametrization import ParametrizedMLP


def _circle(m=9):
    g = torch.linspace(-math.pi, math.pi, m, dtype=torch.float64)
    return torch.stack([g.cos(), g.sin()], 1)


def test_empirical_ntk_of_a_linear_model_is_the_gram_matrix():
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False).double()
    x, z = torch.randn(7, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(empirical_ntk(model, x), x @ x.T)
    torch.testing.assert_close(empirical_ntk(model, x, z), x @ z.T)
    # with a bias every entry gains 1; with K outputs the kernel is (x x'^T + 1) I_K
    model = nn.Linear(5, 3).double()
    theta = empirical_ntk(model, x, z)
    assert theta.shape == (7, 3, 3, 3)
    torch.testing.assert_close(theta, (x @ z.T + 1)[:, :, None, None] * torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize("max_memory", [2 ** 28, 1])  # one block, or one point per block + jvp
def test_empirical_ntk_is_symmetric_psd_and_blocking_does_not_change_it(max_memory):
    torch.manual_seed(1)
    net = ParametrizedMLP(3, 16, 2, depth=2, bias=0.1).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    theta = empirical_ntk(net, x, max_memory=max_memory)  # (6, 6, 2, 2)
    flat = theta.permute(0, 2, 1, 3).reshape(12, 12)
    torch.testing.assert_close(flat, flat.T)
    assert torch.linalg.eigvalsh(flat).min() > -1e-10
    # against an explicit Jacobian from torch.func
    params = dict(net.named_parameters())
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(net, p, (x,)))(params)
    J = torch.cat([j.reshape(12, -1) for j in jac.values()], 1)
    torch.testing.assert_close(flat, J @ J.T)
    torch.testing.assert_close(empirical_ntk(net, x[:2], x, max_memory=max_memory), theta[:2])
    # one row against many points takes the Jacobian-vector-product path whatever the memory
    torch.testing.assert_close(empirical_ntk(net, x[:1], x, max_memory=max_memory), theta[:1])


def test_relu_expectations_match_quadrature_and_monte_carlo():
    x = _circle(8)[:-1] * torch.tensor([1.0, 1.5], dtype=torch.float64)  # no repeated point
    theta, sigma = analytic_ntk(x, depth=2, bias=0.3)
    # the closed form against Monte Carlo, and against the general-purpose quadrature path
    from repro.core import activations
    from repro.infinite_width_kernels.ntk import _quadrature_expectations, _relu_expectations
    s = torch.tensor([[1.3, 0.4], [0.4, 0.7]], dtype=torch.float64)
    e, edot = _relu_expectations(s[0, 0], s[1, 1], s[0, 1])
    g = torch.Generator().manual_seed(0)
    uv = torch.randn(400_000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s).T
    assert e.item() == pytest.approx(torch.relu(uv).prod(1).mean().item(), rel=0.01)
    assert edot.item() == pytest.approx((uv > 0).all(1).double().mean().item(), rel=0.01)
    eq, edot_q = _quadrature_expectations(activations.get("relu"), s[0, 0], s[1, 1], s[0, 1], 64)
    assert (eq.item(), edot_q.item()) == pytest.approx((e.item(), edot.item()), abs=1e-10)
    assert theta.shape == sigma.shape == (7, 7)
    assert torch.linalg.eigvalsh(theta).min() > 0


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_analytic_ntk_is_the_mean_of_wide_networks_ntk(activation):
    x = _circle(9)
    theta, _ = analytic_ntk(x[:1], x, depth=2, bias=0.2, weight_std=1.2, activation=activation)
    runs = []
    for seed in range(8):
        torch.manual_seed(seed)
        net = ParametrizedMLP(2, 512, 1, depth=2, activation=activation, bias=0.2,
                              weight_std=1.2).double()
        runs.append(empirical_ntk(net, x[:1], x))
    runs = torch.stack(runs)
    err = (runs.mean(0) - theta).norm() / theta.norm()
    spread = (runs - theta).norm(dim=(1, 2)).mean() / theta.norm()
    # unbiased: the mean of 8 draws is off by about spread / sqrt(8); a wrong recursion by far more
    assert err < 3 * spread / math.sqrt(len(runs)) and spread < 0.15


def test_analytic_nngp_is_the_output_covariance_of_a_very_wide_network():
    """Given the last hidden layer phi, the output's covariance over the N(0, 1) readout is
    phi(x).phi(x') / n + beta^2, and phi converges to its limit as the width grows."""
    x = _circle(6)[:-1]
    _, sigma = analytic_ntk(x, depth=2, bias=0.1)
    covs = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = ParametrizedMLP(2, 8192, 1, depth=2, bias=0.1).double()
        with torch.no_grad():
            phi = net.features(x)[-1]
        covs.append(phi @ phi.T / 8192 + 0.1 ** 2)
    cov = torch.stack(covs).mean(0)
    # fluctuations ~ 1/sqrt(3 * 8192) ~ 1%; dropping beta from the recursion would be off by 12%
    assert ((cov - sigma).abs() / sigma.diag().max()).max() < 0.05


def test_analytic_ntk_of_identity_network_is_linear_in_depth():
    x = torch.randn(4, 3, dtype=torch.float64)
    theta, sigma = analytic_ntk(x, depth=3, activation="identity", quadrature=8)
    # Sigma stays x.x'/n0; each layer adds one more copy to Theta
    torch.testing.assert_close(sigma, x @ x.T / 3)
    torch.testing.assert_close(theta, 4 * x @ x.T / 3)


def test_linear_dynamics_match_explicit_gradient_descent_on_the_linearized_model():
    torch.manual_seed(0)
    net = ParametrizedMLP(2, 32, 1, depth=2, bias=0.1).double()
    x, xt = torch.randn(6, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    y = torch.randn(6, dtype=torch.float64)
    params0 = {k: v.detach().clone() for k, v in net.named_parameters()}

    def f(p, z):
        return torch.func.functional_call(net, p, (z,))[:, 0]

    def f_lin(p, z):  # first-order Taylor expansion around params0
        delta = {k: p[k] - params0[k] for k in p}
        f0, df = torch.func.jvp(lambda q: f(q, z), (params0,), (delta,))
        return f0 + df

    p, lr, steps = {k: v.clone().requires_grad_(True) for k, v in params0.items()}, 0.5, 25
    for _ in range(steps):
        loss = 0.5 * ((f_lin(p, x) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, list(p.values()))
        p = {k: (v - lr * g).detach().requires_grad_(True) for (k, v), g in zip(p.items(), grads)}
    theta, cross = empirical_ntk(net, x), empirical_ntk(net, xt, x)
    with torch.no_grad():
        f_train, f_test = linear_dynamics(theta, f(params0, x), y, lr, steps, cross, f(params0, xt))
        torch.testing.assert_close(f_train, f_lin(p, x))
        torch.testing.assert_close(f_test, f_lin(p, xt))
    # after many steps (and for the flow) the training set is fitted; residual along eigvecs decays
    lam, vec = kernel_eigen(theta)
    r0 = f(params0, x).detach() - y
    r_t = linear_dynamics(theta, f(params0, x).detach(), y, lr, 40, flow=True) - y
    torch.testing.assert_close(vec.T @ r_t, decay_factors(lam, 6, lr, 40, flow=True) * (vec.T @ r0))


def test_gaussian_prediction_is_the_law_of_the_trained_infinite_network():
    x, xt = _circle(5)[:4], _circle(9)
    theta, sigma = analytic_ntk(x, depth=1, bias=0.1)
    cross_t, cross_s = analytic_ntk(xt, x, depth=1, bias=0.1)
    _, sig_t = analytic_ntk(xt, depth=1, bias=0.1)
    A = dynamics_operator(theta, 1.0, 10 ** 6, cross_t)
    y = torch.tensor([0.5, -0.2, 0.3, 0.1], dtype=torch.float64)
    mean, std = gaussian_prediction(A, y, sigma, cross_s, sig_t.diag())
    # at convergence the training points are interpolated exactly, with no spread
    torch.testing.assert_close(dynamics_operator(theta, 1.0, 10 ** 6), torch.eye(4, dtype=torch.float64))
    on_train = [int(i) for i in torch.cdist(x, xt).argmin(1)]
    assert torch.allclose(mean[on_train], y, atol=1e-6) and std[on_train].max() < 1e-6
    assert std.max() > 0.01


def test_kernel_quadratic_form_is_v_theta_v():
    torch.manual_seed(2)
    net = ParametrizedMLP(3, 32, 1, depth=2, bias=0.1).double()
    x, v = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    assert kernel_quadratic_form(net, x, v) == pytest.approx(float(v @ empirical_ntk(net, x) @ v), rel=1e-10)
    with pytest.raises(ValueError, match="scalar output per point"):
        kernel_quadratic_form(ParametrizedMLP(3, 8, 2, depth=1).double(), x, v)


def test_least_squares_descent_is_sgd_on_half_the_mean_squared_error():
    torch.manual_seed(3)
    net = ParametrizedMLP(2, 16, 1, depth=2, bias=0.1).double()
    twin = ParametrizedMLP(2, 16, 1, depth=2, bias=0.1).double()
    twin.load_state_dict(net.state_dict())
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    with torch.no_grad():
        f0 = net(x)[:, 0]
    history = least_squares_descent(net, x, y, 7, 0.3)
    assert history.shape == (8, 5)
    torch.testing.assert_close(history[0], f0)
    with torch.no_grad():
        torch.testing.assert_close(history[-1], net(x)[:, 0])
    # the same steps with torch's SGD on C = 1/(2N) sum_i (f(x_i) - y_i)^2
    opt = torch.optim.SGD(twin.parameters(), lr=0.3)
    for step in range(7):
        opt.zero_grad()
        f = twin(x)[:, 0]
        torch.testing.assert_close(f.detach(), history[step])
        (0.5 * ((f - y) ** 2).mean()).backward()
        opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)
    # K outputs: the cost sums over outputs and averages over points
    wide = ParametrizedMLP(2, 16, 3, depth=1).double()
    assert least_squares_descent(wide, x, torch.zeros(5, 3, dtype=torch.float64), 2, 0.1).shape == (3, 5, 3)


def test_least_squares_descent_refuses_bad_input_and_divergence():
    net = ParametrizedMLP(2, 8, 1, depth=1).double()
    x, y = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="lr == 0"):
        least_squares_descent(net, x, y, 3, 0.0)
    with pytest.raises(ValueError, match="steps == 0"):
        least_squares_descent(net, x, y, 0, 0.1)
    with pytest.raises(ValueError, match="same shape"):
        least_squares_descent(net, x, torch.zeros(4, 2, dtype=torch.float64), 3, 0.1)
    with pytest.raises(FloatingPointError, match="cost became"):
        least_squares_descent(net, x, y, 200, 1e6)


def test_bad_arguments_raise():
    net = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="must be batches"):
        empirical_ntk(net, torch.randn(2))
    with pytest.raises(ValueError, match="max_memory == 0"):
        empirical_ntk(net, torch.randn(3, 2), max_memory=0)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(net.requires_grad_(False), torch.randn(3, 2))
    with pytest.raises(ValueError, match="depth == 0"):
        analytic_ntk(torch.randn(3, 2), depth=0)
    with pytest.raises(ValueError, match="activation == 'swish'"):
        analytic_ntk(torch.randn(3, 2), depth=1, activation="swish")
    with pytest.raises(ValueError, match="features, must match"):
        analytic_ntk(torch.randn(3, 2), torch.randn(3, 4), depth=1)
    with pytest.raises(ValueError, match="square"):
        kernel_eigen(torch.randn(3, 4))
    with pytest.raises(ValueError, match="lr == 0"):
        decay_factors(torch.ones(3), 3, 0.0, 5)
    with pytest.raises(ValueError, match="theta_cross must be"):
        dynamics_operator(torch.eye(3), 1.0, 5, torch.ones(2, 4))
    with pytest.raises(ValueError, match="f0_cross"):
        linear_dynamics(torch.eye(3), torch.zeros(3), torch.ones(3), 1.0, 5, torch.ones(2, 3))
