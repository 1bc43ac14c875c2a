"""The neural tangent kernel (NTK) of Jacot, Gabriel & Hongler (2018): the empirical kernel of any
torch model, the infinite-width kernel of an MLP in the NTK parametrization, and the linear
training dynamics a fixed kernel predicts for least squares.

* Empirical NTK (the paper's Sec. 4): Theta(x, x') = sum_p df(x)/dp df(x')/dp^T over all
  parameters p, i.e. J(x) J(x')^T.
* Infinite-width limit (Prop. 1 and Theorem 1): for an MLP with layers
  a^(l+1) = W^(l) sigma(a^(l)) / sqrt(n_l) + beta b^(l), w, b ~ N(0, 1),
  Sigma^(1)(x, x') = x.x' / n_0 + beta^2,
  Sigma^(l+1) = E_{f ~ N(0, Sigma^(l))}[sigma(f(x)) sigma(f(x'))] + beta^2,
  Theta^(1) = Sigma^(1),  Theta^(l+1) = Theta^(l) Sigmadot^(l+1) + Sigma^(l+1),
  Sigmadot^(l+1) = E[sigma'(f(x)) sigma'(f(x'))]. ReLU uses the closed-form arc-cosine
  expectations, any other activation the piecewise quadrature of `repro.core.gaussian`.
* Least squares (Sec. 5): gradient descent with learning rate eta on
  C = 1/(2N) sum_i |f(x_i) - y_i|^2 moves a model with a fixed kernel Theta as
  f_t(x) = f_0(x) + A_t(x) (y - f_0(X)); along the i-th eigenvector of Theta(X, X) the
  training residual shrinks by (1 - eta lambda_i / N)^t (exp(-eta lambda_i t / N) for the flow).
"""
from __future__ import annotations

import math

import torch

from ..core import activations
from ..core.gaussian import bivariate_expectation, gaussian_expectation
from ..core.validation import check_int


def _jacobian(model: torch.nn.Module, params: list, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobian of the flattened output, (N * K, P): one forward per point, one
    backward per output (plain autograd, which keeps torch.func's slow first import away)."""
    rows = []
    for xi in x.split(1):
        with torch.enable_grad():
            out = model(xi).reshape(-1)  # (K,)
            for k in range(out.numel()):
                grads = torch.autograd.grad(out[k], params, retain_graph=k < out.numel() - 1,
                                            allow_unused=True)
                rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                       for p, g in zip(params, grads)]))
    return torch.stack(rows)


def _jvp_rows(model: torch.nn.Module, params: list, x: torch.Tensor, tangents: torch.Tensor):
    """J(x) t for each row t of `tangents` (T, P), as (T, N * K), by double backward: the graph of
    u(v) = J(x)^T v is built once, and J(x) t = d(u . t)/dv for every t."""
    with torch.enable_grad():
        out = model(x).reshape(len(x), -1)
        v = torch.zeros_like(out, requires_grad=True)
        u = torch.autograd.grad(out, params, grad_outputs=v, create_graph=True, allow_unused=True)
        used = [i for i, ui in enumerate(u) if ui is not None]  # unused parameters add nothing
        rows = []
        for t in tangents:
            pieces = t.split([p.numel() for p in params])
            rows.append(torch.autograd.grad([u[i] for i in used], v,
                                            grad_outputs=[pieces[i].view_as(params[i]) for i in used],
                                            retain_graph=True)[0].reshape(-1))
    return torch.stack(rows)


