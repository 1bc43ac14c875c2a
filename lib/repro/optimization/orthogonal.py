"""Orthogonalized updates for matrix parameters: Newton-Schulz iterations, Muon, Pion, and the
spectral-norm trust-region step they approximate.

For a matrix G = U S V^T (thin SVD), the orthogonalized matrix is polar(G) = U V^T: every nonzero
singular value set to one.

- `newton_schulz_cubic` is the classical iteration X <- (3 X - X X^T X) / 2, which converges to
  U V^T when the spectral norm of the start is below sqrt(3).
- `newton_schulz_quintic` is the iteration Muon uses, X <- a X + b (X X^T) X + c (X X^T)^2 X with
  (a, b, c) = (3.4445, -4.7750, 2.0315) from Keller Jordan's Muon (the constants and the order of
  operations of `torch.optim.Muon`, torch/optim/_muon.py). It does not converge to U V^T: its slope
  at zero is large so that five steps lift small singular values, and it leaves them in a band. The
  scalar map iterated five times sends every x in [0.005, 1] into [0.68, 1.16] (our computation;
  torch's docstring says "roughly Uniform(0.5, 1.5)").
- `spectral_steepest_direction` is the exact U V^T by SVD: by von Neumann's trace inequality it
  maximizes <G, X> over the spectral-norm ball ||X||_2 <= 1, with maximum ||G||_* (the nuclear
  norm). This is the trust-region view of Kovalev, "Understanding Gradient Orthogonalization for
  Deep Learning via Non-Euclidean Trust-Region Optimization" (arXiv 2503.12645): the orthogonalized
  step is the first-order trust-region step when the region is a spectral-norm ball. Read: the
  title and the abstract-level summaries only; section and equation numbers unverified.

Muon (`Muon`) follows `torch.optim.Muon` (PyTorch 2.9 source): momentum kept as an exponential
average B_t = mu B_{t-1} + (1 - mu) G_t, Nesterov direction G_t + mu (B_t - G_t), the quintic
iteration, decoupled weight decay theta <- (1 - lr wd) theta, and a shape-dependent scale of the
step: "original" (Keller Jordan) sqrt(max(1, A / B)) for an A x B matrix, or "match_rms_adamw"
(Moonshot, "Muon is Scalable for LLM Training", arXiv 2502.16982) 0.2 sqrt(max(A, B)), which gives
the update the RMS of an AdamW update. Muon is for the 2-D weights of hidden layers; embeddings,
the output head, biases and gains use AdamW (`split_for_muon`). The variant used in Mehta et al.,
"Muon: Training and Trade-offs with Latent Attention and MoE" (arXiv 2509.24406v1): its abstract
gives the Newton-Schulz coefficients (3.4445, -4.7750, 2.0315), which we use; its algorithm box
(momentum form, scale rule, weight decay) we could not read: unverified.

Pion (`Pion`) follows Shi et al., "Pion: A Spectrum-Preserving Optimizer via Orthogonal Equivalence
Transformation" (arXiv 2605.12492v1), Sec. 2.2 and 2.4, read through a secondary summary of its
update (the paper's own equations unverified): the gradient g of an (d_out x d_in) weight W is
projected onto skew-symmetric generators on both sides, G_out = g W^T - W g^T and
G_in = W^T g - g^T W; each has Adam moments (momentum in the Lie algebra), giving directions
A = -m / (sqrt(v) + eps); a per-matrix scale alpha = c sqrt(d_out d_in) / (||A_out W + W A_in||_F +
eps) fixes the RMS of the first-order change to lr c; and W <- E(lr alpha A_out) W E(lr alpha A_in).
With E the matrix exponential both factors are orthogonal and the singular values of W never
change; the paper uses the second-order truncation I + X + X^2 / 2 for speed, which preserves them
only to O(lr^3) per step (`exp="second_order"`).
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_choice, check_int, check_positive
from .common import closure_loss, check_betas, check_fraction, check_nonnegative

MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # (a, b, c): Keller Jordan's Muon, torch.optim.Muon
MUON_SCALES = ("original", "match_rms_adamw")


def _check_matrix(G: torch.Tensor) -> None:
    if G.dim() != 2:
        raise ValueError(f"G.shape == {tuple(G.shape)}, must be a matrix (2 dimensions)")


def newton_schulz_quintic(G: torch.Tensor, steps: int = 5, coefficients=MUON_COEFFICIENTS,
                          eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Muon's approximation of U V^T for G = U S V^T, of G's shape (m, n) and dtype.

    G is divided by its Frobenius norm (so its spectral norm is <= 1), transposed when tall so that
    X X^T is the smaller Gram matrix, and iterated `steps` times in `dtype` (None: G's dtype;
    torch.optim.Muon uses bfloat16), with torch's order of operations so that results agree bit for
    bit in bfloat16.
    Introduced in: notebooks/optimization/muon.ipynb"""
    _check_matrix(G)
    check_int("steps", steps, minimum=0)
    a, b, c = coefficients
    X = G.to(dtype or G.dtype)
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        gram = X @ X.T                                          # (k, k), k = min(m, n)
        X = torch.addmm(X, torch.addmm(gram, gram, gram, beta=b, alpha=c), X, beta=a)
    return (X.T if tall else X).to(G.dtype)


