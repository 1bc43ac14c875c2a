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
  step is the first-order trust-region step when the region is a spectral-norm ball. Read: its
  abstract; its Algorithm 1, Lemma 3 and Theorem 2 only as quoted from v1 in a secondary source
  (F. L. Cesista's notes), so their numbering and statements are unverified in the paper's text.

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
Transformation" (arXiv 2605.12492v1), Sec. 2.2 ("Spectrum-Preserving Update Rule": the title read in the paper's
table of contents), read through a secondary summary of its update (the paper's own equations
unverified): the gradient g of an (d_out x d_in) weight W is
projected onto skew-symmetric generators on both sides, G_out = g W^T - W g^T and
G_in = W^T g - g^T W; each has Adam moments (momentum in the Lie algebra), giving directions
A = -m / (sqrt(v) + eps); a per-matrix scale alpha = c sqrt(d_out d_in) / (||A_out W + W A_in||_F +
eps) fixes the RMS of the first-order change to lr c; and W <- E(lr alpha A_out) W E(lr alpha A_in).
With E the matrix exponential both factors are orthogonal and the singular values of W never
change; the paper uses the second-order truncation E2(X) = I + X + X^2 / 2 for speed
(`exp="second_order"`). E2(X) differs from exp(X) by O(lr^3), but for skew-symmetric X,
E2(X)^T E2(X) = I + X^4 / 4 (our derivation), so it changes the singular values by only O(lr^4) per
step. Our Adam moments are bias-corrected, which the summary does not show: both generators are
then scaled by one number that alpha divides out, so the step is the same up to eps.
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

    orthogonalize_first = False   # Muon: momentum, then orthogonalize (OrthogonalSGDM swaps them)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                if self.orthogonalize_first:
                    g = self.orthogonalize(g)
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                B = state["momentum_buffer"].lerp_(g, 1 - mu)
                direction = g.lerp(B, mu) if group["nesterov"] else B
                if not self.orthogonalize_first:
                    direction = self.orthogonalize(direction)
                p.mul_(1 - lr * group["weight_decay"])
                p.sub_(lr * muon_scale(p.shape, group["scale"]) * direction)
        return loss


def _second_order_exp(X: torch.Tensor) -> torch.Tensor:
    """I + X + X^2 / 2; for skew-symmetric X, E2^T E2 = I + X^4 / 4: orthogonal up to O(||X||^4)."""
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


class OrthogonalSGDM(Muon):
    """Orthogonalize, then momentum (Orthogonal-SGDM, Tuddenham et al. 2022, in the form of
    Kovalev, arXiv 2503.12645, which contrasts it with Muon): the same steps as `Muon` with the
    order of the two operations swapped, O_t = orthogonalize(G_t); B_t = mu B_{t-1} + (1 - mu) O_t;
    D_t = O_t + mu (B_t - O_t) (Nesterov) or B_t; theta <- (1 - lr wd) theta - lr muon_scale D_t.
    Muon averages raw gradients and orthogonalizes the average; this averages orthogonalized
    gradients, so its step has spectral norm <= lr muon_scale but not = (the average of
    orthogonal matrices is shorter when they disagree).
    Introduced in: notebooks/optimization/understanding-gradient-orthogonalization-for-deep-learning.ipynb"""

    orthogonalize_first = True


def frobenius_direction(G: torch.Tensor) -> torch.Tensor:
    """G / ||G||_F: the X that maximizes <G, X> over the Frobenius ball ||X||_F <= 1 (the
    trust-region step of normalized SGD); zero for G = 0. Pass as `Muon(orthogonalize=...)` to get
    normalized SGD with momentum, per matrix.
    Introduced in: notebooks/optimization/understanding-gradient-orthogonalization-for-deep-learning.ipynb"""
    norm = G.norm()
    return G / norm if norm > 0 else torch.zeros_like(G)


class Combined:
    """Several optimizers stepped as one, for parameters split by role (`split_for_muon`: Muon for
    the hidden matrices, AdamW for the rest): step(closure) evaluates the closure once, then steps
    each optimizer; zero_grad and param_groups cover them all (param_groups[0] is the first
    optimizer's first group).
    Introduced in: notebooks/optimization/understanding-gradient-orthogonalization-for-deep-learning.ipynb"""

    def __init__(self, *optimizers):
        if not optimizers:
            raise ValueError("Combined needs at least one optimizer")
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = closure_loss(closure)
        for opt in self.optimizers:
            opt.step()
        return loss