def empirical_ntk(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  max_memory: int = 2 ** 28) -> torch.Tensor:
    """The empirical NTK J(x1) J(x2)^T over the trainable parameters of `model` (the paper's Sec. 4).

    Returns (N1, N2) for a scalar output and (N1, N2, K, K) for K outputs. J(x1) is built point
    by point with autograd, in blocks of about `max_memory` bytes. J(x2) is built the same way
    when it fits in `max_memory` and x1 is not much shorter than x2; otherwise each row of J(x1)
    is pushed through the model at x2 as a Jacobian-vector product (double backward), so J(x2)
    is never stored: for a few points x1 against many x2 (one row of the kernel on a grid, say)
    a handful of batched passes replace one backward pass per point of x2. With x2 None the
    kernel of x1 with itself is returned, symmetrized.
    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    if x1.ndim < 2 or (x2 is not None and x2.ndim < 2):
        raise ValueError(f"x1 and x2 must be batches (N, ...), got shapes {tuple(x1.shape)} and "
                         f"{None if x2 is None else tuple(x2.shape)}")
    if max_memory <= 0:
        raise ValueError(f"max_memory == {max_memory}, must be > 0")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    symmetric, x2 = x2 is None, x1 if x2 is None else x2
    with torch.no_grad():
        k_out = model(x1[:1]).numel()
    row_bytes = k_out * sum(p.numel() for p in params) * x1.element_size()
    chunk = max(1, int(max_memory // row_bytes))
    few_rows = not symmetric and 4 * len(x1) < len(x2)  # then JVPs through x2 are cheaper
    j2 = _jacobian(model, params, x2) if len(x2) <= chunk and not few_rows else None  # (N2 * K, P)
    rows = []
    for xa in x1.split(chunk):
        ja = j2 if symmetric and j2 is not None else _jacobian(model, params, xa)  # (c * K, P)
        rows.append(ja @ j2.T if j2 is not None else _jvp_rows(model, params, x2, ja))
    theta = torch.cat(rows).reshape(len(x1), k_out, len(x2), k_out).permute(0, 2, 1, 3)
    if symmetric:
        theta = (theta + theta.permute(1, 0, 3, 2)) / 2
    return theta[..., 0, 0] if k_out == 1 else theta


def kernel_quadratic_form(model: torch.nn.Module, x: torch.Tensor, v: torch.Tensor) -> float:
    """v^T Theta(x, x) v for the empirical NTK of a scalar-output `model` on the batch x (N, ...)
    and a vector v (N,): |J(x)^T v|^2, from one backward pass instead of the N x N kernel. For a
    unit eigenvector v of the limiting kernel it is the rate at which the model's own kernel
    moves the residual along v (the finite-width counterpart of the eigenvalue).
    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    with torch.enable_grad():
        f = model(x)
        if f.numel() != len(x) or v.shape != (len(x),):
            raise ValueError(f"need a scalar output per point and v of shape ({len(x)},), got outputs "
                             f"{tuple(f.shape)} and v {tuple(v.shape)}")
        grads = torch.autograd.grad(f.reshape(-1) @ v.to(f.dtype), params, allow_unused=True)
    return float(sum((g.double() ** 2).sum() for g in grads if g is not None))


