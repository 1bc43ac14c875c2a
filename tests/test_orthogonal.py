import math

import pytest
import torch

from repro.optimization import orthogonal
from repro.optimization.orthogonal import Muon, Pion

SHAPES = [(12, 7), (7, 12), (9, 9)]   # tall, wide, square


def _matrix(shape, seed=0, condition=10.0):
    """A float64 matrix with singular values spread over [1, condition] and known U, V."""
    g = torch.Generator().manual_seed(seed)
    m, n = shape
    U, _ = torch.linalg.qr(torch.randn(m, min(m, n), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, min(m, n), generator=g, dtype=torch.float64))
    S = torch.linspace(1.0, condition, min(m, n), dtype=torch.float64)
    return U @ torch.diag(S) @ V.T, U @ V.T


@pytest.mark.parametrize("shape", SHAPES)
def test_cubic_newton_schulz_converges_to_polar_factor(shape):
    G, polar = _matrix(shape)
    torch.testing.assert_close(orthogonal.newton_schulz_cubic(G, steps=40), polar, rtol=0, atol=1e-12)
    torch.testing.assert_close(orthogonal.spectral_steepest_direction(G), polar, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_quintic_newton_schulz_lands_in_its_band(shape):
    G, polar = _matrix(shape, condition=30.0)
    X = orthogonal.newton_schulz_quintic(G)
    assert X.shape == G.shape and X.dtype == G.dtype
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    # the scalar map sends [0.005, 1] into [0.68, 1.16] in five steps; singular vectors are kept
    assert S.min() > 0.68 and S.max() < 1.16
    torch.testing.assert_close(U @ Vh, polar, rtol=0, atol=1e-10)
    # in bfloat16 (as in torch.optim.Muon) torch's docstring band (0.5, 1.5) holds
    S16 = torch.linalg.svdvals(orthogonal.newton_schulz_quintic(G, dtype=torch.bfloat16))
    assert S16.min() > 0.5 and S16.max() < 1.5


def test_quintic_matches_torch_private_routine():
    from torch.optim._muon import _zeropower_via_newtonschulz
    for shape in SHAPES:
        G = _matrix(shape, seed=3)[0].float()
        ours = orthogonal.newton_schulz_quintic(G, dtype=torch.bfloat16)
        ref = _zeropower_via_newtonschulz(G, orthogonal.MUON_COEFFICIENTS, 5, 1e-7)
        torch.testing.assert_close(ours, ref.float(), rtol=0, atol=0)


def test_polar_factor_maximizes_inner_product_over_spectral_ball():
    G, _ = _matrix((8, 5), seed=1)
    X = orthogonal.spectral_steepest_direction(G)
    best = (G * X).sum()
    torch.testing.assert_close(best, torch.linalg.matrix_norm(G, ord="nuc"))
    assert torch.linalg.matrix_norm(X, ord=2) <= 1 + 1e-12
    g = torch.Generator().manual_seed(2)
    for _ in range(200):   # random points of the ball ||Y||_2 <= 1 never do better
        Y = torch.randn(8, 5, generator=g, dtype=torch.float64)
        Y = Y / torch.linalg.matrix_norm(Y, ord=2)
        assert (G * Y).sum() <= best
    # nor does the Euclidean direction G / ||G||_2 (equal only when all singular values are equal)
    assert (G * G).sum() / torch.linalg.matrix_norm(G, ord=2) < best


@pytest.mark.parametrize("rule", ["original", "match_rms_adamw"])
def test_muon_scale_matches_torch(rule):
    from torch.optim._muon import _adjust_lr
    for shape in [(64, 16), (16, 64), (32, 32)]:
        assert orthogonal.muon_scale(shape, rule) == pytest.approx(_adjust_lr(1.0, rule, torch.Size(shape)))
    assert orthogonal.muon_scale((64, 16)) == 2.0 and orthogonal.muon_scale((16, 64)) == 1.0
    # 0.2 sqrt(max(A, B)) gives an orthogonal update of any shape an RMS of 0.2
    X = orthogonal.spectral_steepest_direction(_matrix((40, 10))[0])
    rms = (orthogonal.muon_scale(X.shape, "match_rms_adamw") * X).pow(2).mean().sqrt()
    assert rms.item() == pytest.approx(0.2)


def _train(make_opt, steps=6, dtype=torch.float32, shape=(12, 7)):
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(*shape, dtype=dtype) * 0.3)
    x, y = torch.randn(32, shape[1], dtype=dtype), torch.randn(32, shape[0], dtype=dtype)
    opt, trajectory = make_opt([W]), []
    for _ in range(steps):
        opt.zero_grad()
        ((x @ W.T - y) ** 2).mean().backward()
        opt.step()
        trajectory.append(W.detach().clone())
    return torch.stack(trajectory)


