"""Free-form injective flows (FIF): an unconstrained encoder f: R^D -> R^d and decoder
g: R^d -> R^D (d < D) trained as a density on a learned d-dimensional manifold.

The model's density on its manifold at x = g(z) is p_Z(z) / sqrt(det(J^T J)) with J = g'(z) (D, d),
so the negative log-likelihood of a data point, evaluated at its code z = f(x), is

    NLL(x) = -log p_Z(f(x)) + 1/2 log det(J^T J).                                   (exact)

The log-determinant is costly and its gradient needs the pseudo-inverse of J. FIF uses the encoder
as that pseudo-inverse: with f'(x) (d, D) ~ J^+, the gradient of 1/2 log det(f'(x) f'(x)^T),
which equals -1/2 log det(J^T J) when f'(x) = J^+, is tr(d f'(x) . J^+), estimated without bias
by the Hutchinson surrogate

    S(x) = v^T f'(x) SG(g'(z) v),   v in R^d, E[v v^T] = I,

whose gradient (the stop-gradient SG keeps the decoder factor fixed) has that trace as its mean.
The FIF loss is  beta * |x - g(f(x))|^2 - log p_Z(f(x)) - S(x).  The "naive" loss replaces -S by
the exact decoder log-determinant above, with gradients through g'(z): the paper's divergent case.

Shapes: x (B, D), z (B, d), v (B, d).
Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.autograd import forward_ad

from repro.core.validation import check_int, check_positive


def _check_batch(x: torch.Tensor, name: str = "x") -> None:
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"{name}.shape == {tuple(x.shape)}, must be (batch, dim) with batch >= 1")


def hutchinson_vectors(z: torch.Tensor, k: int = 1,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """k probe vectors per row of z, shape (B, d, k): orthonormal columns scaled by sqrt(d), so that
    E[v v^T] = I for each column and k = d gives the exact trace.

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    _check_batch(z, "z")
    b, d = z.shape
    check_int("k", k)
    if k > d:
        raise ValueError(f"k == {k}, must be <= the latent dimension {d}")
    g = torch.randn(b, d, k, generator=generator, dtype=z.dtype).to(z.device)
    q = torch.linalg.qr(g).Q  # (B, d, k), orthonormal columns, uniformly rotated
    return q * math.sqrt(d)


def decoder_jvp(decoder: Callable, z: torch.Tensor, v: torch.Tensor):
    """(g(z), g'(z) v) by forward-mode differentiation, shapes (B, D) and (B, D).

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    with forward_ad.dual_level():
        out = decoder(forward_ad.make_dual(z, v))
        x1, jv = forward_ad.unpack_dual(out)
    return x1, jv


def volume_surrogate(x: torch.Tensor, encoder: Callable, decoder: Callable, k: int = 1,
                     generator: torch.Generator | None = None):
    """(S, z, x1): the Hutchinson surrogate S (B,) = mean_k v_k^T f'(x) SG(g'(z) v_k), the code
    z = f(x) (B, d) and the reconstruction x1 = g(z) (B, D).

    The gradient of S has mean tr(d f'(x) . g'(z)), the gradient of 1/2 log det(f'(x) f'(x)^T) when
    g'(z) is the pseudo-inverse of f'(x). Its value is not a log-determinant (it is about d).
    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    _check_batch(x)
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    z = encoder(x)
    _check_batch(z, "encoder(x)")
    vs = hutchinson_vectors(z, k, generator)
    s, x1 = 0.0, None
    for j in range(k):
        v = vs[..., j]
        x1_j, gv = decoder_jvp(decoder, z, v)
        x1 = x1_j if x1 is None else x1
        (vf,) = torch.autograd.grad(z, x, v, create_graph=True)  # v^T f'(x), (B, D)
        s = s + (vf * gv.detach()).sum(-1) / k
    return s, z, x1


def decoder_jacobian(decoder: Callable, z: torch.Tensor) -> torch.Tensor:
    """g'(z) as a (B, D, d) tensor, one forward-mode pass per latent dimension; differentiable.

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    _check_batch(z, "z")
    cols = [decoder_jvp(decoder, z, torch.eye(z.shape[1], dtype=z.dtype, device=z.device)[i]
                        .expand_as(z))[1] for i in range(z.shape[1])]
    return torch.stack(cols, -1)


def decoder_half_log_det(decoder: Callable, z: torch.Tensor) -> torch.Tensor:
    """1/2 log det(g'(z)^T g'(z)) per row (B,): the log of the volume element of the manifold.

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    jac = decoder_jacobian(decoder, z)
    return 0.5 * torch.linalg.slogdet(jac.transpose(1, 2) @ jac)[1]


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row (B,)."""
    return -0.5 * (z ** 2).sum(-1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def manifold_nll(x: torch.Tensor, encoder: Callable, decoder: Callable) -> torch.Tensor:
    """Exact NLL (B,) of the model's density on its manifold, evaluated at the code z = f(x):
    -log p_Z(z) + 1/2 log det(g'(z)^T g'(z)), a standard normal p_Z.

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    _check_batch(x)
    z = encoder(x)
    return -standard_normal_log_prob(z) + decoder_half_log_det(decoder, z)


def fif_loss(x: torch.Tensor, encoder: Callable, decoder: Callable, beta: float, k: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean FIF loss: beta |x - g(f(x))|^2 - log p_Z(f(x)) - S(x), S the Hutchinson surrogate.

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    check_positive("beta", beta)
    s, z, x1 = volume_surrogate(x, encoder, decoder, k, generator)
    recon = ((x - x1) ** 2).sum(-1)
    return (beta * recon - standard_normal_log_prob(z) - s).mean()


def naive_loss(x: torch.Tensor, encoder: Callable, decoder: Callable, beta: float) -> torch.Tensor:
    """Mean naive loss: beta |x - g(f(x))|^2 + the exact manifold NLL at z = f(x), with gradients
    through the decoder's log-determinant (the objective the paper shows can diverge).

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    check_positive("beta", beta)
    _check_batch(x)
    z = encoder(x)
    recon = ((x - decoder(z)) ** 2).sum(-1)
    nll = -standard_normal_log_prob(z) + decoder_half_log_det(decoder, z)
    return (beta * recon + nll).mean()


def reconstruction_loss(x: torch.Tensor, encoder: Callable, decoder: Callable,
                        beta: float = 1.0) -> torch.Tensor:
    """Mean beta |x - g(f(x))|^2 alone: a plain autoencoder, the control with no likelihood.

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """
    check_positive("beta", beta)
    _check_batch(x)
    return beta * ((x - decoder(encoder(x))) ** 2).sum(-1).mean()


class InjectiveFlow(torch.nn.Module):
    """An encoder/decoder pair with no architectural constraint; `log_prob(x)` is the density on
    the decoder's manifold at the code of x, `sample(n)` decodes standard normal codes.

    Introduced in: notebooks/normalizing-flows/lifting-architectural-constraints-of-injective-flows.ipynb
    """

    def __init__(self, encoder: torch.nn.Module, decoder: torch.nn.Module, latent_dim: int):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim = check_int("latent_dim", latent_dim)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -manifold_nll(x, self.encoder, self.decoder)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        check_int("n", n)
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype).to(p.device)
        return self.decoder(z)