# --- the infinite-width kernel ----------------------------------------------------------------
def _relu_expectations(s11, s22, s12):
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]])."""
    norm = torch.sqrt(s11 * s22)
    cos = torch.clamp(s12 / norm, -1.0, 1.0)
    angle = torch.arccos(cos)
    e = norm * (torch.sin(angle) + (math.pi - angle) * cos) / (2 * math.pi)
    edot = (math.pi - angle) / (2 * math.pi)
    return e, edot


def _quadrature_expectations(act, s11, s22, s12, n):
    """The same two expectations for any activation of `repro.core.activations`, by the piecewise
    quadrature of `repro.core.gaussian` (in NumPy, float64)."""
    args = [t.detach().cpu().numpy() for t in (s11, s22, s12)]
    e = bivariate_expectation(act.numpy, act.numpy, *args, n=n, kinks_f=act.kinks, kinks_g=act.kinks)
    edot = bivariate_expectation(act.derivative, act.derivative, *args, n=n, kinks_f=act.kinks,
                                 kinks_g=act.kinks)
    return (torch.as_tensor(v, dtype=s11.dtype, device=s11.device) for v in (e, edot))


def _second_moment(act, var, n):
    """E[sigma(u)^2] for u ~ N(0, var)."""
    m2 = gaussian_expectation(lambda z: act.numpy(z) ** 2, 0.0, var.detach().cpu().numpy(), n, act.kinks)
    return torch.as_tensor(m2, dtype=var.dtype, device=var.device)


def analytic_ntk(x1: torch.Tensor, x2: torch.Tensor | None = None, *, depth: int,
                 activation: str = "relu", bias: float = 0.0, weight_std: float = 1.0,
                 quadrature: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(Theta, Sigma): the infinite-width NTK and the output's GP covariance (NNGP), (N1, N2).

    For `repro.infinite_width_kernels.abc_parametrization.ParametrizedMLP(d_in, n, 1, depth, "ntk", activation,
    weight_std, bias)` as n -> infinity (the paper's Prop. 1 and Theorem 1, with `depth` hidden
    layers, i.e. the paper's L = depth + 1). With w ~ N(0, s^2), s = weight_std, the recursion
    reads Sigma^(l+1) = s^2 E[sigma sigma] + beta^2 and
    Theta^(l+1) = s^2 Theta^(l) E[sigma' sigma'] + E[sigma sigma] + beta^2, the paper's for s = 1.
    Computed in float64. Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    act = activations.get(activation)
    check_int("depth", depth)
    if weight_std <= 0 or bias < 0:
        raise ValueError(f"weight_std == {weight_std} must be > 0 and bias == {bias} >= 0")
    x1 = x1.double().flatten(1)
    x2 = x1 if x2 is None else x2.double().flatten(1)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 have {x1.shape[1]} and {x2.shape[1]} features, must match")
    d_in, s2, b2 = x1.shape[1], weight_std ** 2, bias ** 2
    dot = x1 @ x2.T / d_in                                   # (N1, N2)
    q1, q2 = (x1 * x1).sum(1) / d_in, (x2 * x2).sum(1) / d_in
    sigma, s11, s22 = s2 * dot + b2, s2 * q1 + b2, s2 * q2 + b2  # layer 1 covariances
    theta = dot + b2
    for _ in range(depth):
        s11b, s22b = s11[:, None].expand_as(sigma), s22[None, :].expand_as(sigma)
        if activation == "relu":
            e, edot = _relu_expectations(s11b, s22b, sigma)
            diag1, diag2 = s11 / 2, s22 / 2  # E[relu(u)^2] = var / 2
        else:
            e, edot = _quadrature_expectations(act, s11b, s22b, sigma, quadrature)
            diag1, diag2 = _second_moment(act, s11, quadrature), _second_moment(act, s22, quadrature)
        theta = s2 * theta * edot + e + b2
        sigma, s11, s22 = s2 * e + b2, s2 * diag1 + b2, s2 * diag2 + b2
    return theta, sigma


# --- training on the least-squares cost ---------------------------------------------------------
def least_squares_descent(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                          lr: float) -> torch.Tensor:
    """`steps` steps of full-batch gradient descent with rate `lr` on the paper's least-squares
    cost C = 1/(2N) sum_i |f(x_i) - y_i|^2 (Sec. 5), in place; returns f(x) before every step and
    after the last, (steps + 1, N) for y of shape (N,), (steps + 1, N, K) for y of shape (N, K).
    The outputs come from the forward pass of each step, so recording them costs nothing.
    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    check_int("steps", steps)
    if not lr > 0:
        raise ValueError(f"lr == {lr}, must be > 0")
    params = [p for p in model.parameters() if p.requires_grad]

    def outputs():
        f = model(x)
        return f.reshape(y.shape) if f.shape[-1] == 1 and y.ndim == 1 else f

    with torch.no_grad():
        f = outputs()
    if f.shape != y.shape:
        raise ValueError(f"the model's outputs {tuple(f.shape)} and y {tuple(y.shape)} must have the "
                         f"same shape")
    history = []
    for step in range(steps):
        with torch.enable_grad():
            f = outputs()
            cost = 0.5 * (f - y).pow(2).reshape(len(y), -1).sum(1).mean()
            if not torch.isfinite(cost):
                raise FloatingPointError(f"the cost became {cost.item()} at step {step}")
            grads = torch.autograd.grad(cost, params)
        history.append(f.detach())
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    with torch.no_grad():
        history.append(outputs())
    return torch.stack(history)