def noisy_quadratic_dual_norms(steps: int, lr: float, momentum: float, *, seeds=(0,),
                               order: str = "momentum_first", sigma: float = 1.0,
                               shape=(16, 8), start_distance: float = 1.0,
                               problem_seed: int = 1000, momentum_error: bool = False):
    """The spectral-norm trust-region method with momentum on f(X) = <X - X*, H (X - X*)> / 2
    (H = A^T A + 0.1 I, A and X* drawn with `problem_seed`), from X_0 = X* - start_distance * D
    (D a fixed random matrix of unit spectral norm), with stochastic gradients H (X - X*) + sigma N
    (N standard normal, drawn per seed). order "momentum_first": m_k = momentum m_{k-1} +
    (1 - momentum) g_k, X_{k+1} = X_k - lr polar(m_k) (Muon without Nesterov: the method of
    Kovalev, arXiv 2503.12645, with alpha = 1 - momentum); "orthogonalize_first": the average of
    polar(g_k) instead (Orthogonal-SGDM). All seeds run at once (a batch of matrices, float64).
    Returns the nuclear norm ||grad f(X_k)||_* (the dual of the spectral norm) of every iterate,
    shape (len(seeds), steps); with `momentum_error=True` also ||m_k - grad f(X_k)||_* of the
    buffer after its update at step k (for "orthogonalize_first" the buffer averages orthogonal
    matrices, so this is not an error of a gradient estimate), same shape. `constants()` gives
    the constants of the analysis for this problem.
    Introduced in: notebooks/optimization/understanding-gradient-orthogonalization-for-deep-learning.ipynb"""
    check_int("steps", steps)
    check_positive("lr", lr)
    check_fraction("momentum", momentum)
    check_choice("order", order, ("momentum_first", "orthogonalize_first"))
    check_nonnegative("sigma", sigma)
    m, n = shape
    g = torch.Generator().manual_seed(problem_seed)
    A = torch.randn(m, m, generator=g, dtype=torch.float64) / math.sqrt(m)
    H = A.T @ A + 0.1 * torch.eye(m, dtype=torch.float64)
    X_star = torch.randn(m, n, generator=g, dtype=torch.float64)
    D = torch.randn(m, n, generator=g, dtype=torch.float64)
    D = D / torch.linalg.matrix_norm(D, ord=2)
    noise = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def polar(G):
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        return U @ Vh

    X = (X_star - start_distance * D).expand(len(noise), m, n).clone()
    norms = torch.empty(len(noise), steps, dtype=torch.float64)
    errors = torch.empty_like(norms)
    for k in range(steps):
        grad = H @ (X - X_star)
        norms[:, k] = torch.linalg.matrix_norm(grad, ord="nuc")
        sample = grad + sigma * torch.stack([torch.randn(m, n, generator=gen, dtype=torch.float64)
                                             for gen in noise])
        if k == 0:
            buffer = sample.clone() if order == "momentum_first" else polar(sample)  # m_0 = g_0
        elif order == "momentum_first":
            buffer.lerp_(sample, 1 - momentum)
        else:
            buffer.lerp_(polar(sample), 1 - momentum)
        errors[:, k] = torch.linalg.matrix_norm(buffer - grad, ord="nuc")
        X -= lr * (polar(buffer) if order == "momentum_first" else buffer)
    return (norms, errors) if momentum_error else norms


def noisy_quadratic_constants(sigma: float = 1.0, shape=(16, 8), start_distance: float = 1.0,
                              problem_seed: int = 1000) -> dict:
    """The constants of the trust-region analysis for `noisy_quadratic_dual_norms`' problem with
    the spectral norm: L, the Lipschitz constant of the gradient from the spectral to the nuclear
    norm (||H D||_* <= ||H||_2 ||D||_* <= ||H||_2 min(m, n) ||D||_2); rho = sqrt(min(m, n)), the
    constant of ||D||_* <= rho ||D||_F; sigma_total = sigma sqrt(m n), the Frobenius standard
    deviation of the gradient noise; delta0 = f(X_0) - min f.
    Introduced in: notebooks/optimization/understanding-gradient-orthogonalization-for-deep-learning.ipynb"""
    m, n = shape
    g = torch.Generator().manual_seed(problem_seed)
    A = torch.randn(m, m, generator=g, dtype=torch.float64) / math.sqrt(m)
    H = A.T @ A + 0.1 * torch.eye(m, dtype=torch.float64)
    torch.randn(m, n, generator=g, dtype=torch.float64)          # X*, drawn as in the run
    D = torch.randn(m, n, generator=g, dtype=torch.float64)
    D = start_distance * D / torch.linalg.matrix_norm(D, ord=2)
    k = min(m, n)
    return {"L": torch.linalg.matrix_norm(H, ord=2).item() * k, "rho": math.sqrt(k),
            "sigma_total": sigma * math.sqrt(m * n), "delta0": 0.5 * (D * (H @ D)).sum().item()}