def newton_schulz_cubic(G: torch.Tensor, steps: int = 30, eps: float = 1e-7) -> torch.Tensor:
    """The classical Newton-Schulz iteration X <- (3 X - X X^T X) / 2 from X_0 = G / ||G||_F,
    which converges (quadratically near the end) to U V^T for G = U S V^T of full rank;
    shape (m, n).
    Introduced in: notebooks/optimization/muon.ipynb"""
    _check_matrix(G)
    check_int("steps", steps, minimum=0)
    tall = G.size(0) > G.size(1)
    X = G.T if tall else G
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        X = 1.5 * X - 0.5 * (X @ X.T) @ X
    return X.T if tall else X


def spectral_steepest_direction(G: torch.Tensor) -> torch.Tensor:
    """U V^T for G = U S V^T by SVD: the X that maximizes <G, X> over ||X||_2 <= 1, the step of a
    trust region in the spectral norm; <G, U V^T> = ||G||_* (the nuclear norm). Shape (m, n).
    Introduced in: notebooks/optimization/understanding-gradient-orthogonalization-for-deep-learning.ipynb"""
    _check_matrix(G)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def muon_scale(shape, rule: str = "original") -> float:
    """The factor Muon multiplies lr by for an (A, B) matrix: "original" sqrt(max(1, A / B)),
    "match_rms_adamw" 0.2 sqrt(max(A, B)) (the update's RMS then matches AdamW's, about 0.2).
    Introduced in: notebooks/optimization/muon.ipynb"""
    check_choice("rule", rule, MUON_SCALES)
    A, B = shape[:2]
    return math.sqrt(max(1.0, A / B)) if rule == "original" else 0.2 * math.sqrt(max(A, B))


def split_for_muon(model: torch.nn.Module, exclude=("embed", "head")) -> tuple[list, list]:
    """(matrices for Muon, the rest for AdamW): the 2-D parameters whose name contains none of
    `exclude` (embeddings and the output head are matrices but are trained by AdamW), and all
    others.
    Introduced in: notebooks/optimization/muon.ipynb"""
    muon, other = [], []
    for name, p in model.named_parameters():
        (muon if p.dim() == 2 and not any(word in name for word in exclude) else other).append(p)
    return muon, other


def _check_matrices(params) -> list:
    params = list(params)
    for group in params if params and isinstance(params[0], dict) else [{"params": params}]:
        for p in group["params"]:
            if p.dim() != 2:
                raise ValueError(f"a parameter of shape {tuple(p.shape)}: only matrices (2-D) "
                                 "are allowed; train the others with AdamW (split_for_muon)")
    return params