# --- linear (kernel) dynamics for least squares -----------------------------------------------
def kernel_eigen(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric kernel matrix.

    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
        raise ValueError(f"theta must be a square (N, N) matrix, got shape {tuple(theta.shape)}")
    lam, vec = torch.linalg.eigh((theta + theta.T) / 2)
    return lam.flip(0), vec.flip(1)


def decay_factors(lam: torch.Tensor, n_train: int, lr: float, t, *, flow: bool = False):
    """How much of the residual along an eigenvector of eigenvalue lam is left after t steps:
    (1 - lr lam / N)^t for gradient descent, exp(-lr lam t / N) for gradient flow (Sec. 5).

    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    if lr <= 0 or n_train < 1:
        raise ValueError(f"lr == {lr} must be > 0 and n_train == {n_train} >= 1")
    rate = lr * lam / n_train
    return torch.exp(-rate * t) if flow else (1 - rate) ** t


def dynamics_operator(theta_train: torch.Tensor, lr: float, t, theta_cross: torch.Tensor | None = None,
                      *, flow: bool = False) -> torch.Tensor:
    """A_t with f_t(x) = f_0(x) + A_t (y - f_0(X)) for a model with a fixed kernel trained on
    C = 1/(2N) sum_i |f(x_i) - y_i|^2 by t steps of gradient descent (or flow) with rate lr.

    On the training set (theta_cross None) A_t = V diag(1 - decay) V^T; at other points
    A_t = Theta(x, X) V diag((1 - decay) / lambda) V^T, shape (M, N).
    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    n = theta_train.shape[0]
    lam, vec = kernel_eigen(theta_train)
    decay = decay_factors(lam, n, lr, t, flow=flow)
    if theta_cross is None:
        return vec @ torch.diag(1 - decay) @ vec.T
    if theta_cross.ndim != 2 or theta_cross.shape[1] != n:
        raise ValueError(f"theta_cross must be (M, {n}), got shape {tuple(theta_cross.shape)}")
    tiny = lam.abs() < 1e-12 * lam.abs().max()
    gain = torch.where(tiny, lr * t / n * torch.ones_like(lam), (1 - decay) / torch.where(tiny, 1, lam))
    return theta_cross @ vec @ torch.diag(gain) @ vec.T


def linear_dynamics(theta_train, f0_train, y, lr: float, t, theta_cross=None, f0_cross=None, *,
                    flow: bool = False):
    """f_t on the training points (and on other points when theta_cross, f0_cross are given) of a
    model trained with a fixed kernel: the paper's Sec. 5 solution, for f of shape (N,) or (N, K).

    Returns f_t(X), or (f_t(X), f_t(x)). Introduced in:
    notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    if f0_train.shape != y.shape or f0_train.shape[0] != theta_train.shape[0]:
        raise ValueError(f"f0_train {tuple(f0_train.shape)} and y {tuple(y.shape)} must have the same "
                         f"shape, with {theta_train.shape[0]} rows")
    residual = y - f0_train
    f_train = f0_train + dynamics_operator(theta_train, lr, t, flow=flow) @ residual
    if theta_cross is None:
        return f_train
    if f0_cross is None:
        raise ValueError("f0_cross (the model at init on the other points) is needed with theta_cross")
    return f_train, f0_cross + dynamics_operator(theta_train, lr, t, theta_cross, flow=flow) @ residual


def gaussian_prediction(A: torch.Tensor, y: torch.Tensor, sigma_train: torch.Tensor,
                        sigma_cross: torch.Tensor, sigma_test_diag: torch.Tensor):
    """Mean and standard deviation of f_t(x) = f_0(x) + A (y - f_0(X)) when f_0 ~ GP(0, Sigma):
    the Gaussian law of the infinite-width network during training (Sec. 5, Fig. 2).

    `sigma_cross` is Sigma(x, X), (M, N); `sigma_test_diag` is Sigma(x, x), (M,).
    Introduced in: notebooks/infinite-width-kernels/neural-tangent-kernel.ipynb
    """
    mean = A @ y
    var = sigma_test_diag - 2 * (A * sigma_cross).sum(1) + ((A @ sigma_train) * A).sum(1)
    return mean, torch.sqrt(torch.clamp(var, min=0.0))