@pytest.mark.parametrize("nesterov, scale", [(True, "original"), (False, "match_rms_adamw")])
@pytest.mark.parametrize("shape", [(12, 7), (7, 12)])
def test_muon_matches_torch_step_by_step(nesterov, scale, shape):
    kw = dict(lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=0.1)
    ours = _train(lambda p: Muon(p, scale=scale, **kw), shape=shape)
    ref = _train(lambda p: torch.optim.Muon(p, adjust_lr_fn=scale, **kw), shape=shape)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_muon_against_plain_reference_in_float64():
    """The update written out: B = mu B + (1 - mu) g, D = g + mu (B - g), theta = (1 - lr wd) theta
    - lr sqrt(max(1, A/B)) U V^T, with the exact polar factor."""
    lr, mu, wd = 0.05, 0.9, 0.1
    ours = _train(lambda p: Muon(p, lr=lr, momentum=mu, weight_decay=wd,
                                 orthogonalize=orthogonal.spectral_steepest_direction),
                  dtype=torch.float64)
    torch.manual_seed(0)
    W = torch.randn(12, 7, dtype=torch.float64) * 0.3
    x, y = torch.randn(32, 7, dtype=torch.float64), torch.randn(32, 12, dtype=torch.float64)
    B = torch.zeros_like(W)
    for t in range(ours.shape[0]):
        g = 2 * (x @ W.T - y).T @ x / y.numel()
        B = mu * B + (1 - mu) * g
        U, _, Vh = torch.linalg.svd(g + mu * (B - g), full_matrices=False)
        W = (1 - lr * wd) * W - lr * math.sqrt(12 / 7) * U @ Vh
        torch.testing.assert_close(ours[t], W, rtol=1e-12, atol=1e-12)


def test_split_for_muon():
    model = torch.nn.ModuleDict(dict(embed=torch.nn.Embedding(10, 4), hidden=torch.nn.Linear(4, 4),
                                     head=torch.nn.Linear(4, 10)))
    muon, other = orthogonal.split_for_muon(model)
    assert [p is model["hidden"].weight for p in muon] == [True]
    assert len(other) == 4


def test_pion_preserves_singular_values_and_decreases_loss():
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float64))
    S0 = torch.linalg.svdvals(W.detach())
    # a target with the same singular values, reachable by rotations (determinant +1: exp(skew)
    # never reflects)
    def rotation(n):
        Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
        Q[:, 0] *= torch.sign(torch.det(Q))
        return Q
    target = rotation(6) @ W.detach() @ rotation(4)
    opt = Pion([W], lr=0.05)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = ((W - target) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # 300 products of orthogonal factors: round-off of a few float64 ulps per step
    torch.testing.assert_close(torch.linalg.svdvals(W.detach()), S0, rtol=1e-11, atol=0)
    assert losses[-1] < 0.01 * losses[0]


def test_pion_against_plain_reference():
    torch.manual_seed(1)
    W0, target = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    lr, (b1, b2), eps, c = 0.05, (0.9, 0.999), 1e-8, 0.2
    W = torch.nn.Parameter(W0.clone())
    opt = Pion([W], lr=lr, rms=c)
    ref = W0.clone()
    m = {"out": 0, "in": 0}
    v = {"out": 0, "in": 0}
    for t in range(1, 6):
        opt.zero_grad()
        ((W - target) ** 2).sum().backward()
        opt.step()
        g = 2 * (ref - target)
        A = {}
        for side, G in [("out", g @ ref.T - ref @ g.T), ("in", ref.T @ g - g.T @ ref)]:
            m[side] = b1 * m[side] + (1 - b1) * G
            v[side] = b2 * v[side] + (1 - b2) * G * G
            A[side] = -(m[side] / (1 - b1 ** t)) / ((v[side] / (1 - b2 ** t)).sqrt() + eps)
        alpha = c * math.sqrt(15) / ((A["out"] @ ref + ref @ A["in"]).norm() + eps)
        ref = (torch.linalg.matrix_exp(lr * alpha * A["out"]) @ ref
               @ torch.linalg.matrix_exp(lr * alpha * A["in"]))
        torch.testing.assert_close(W.detach(), ref, rtol=1e-12, atol=1e-12)


def test_pion_second_order_exponential_nearly_preserves_spectrum():
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float64))
    S0 = torch.linalg.svdvals(W.detach())
    opt = Pion([W], lr=0.01, exp="second_order")
    for _ in range(20):
        opt.zero_grad()
        (W.sum() ** 2).backward()
        opt.step()
    drift = (torch.linalg.svdvals(W.detach()) - S0).abs().max()
    assert 0 < drift < 1e-3