class Muon(torch.optim.Optimizer):
    """Muon for matrix parameters, the same steps as `torch.optim.Muon` when `ns_dtype` is bfloat16:
    B_t = mu B_{t-1} + (1 - mu) G_t; D_t = G_t + mu (B_t - G_t) (Nesterov) or B_t;
    O_t = newton_schulz_quintic(D_t); theta <- (1 - lr wd) theta - lr muon_scale(shape) O_t.
    `ns_dtype=None` runs the iteration in the parameter's dtype (float64 for exact tests);
    `orthogonalize` may be replaced by any map G -> approx U V^T
    (e.g. `spectral_steepest_direction`).
    Introduced in: notebooks/optimization/muon.ipynb"""

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1,
                 scale: str = "original", ns_steps: int = 5, ns_dtype=torch.bfloat16,
                 orthogonalize=None):
        check_positive("lr", lr)
        check_fraction("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        check_choice("scale", scale, MUON_SCALES)
        check_int("ns_steps", ns_steps)
        super().__init__(_check_matrices(params), dict(
            lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, scale=scale))
        self.orthogonalize = orthogonalize or (
            lambda G: newton_schulz_quintic(G, steps=ns_steps, dtype=ns_dtype))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                B = state["momentum_buffer"].lerp_(g, 1 - mu)
                direction = g.lerp(B, mu) if group["nesterov"] else B
                p.mul_(1 - lr * group["weight_decay"])
                p.sub_(lr * muon_scale(p.shape, group["scale"]) * self.orthogonalize(direction))
        return loss


def _second_order_exp(X: torch.Tensor) -> torch.Tensor:
    """I + X + X^2 / 2: orthogonal up to O(||X||^3) when X is skew-symmetric."""
    return torch.eye(X.size(0), dtype=X.dtype, device=X.device) + X + 0.5 * X @ X


PION_EXPS = {"exact": torch.linalg.matrix_exp, "second_order": _second_order_exp}


class Pion(torch.optim.Optimizer):
    """Pion: W <- E(lr alpha A_out) W E(lr alpha A_in), rotations on both sides of each weight
    matrix W (d_out, d_in), so that W keeps its singular values.

    A_out, A_in are Adam directions -m / (sqrt(v) + eps) of the skew-symmetric generators
    G_out = g W^T - W g^T (d_out, d_out) and G_in = W^T g - g^T W (d_in, d_in) of the gradient g;
    alpha = rms sqrt(d_out d_in) / (||A_out W + W A_in||_F + eps) sets the RMS of the first-order
    change to lr rms. `exp="exact"` (torch.linalg.matrix_exp) preserves the spectrum to round-off;
    `"second_order"` is the paper's cheaper truncation. The default `rms` = 0.2 is ours (the
    paper's constant is unverified). Only for matrices: other parameters use AdamW.
    Introduced in: notebooks/optimization/pion.ipynb"""

    def __init__(self, params, lr=0.02, betas=(0.9, 0.999), eps=1e-8, rms=0.2, exp="exact"):
        check_positive("lr", lr)
        check_nonnegative("eps", eps)
        check_positive("rms", rms)
        check_choice("exp", exp, PION_EXPS)
        super().__init__(_check_matrices(params), dict(lr=lr, betas=check_betas(betas), eps=eps,
                                                       rms=rms, exp=exp))

    @staticmethod
    def _adam(G, state, key, betas, eps, t):
        b1, b2 = betas
        if key not in state:
            state[key] = (torch.zeros_like(G), torch.zeros_like(G))
        m, v = state[key]
        m.mul_(b1).add_(G, alpha=1 - b1)
        v.mul_(b2).addcmul_(G, G, value=1 - b2)
        # bias correction keeps the first steps at full size; the ratio stays skew-symmetric
        return -(m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            betas, eps, exp = group["betas"], group["eps"], PION_EXPS[group["exp"]]
            for W in group["params"]:
                if W.grad is None:
                    continue
                g, state = W.grad, self.state[W]
                state["t"] = t = state.get("t", 0) + 1
                A_out = self._adam(g @ W.T - W @ g.T, state, "out", betas, eps, t)  # (d_out, d_out)
                A_in = self._adam(W.T @ g - g.T @ W, state, "in", betas, eps, t)    # (d_in, d_in)
                change = A_out @ W + W @ A_in                                       # (d_out, d_in)
                alpha = group["rms"] * math.sqrt(W.numel()) / (change.norm() + eps)
                step = group["lr"] * alpha
                W.copy_(exp(step * A_out) @ W @ exp(step * A_in))
        return loss
