import pytest
import torch

from repro.optimization.shampoo import Shampoo, inverse_root


def _spd(n, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    return A @ A.T + n * torch.eye(n, dtype=torch.float64)


def test_inverse_root_inverts_the_power():
    A = _spd(6, 0)
    X = inverse_root(A, 4)
    torch.testing.assert_close(torch.linalg.matrix_power(X, 4) @ A,
                               torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-10)


def test_two_steps_follow_the_update_equation():
    g = torch.Generator().manual_seed(1)
    W0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    b0 = torch.randn(5, generator=g, dtype=torch.float64)
    G = [torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    gb = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(2)]
    W, b = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(b0.clone())
    lr, eps = 0.3, 1e-2
    opt = Shampoo([W, b], lr=lr, eps=eps)
    L, R, v = eps * torch.eye(5, dtype=torch.float64), eps * torch.eye(3, dtype=torch.float64), \
        torch.full((5,), eps, dtype=torch.float64)
    W_ref, b_ref = W0.clone(), b0.clone()
    for Gt, gt in zip(G, gb):
        W.grad, b.grad = Gt.clone(), gt.clone()
        opt.step()
        L, R, v = L + Gt @ Gt.T, R + Gt.T @ Gt, v + gt ** 2
        # L^{-1/4} and R^{-1/4} by the matrix power of the eigen-decomposition's inverse 4th root
        Lq = torch.linalg.matrix_power(torch.linalg.inv(L), 1)
        Lr, Rr = (torch.linalg.eigh(M) for M in (L, R))
        Lm = Lr.eigenvectors @ torch.diag(Lr.eigenvalues ** -0.25) @ Lr.eigenvectors.T
        Rm = Rr.eigenvectors @ torch.diag(Rr.eigenvalues ** -0.25) @ Rr.eigenvectors.T
        torch.testing.assert_close(torch.linalg.matrix_power(Lm, 4), Lq)
        W_ref = W_ref - lr * Lm @ Gt @ Rm
        b_ref = b_ref - lr * gt / v.sqrt()
        torch.testing.assert_close(W.detach(), W_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(b.detach(), b_ref, rtol=0, atol=1e-12)


def test_preconditioner_is_not_diagonal_and_whitens_a_fixed_gradient():
    # for a constant gradient G = U S V^T, t steps give L = eps I + t G G^T: the step tends to
    # U V^T / sqrt(t), the same for every singular value (a diagonal method would not rotate)
    G = torch.tensor([[3.0, 1.0], [1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    W = torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    opt = Shampoo([W], lr=1.0, eps=1e-12)
    W.grad = G.clone()
    opt.step()
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    torch.testing.assert_close(-W.detach(), U @ Vh, rtol=0, atol=1e-6)


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        Shampoo([torch.nn.Parameter(torch.zeros(2, 2))], lr=-1.0)
    p = torch.nn.Parameter(torch.zeros(2, 2, 2))
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="vectors and matrices"):
        Shampoo([p], lr=0.1).step()