def test_closure_and_missing_grad():
    a = torch.nn.Parameter(torch.ones(3, 2))
    b = torch.nn.Parameter(torch.ones(3, 2))
    for opt in (Muon([a, b], ns_dtype=None), Pion([a, b])):
        def closure():
            opt.zero_grad()
            loss = (a ** 2).sum()
            loss.backward()
            return loss
        assert opt.step(closure).item() > 0
        assert torch.equal(b.detach(), torch.ones(3, 2)) and b not in opt.state


def test_muon_decreases_a_convex_loss():
    traj = _train(lambda p: Muon(p, lr=0.02, weight_decay=0.0), steps=60, dtype=torch.float64)
    torch.manual_seed(0)
    W0 = torch.randn(12, 7, dtype=torch.float64) * 0.3
    x, y = torch.randn(32, 7, dtype=torch.float64), torch.randn(32, 12, dtype=torch.float64)
    loss = lambda W: ((x @ W.T - y) ** 2).mean()  # noqa: E731
    assert loss(traj[-1]) < 0.8 * loss(W0)


@pytest.mark.parametrize("make, match", [
    (lambda p: Muon(p, lr=0.0), "lr"), (lambda p: Muon(p, momentum=1.0), "momentum"),
    (lambda p: Muon(p, weight_decay=-1.0), "weight_decay"), (lambda p: Muon(p, scale="x"), "scale"),
    (lambda p: Muon(p, ns_steps=0), "ns_steps"), (lambda p: Pion(p, lr=-1.0), "lr"),
    (lambda p: Pion(p, betas=(0.9, 1.0)), "betas"), (lambda p: Pion(p, exp="cayley"), "exp"),
    (lambda p: Pion(p, rms=0.0), "rms"),
    (lambda p: Muon([torch.nn.Parameter(torch.ones(3))]), "matrices")])
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.nn.Parameter(torch.ones(3, 2))])


def test_functions_reject_non_matrices():
    for f in (orthogonal.newton_schulz_quintic, orthogonal.newton_schulz_cubic,
              orthogonal.spectral_steepest_direction):
        with pytest.raises(ValueError, match="matrix"):
            f(torch.ones(2, 2, 2))


def test_every_public_name_points_to_a_notebook():
    import re
    for name, obj in vars(orthogonal).items():
        if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == orthogonal.__name__:
            assert re.search(r"Introduced in: notebooks/optimization/\S+\.ipynb", obj.__doc__ or ""), name


def test_second_order_exponential_is_orthogonal_up_to_x4_over_4():
    torch.manual_seed(2)
    B = torch.randn(7, 7, dtype=torch.float64)
    X = 0.3 * (B - B.T)
    E2 = orthogonal.PION_EXPS["second_order"](X)
    X4 = torch.linalg.matrix_power(X, 4)
    torch.testing.assert_close(E2.T @ E2, torch.eye(7, dtype=torch.float64) + X4 / 4,
                               rtol=0, atol=1e-12)


