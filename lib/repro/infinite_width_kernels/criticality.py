"""Criticality of deep MLPs at initialization: the kernel and four-point vertex recursions of
Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (2022), and Monte-Carlo
estimates of the same quantities from ensembles of random networks.

An MLP with z^(1) = b + W x and z^(l+1) = b + W sigma(z^(l)), biases ~ N(0, C_b) and weights
~ N(0, C_W / fan_in), has, for one input and at infinite width, Gaussian preactivations of
variance K^(l) with K^(l+1) = C_b + C_W <sigma^2>_{K^(l)} (the book's kernel recursion, Ch. 4).
At finite width n the leading non-Gaussianity is the four-point vertex V^(l): for one neuron,
E[z^4] - 3 E[z^2]^2 = 3 V / n (Ch. 4), and V obeys
V^(l+1) = chi_par(K^(l))^2 V^(l) + C_W^2 (<sigma^4> - <sigma^2>^2)_{K^(l)}, V^(1) = 0.
Gaussian expectations come from `repro.core.gaussian.gaussian_expectation` (piecewise quadrature).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..core import activations
from ..core.claims import interval_verdict
from ..core.gaussian import gaussian_expectation
from ..core.validation import check_int, check_positive


def _activation(name):
    """(sigma, sigma', cut points for quadrature) in NumPy."""
    act = activations.get(name)
    return act.numpy, act.derivative, act.kinks


def gaussian_moments(activation: str, K, n: int = 64):
    """(<sigma^2>_K, <sigma^4>_K, <sigma^2 z^2>_K, <sigma'^2>_K) for z ~ N(0, K), by quadrature.

    Broadcasts over an array K. Introduced in:
    notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    f, df, kinks = _activation(activation)
    check_positive("K", K)
    K = np.asarray(K, dtype=float)
    ge = lambda g: gaussian_expectation(g, 0.0, K, n=n, kinks=kinks)  # noqa: E731
    return (ge(lambda z: f(z) ** 2), ge(lambda z: f(z) ** 4), ge(lambda z: f(z) ** 2 * z ** 2),
            ge(lambda z: df(z) ** 2))


def kernel_map(activation: str, K, C_b=0.0, C_W=1.0, n: int = 64):
    """One step of the kernel recursion: C_b + C_W <sigma(z)^2>_K (the book's Ch. 4). Broadcasts.

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    f, _, kinks = _activation(activation)
    K = np.asarray(K, dtype=float)
    if not np.all(np.isfinite(K)) or np.any(K < 0):
        raise ValueError(f"K == {K!r}, must be finite and >= 0")
    # K = 0 (a kernel that has underflowed on its way to the fixed point 0) means z = 0 exactly
    s2 = gaussian_expectation(lambda z: f(z) ** 2, 0.0, np.where(K > 0, K, 1.0), n=n, kinks=kinks)
    s2 = np.where(K > 0, s2, f(np.zeros_like(K)) ** 2)
    return np.asarray(C_b) + np.asarray(C_W) * s2


def susceptibilities(activation: str, K, C_W: float = 1.0, n: int = 64):
    """(chi_parallel, chi_perp) at kernel K (the book's Sec. 5.1):
    chi_par = C_W d<sigma^2>_K / dK = C_W <sigma^2 (z^2 - K)>_K / (2 K^2), chi_perp = C_W <sigma'^2>_K.

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    s2, _, s2z2, ds2 = gaussian_moments(activation, K, n)
    K = np.asarray(K, dtype=float)
    return C_W * (s2z2 - K * s2) / (2 * K ** 2), C_W * ds2


def kernel_recursion(activation: str, K1, depth: int, C_b=0.0, C_W=1.0, n: int = 64) -> np.ndarray:
    """K^(1), ..., K^(depth) of the infinite-width kernel recursion, from the first layer's K^(1).

    K1, C_b and C_W broadcast (several networks at once); returns shape (depth, *broadcast shape).
    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    check_int("depth", depth)
    check_positive("K1", K1)
    K1, C_b, C_W = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (K1, C_b, C_W)))
    K = [K1]
    for _ in range(depth - 1):
        K.append(kernel_map(activation, K[-1], C_b, C_W, n))
    return np.stack(K)