def test_orthogonal_sgdm_swaps_momentum_and_orthogonalization():
    from repro.optimization.orthogonal import Combined, OrthogonalSGDM, frobenius_direction
    g = torch.Generator().manual_seed(4)
    grads = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    polar = orthogonal.spectral_steepest_direction

    def run(cls, momentum, nesterov=False):
        p = torch.nn.Parameter(torch.zeros(6, 4, dtype=torch.float64))
        opt = cls([p], lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=0.0,
                  orthogonalize=polar)
        for G in grads:
            p.grad = G.clone()
            opt.step()
        return p.detach()

    # without momentum the two orders are the same method
    torch.testing.assert_close(run(OrthogonalSGDM, 0.0), run(Muon, 0.0), rtol=0, atol=1e-14)
    # with momentum: the average of the orthogonalized gradients, by hand
    mu, B, expected = 0.9, torch.zeros(6, 4, dtype=torch.float64), torch.zeros(6, 4, dtype=torch.float64)
    for G in grads:
        B = mu * B + (1 - mu) * polar(G)
        expected -= 0.1 * muon_scale_for((6, 4)) * B
    torch.testing.assert_close(run(OrthogonalSGDM, mu), expected, rtol=0, atol=1e-14)
    assert not torch.allclose(run(OrthogonalSGDM, mu), run(Muon, mu))
    # normalized SGD direction, and Combined steps both optimizers on one closure call
    G = grads[0]
    torch.testing.assert_close(frobenius_direction(G).norm(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(frobenius_direction(torch.zeros(2, 2)), torch.zeros(2, 2))
    w, b = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(3))
    opt = Combined(Muon([w], lr=0.1, ns_dtype=None), torch.optim.SGD([b], lr=0.1))
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (w.sum() + b.sum()) ** 2
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert len(calls) == 1 and loss.item() == 81.0
    assert len(opt.param_groups) == 2 and not torch.equal(w, torch.ones(3, 2))
    assert torch.allclose(b, torch.full((3,), 1 - 0.1 * 18))


def muon_scale_for(shape):
    return orthogonal.muon_scale(shape)


def test_noisy_quadratic_without_noise_decreases_the_gradient():
    norms = orthogonal.noisy_quadratic_dual_norms(200, 0.01, 0.5, seeds=[0, 1], sigma=0.0)
    assert norms.shape == (2, 200)
    torch.testing.assert_close(norms[0], norms[1])          # no noise: the seeds agree
    assert norms[0, -1] < 0.2 * norms[0, 0]
    other = orthogonal.noisy_quadratic_dual_norms(50, 0.01, 0.5, seeds=[0], order="orthogonalize_first")
    assert other.shape == (1, 50) and torch.isfinite(other).all()
    with pytest.raises(ValueError):
        orthogonal.noisy_quadratic_dual_norms(10, 0.01, 0.5, order="sideways")


def test_noisy_quadratic_momentum_error_and_constants():
    # no noise, no momentum: the buffer is the gradient itself
    grads, errors = orthogonal.noisy_quadratic_dual_norms(20, 0.01, 0.0, sigma=0.0,
                                                           momentum_error=True)
    assert errors.abs().max() < 1e-12 and grads.shape == errors.shape == (1, 20)
    c = orthogonal.noisy_quadratic_constants(start_distance=2.0)
    assert c["rho"] == math.sqrt(8) and c["sigma_total"] == math.sqrt(128)
    # delta0 = f(X_0) - min f, from the first gradient: f = <D, H D> / 2 and grad = -H D
    g = torch.Generator().manual_seed(1000)
    A = torch.randn(16, 16, generator=g, dtype=torch.float64) / 4
    H = A.T @ A + 0.1 * torch.eye(16, dtype=torch.float64)
    torch.randn(16, 8, generator=g, dtype=torch.float64)
    D = torch.randn(16, 8, generator=g, dtype=torch.float64)
    D = 2.0 * D / torch.linalg.matrix_norm(D, ord=2)
    assert math.isclose(c["delta0"], 0.5 * (D * (H @ D)).sum().item(), rel_tol=1e-12)
    first = orthogonal.noisy_quadratic_dual_norms(1, 0.01, 0.0, sigma=0.0, start_distance=2.0)
    assert math.isclose(first.item(), torch.linalg.matrix_norm(H @ D, ord="nuc").item(), rel_tol=1e-12)
    # L bounds ||H E||_* / ||E||_2 for random E
    E = torch.randn(100, 16, 8, generator=g, dtype=torch.float64)
    ratio = torch.linalg.matrix_norm(H @ E, ord="nuc") / torch.linalg.matrix_norm(E, ord=2)
    assert ratio.max() <= c["L"]