def four_point_vertex(activation: str, K, C_W: float = 1.0, n: int = 64) -> np.ndarray:
    """V^(1), ..., V^(depth) along a kernel path K (shape (depth,)), at leading order in 1/width:
    V^(1) = 0, V^(l+1) = chi_par(K^(l))^2 V^(l) + C_W^2 (<sigma^4> - <sigma^2>^2)_{K^(l)}.

    Equal widths are assumed; the excess kurtosis of one preactivation is 3 V / (width K^2).
    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    K = np.asarray(K, dtype=float)
    if K.ndim != 1 or K.size < 1:
        raise ValueError(f"K must be a 1-d kernel path, got shape {K.shape}")
    s2, s4, _, _ = gaussian_moments(activation, K[:-1], n) if K.size > 1 else ((), (), (), ())
    chi, _ = susceptibilities(activation, K[:-1], C_W, n) if K.size > 1 else ((), ())
    V = [0.0]
    for l in range(K.size - 1):
        V.append(chi[l] ** 2 * V[-1] + C_W ** 2 * (s4[l] - s2[l] ** 2))
    return np.array(V)


def vertex_recursion(activation: str, K1: float, depth: int, C_b: float = 0.0, C_W: float = 1.0,
                     n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(K, V): the kernel recursion from K^(1) and the four-point vertex along it
    (`four_point_vertex`), layers 1..depth, for one network (scalar K1, C_b, C_W).

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    K = kernel_recursion(activation, float(K1), depth, float(C_b), float(C_W), n)
    return K, four_point_vertex(activation, K, C_W, n)


def kernel_correction(activation: str, K1: float, depth: int, C_b: float = 0.0, C_W: float = 1.0,
                      n: int = 64) -> np.ndarray:
    """K^{1}(l): the 1/width correction to the kernel, E[z^2] = K + K^{1} / width + O(1/width^2).

    The marginal of one preactivation has variance K + K^{1}/width and fourth cumulant 3 V / width,
    so E[sigma^2] gains chi_par K^{1} / C_W and the Edgeworth term V <sigma^2 He_4> / (8 K^2):
    K^{1}(l+1) = chi_par K^{1}(l) + (C_W / 8) V(l) <sigma^2 (z^4 - 6 K z^2 + 3 K^2)>_K / K^4,
    K^{1}(1) = 0 (the book's Sec. 4.5 for one input). Zero for scale-invariant activations.
    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    K, V = vertex_recursion(activation, K1, depth, C_b, C_W, n)
    f, _, kinks = _activation(activation)
    Kp = K[:-1]
    he4 = gaussian_expectation(lambda z: f(z) ** 2 * (z ** 4 - 6 * Kp[:, None] * z ** 2
                                                        + 3 * Kp[:, None] ** 2),
                               0.0, Kp, n=n, kinks=kinks)
    chi, _ = susceptibilities(activation, Kp, C_W, n)
    G1 = [0.0]
    for l in range(depth - 1):
        G1.append(chi[l] * G1[-1] + C_W / 8 * V[l] * he4[l] / Kp[l] ** 4)
    return np.array(G1)


def scale_invariant_nu(a_plus: float = 1.0, a_minus: float = 0.0) -> float:
    """nu = 3 A4 / A2^2 - 1 of sigma(z) = a_plus z (z > 0), a_minus z (z < 0), with
    A_p = (a_plus^p + a_minus^p) / 2: the per-layer growth of V / K^2 at criticality (ReLU: 5).

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    A2, A4 = (a_plus ** 2 + a_minus ** 2) / 2, (a_plus ** 4 + a_minus ** 4) / 2
    if A2 == 0:
        raise ValueError("a_plus and a_minus are both 0: sigma is identically zero")
    return 3 * A4 / A2 ** 2 - 1


def scale_invariant_kurtosis(width, layer, nu: float = 5.0):
    """E[z^4] / E[z^2]^2 = 3 (1 + nu / n)^(l - 1) of a layer-l preactivation of a scale-invariant
    MLP with zero biases and equal widths n, exact at any width (the norm of a layer's activations
    is a product of independent factors); its first order in 1/n is the book's 3 + 3 nu (l - 1) / n.

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    width, layer = np.asarray(width, dtype=float), np.asarray(layer, dtype=float)
    if np.any(width < 1) or np.any(layer < 1):
        raise ValueError("width and layer must be >= 1")
    return 3 * (1 + nu / width) ** (layer - 1)


@torch.no_grad()
def preactivation_moments(x: torch.Tensor, width: int, depth: int, inits: int,
                          activation: str = "relu", C_b: float = 0.0, C_W: float = 2.0,
                          method: str = "weights", chunk: int = 1024,
                          generator: torch.Generator | None = None) -> dict:
    """Per-init averages over neurons of z^2 and z^4 at layers 1..depth of `inits` random MLPs of
    equal hidden widths `width`, all fed the one input x (shape (n0,), on the device wanted).

    method="weights" draws every weight matrix and runs the nets batched with torch.bmm;
    method="conditional" uses that, for one input, b + W sigma(z) given z is exactly
    N(0, C_b + C_W |sigma(z)|^2 / n) per neuron, independently: the same law, O(width) per layer.
    Returns {"m2": (depth, inits), "m4": (depth, inits)} float64 tensors on x's device.
    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    check_int("depth", depth)
    sigma = activations.get(activation).module()
    for name, v in (("width", width), ("inits", inits), ("chunk", chunk)):
        check_int(name, v)
    if method not in ("weights", "conditional"):
        raise ValueError(f"method == {method!r}, must be 'weights' or 'conditional'")
    if x.ndim != 1:
        raise ValueError(f"x must be one input of shape (n0,), got shape {tuple(x.shape)}")
    dev = x.device
    kw = dict(device=dev, generator=generator)
    m2, m4 = [], []
    for start in range(0, inits, chunk):
        m = min(chunk, inits - start)
        # first layer: z = b + W x, W: (m, width, n0)
        if method == "weights":
            W = torch.randn(m, width, x.numel(), **kw) * math.sqrt(C_W / x.numel())
            z = (W @ x.float())  # (m, width)
        else:
            k1 = C_W * float((x.double() ** 2).mean())
            z = torch.randn(m, width, **kw) * math.sqrt(k1)
        z = z + math.sqrt(C_b) * torch.randn(m, width, **kw)
        layers2, layers4 = [], []
        for layer in range(depth):
            z2 = z * z
            layers2.append(z2.mean(1).double())
            layers4.append((z2 * z2).mean(1).double())
            if layer == depth - 1:
                break
            a = sigma(z)  # (m, width)
            if method == "weights":
                W = torch.randn(m, width, width, **kw) * math.sqrt(C_W / width)
                z = torch.bmm(W, a.unsqueeze(-1)).squeeze(-1)
            else:
                var = C_W * (a.double() ** 2).mean(1, keepdim=True)
                z = torch.randn(m, width, **kw) * var.sqrt().float()
            z = z + math.sqrt(C_b) * torch.randn(m, width, **kw)
        m2.append(torch.stack(layers2))
        m4.append(torch.stack(layers4))
    return {"m2": torch.cat(m2, 1), "m4": torch.cat(m4, 1)}


def mean_and_se(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the last axis (independent inits) and its standard error, std / sqrt(count).

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    v = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=float)
    if v.shape[-1] < 2:
        raise ValueError("need at least 2 independent inits for a standard error")
    return v.mean(-1), v.std(-1, ddof=1) / math.sqrt(v.shape[-1])


def kurtosis_ratio(m2, m4) -> tuple[np.ndarray, np.ndarray]:
    """E[z^4] / E[z^2]^2 from per-init averages (last axis = independent inits), and its standard
    error by the delta method on the two means (their covariance across inits).

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    b = np.asarray(m2.cpu() if isinstance(m2, torch.Tensor) else m2, dtype=float)
    a = np.asarray(m4.cpu() if isinstance(m4, torch.Tensor) else m4, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"m2 and m4 must have the same shape, got {b.shape} and {a.shape}")
    if a.shape[-1] < 2:
        raise ValueError("need at least 2 independent inits for a standard error")
    M = a.shape[-1]
    am, bm = a.mean(-1), b.mean(-1)
    ca, cb = a - am[..., None], b - bm[..., None]
    va, vb, cab = (ca ** 2).sum(-1) / (M - 1), (cb ** 2).sum(-1) / (M - 1), (ca * cb).sum(-1) / (M - 1)
    ga, gb = 1 / bm ** 2, -2 * am / bm ** 3
    return am / bm ** 2, np.sqrt((ga ** 2 * va + gb ** 2 * vb + 2 * ga * gb * cab) / M)


def growth_factor(mean, se, K1: float, layer: int) -> tuple[float, float]:
    """The mean per-layer factor g = (E[z^2]^(l) / K^(1))^(1/(l-1)) of the kernel between layer 1
    (where E[z^2] = K^(1) exactly) and layer l, from a Monte-Carlo mean of z^2 at layer l and its
    standard error, and the standard error of g (delta method). The book's recursion for a
    scale-invariant activation with C_b = 0 predicts g = A2 C_W (C_W / 2 for ReLU).

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    check_int("layer", layer, minimum=2)
    mean, se, K1 = float(mean), float(se), float(K1)
    if not (mean > 0 and K1 > 0 and se >= 0):
        raise ValueError(f"need mean > 0, K1 > 0 and se >= 0, got mean = {mean}, K1 = {K1}, se = {se}")
    g = (mean / K1) ** (1 / (layer - 1))
    return g, g * se / (mean * (layer - 1))


def nu_from_kurtosis(R, se, width, layer) -> tuple[np.ndarray, np.ndarray]:
    """nu = n ((R / 3)^(1/(l-1)) - 1) and its standard error (delta method): the per-layer growth
    coefficient of a scale-invariant net's fourth moment that `scale_invariant_kurtosis` inverts,
    from a measured ratio R = E[z^4] / E[z^2]^2 (with standard error se) at layer l >= 2 of a net
    of width n. Broadcasts.

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    R, se, n, l = (np.asarray(a, dtype=float) for a in (R, se, width, layer))
    if np.any(l < 2) or np.any(R <= 0) or np.any(n < 1):
        raise ValueError("need layer >= 2, width >= 1 and R > 0")
    growth = (R / 3) ** (1 / (l - 1))
    return n * (growth - 1), n * growth / (l - 1) * se / R


def pooled_mean(values, ses) -> tuple[float, float]:
    """The inverse-variance weighted mean of independent estimates and its standard error.

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    v, s = np.asarray(values, dtype=float).ravel(), np.asarray(ses, dtype=float).ravel()
    if v.shape != s.shape or v.size == 0 or np.any(s <= 0):
        raise ValueError("need as many standard errors as values, all > 0")
    w = 1 / s ** 2
    return float((w * v).sum() / w.sum()), float(w.sum() ** -0.5)


def joint_verdict(measured, uncertainty, low, high) -> str:
    """One verdict for several measurements, each against its own target interval [low, high] with
    its own uncertainty (all broadcast): 'holds' when every interval measured +- uncertainty lies in
    its target, 'fails' when one lies wholly outside it, 'inconclusive' otherwise.

    Introduced in: notebooks/infinite-width-kernels/the-principles-of-deep-learning-theory.ipynb
    """
    arrays = (np.asarray(a, dtype=float) for a in (measured, uncertainty, low, high))
    m, u, lo, hi = (a.ravel() for a in np.broadcast_arrays(*arrays))
    if m.size == 0:
        raise ValueError("no measurements")
    if not np.all(np.isfinite(m)):
        return "fails"
    verdicts = [interval_verdict(a - e, a + e, b, c) for a, e, b, c in zip(m, u, lo, hi)]
    if "fails" in verdicts:
        return "fails"
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"
