"""f-distill (Xu, Nie and Vahdat, 2025): distilling a diffusion model into a one-step generator
by minimising an f-divergence between the teacher's and the student's noised laws.

With p the teacher's law, q the student's (x = G_theta(z)), r = p / q and
D_f(p || q) = E_q[f(r)], the gradient with respect to the generator is

    grad_theta D_f = E_z[ h(r(x)) (grad_x log q(x) - grad_x log p(x)) . d x / d theta ],
    h(r) = f''(r) r^2,

the score difference of variational score distillation weighted by a function of the density
ratio. Reverse KL (f = -log r) gives h = 1: variational score distillation / DMD. At diffusion
time t the same holds for the noised laws p_t, q_t at x_t = alpha G(z) + sigma eps.

`WEIGHTS` holds f and h for the divergences used here, h written in log r for stability;
`f_distill_loss` is a surrogate whose gradient is the weighted score difference; the density ratio
r_t is estimated by a discriminator on noisy samples trained with the logistic loss
(`discriminator_loss`: its optimal logit is log p_t / q_t).

Introduced in: notebooks/generative-diffusion/one-step-diffusion-models-with-f-divergence-distribution.ipynb
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.validation import check_choice


def _f_reverse_kl(r):
    return -torch.log(r)


def _f_forward_kl(r):
    return torch.xlogy(r, r)


def _f_js(r):
    return torch.xlogy(r, r) - (r + 1) * torch.log((r + 1) / 2)


def _f_hellinger(r):
    return (torch.sqrt(r) - 1) ** 2


def _f_jeffreys(r):
    return (r - 1) * torch.log(r)


# name -> (f(r), h(log r)) with h(r) = f''(r) r^2
WEIGHTS = {
    "reverse-kl": (_f_reverse_kl, lambda log_r: torch.ones_like(log_r)),
    "forward-kl": (_f_forward_kl, lambda log_r: torch.exp(log_r)),
    "js": (_f_js, lambda log_r: torch.sigmoid(log_r)),
    "squared-hellinger": (_f_hellinger, lambda log_r: 0.5 * torch.exp(0.5 * log_r)),
    "jeffreys": (_f_jeffreys, lambda log_r: torch.exp(log_r) + 1),
}


def f_function(name: str):
    """The convex f of divergence `name` (f(1) = 0), as a function of r = p / q."""
    check_choice("divergence", name, WEIGHTS)
    return WEIGHTS[name][0]


def weight(name: str, log_r):
    """h(r) = f''(r) r^2 of divergence `name`, from log r (any shape)."""
    check_choice("divergence", name, WEIGHTS)
    return WEIGHTS[name][1](torch.as_tensor(log_r))


def f_divergence_gradient_terms(name: str, log_r, score_student, score_teacher):
    """Per-sample h(r) (grad log q - grad log p), (N, D): the vector that multiplies dx/dtheta."""
    if score_student.shape != score_teacher.shape or score_student.ndim != 2:
        raise ValueError(f"scores must be two (N, D) tensors of one shape, got "
                         f"{tuple(score_student.shape)} and {tuple(score_teacher.shape)}")
    log_r = torch.as_tensor(log_r).reshape(-1)
    if log_r.shape[0] != score_student.shape[0]:
        raise ValueError(f"log_r needs one value per sample ({score_student.shape[0]}), "
                         f"got {log_r.shape[0]}")
    return weight(name, log_r)[:, None] * (score_student - score_teacher)


def f_distill_loss(x, name: str, log_r, score_student, score_teacher, normalize: bool = True):
    """A surrogate whose gradient through x (N, D) is the batch mean of
    h(r) (grad log q - grad log p) . dx/dtheta; every other input is treated as a constant.
    With `normalize`, h is divided by its batch mean (a scale-free step; ours)."""
    if x.shape != score_student.shape:
        raise ValueError(f"x and the scores must have one shape, got {tuple(x.shape)} and "
                         f"{tuple(score_student.shape)}")
    with torch.no_grad():
        h = weight(name, torch.as_tensor(log_r).reshape(-1).to(x))
        if h.shape[0] != x.shape[0]:
            raise ValueError(f"log_r needs one value per sample ({x.shape[0]}), got {h.shape[0]}")
        if normalize:
            h = h / h.mean().clamp_min(1e-30)
        direction = h[:, None] * (score_student - score_teacher).to(x)
    return (direction * x).sum(1).mean()


def discriminator_loss(logit_teacher, logit_student):
    """Logistic loss, teacher samples labelled 1 and student samples 0: its minimiser's logit is
    log p / q (equal sample sizes)."""
    return F.softplus(-logit_teacher).mean() + F.softplus(logit_student).mean()


def gaussian_f_divergence(name: str, mean_p: float, std_p: float, mean_q, std_q, nodes: int = 100):
    """D_f(p || q) = E_q[f(p / q)] for 1-D Gaussians p = N(mean_p, std_p^2), q = N(mean_q, std_q^2)
    by Gauss-Hermite quadrature in q's standard coordinate; differentiable in (mean_q, std_q)."""
    f = f_function(name)
    z, w = gauss_hermite(nodes, dtype=torch.float64)
    x = mean_q + std_q * z
    log_r = normal_log_prob(x, mean_p, std_p) - normal_log_prob(x, mean_q, std_q)
    return (w * f(torch.exp(log_r))).sum()


def gaussian_f_distill_gradient(name: str, mean_p: float, std_p: float, mean_q: float,
                                std_q: float, nodes: int = 100):
    """The f-distill gradient E_z[h(r) (s_q - s_p)(x) dx/d(mean, std)] for x = mean_q + std_q z,
    z ~ N(0, 1), with exact scores and density ratio, by quadrature: a tensor (2,)."""
    z, w = gauss_hermite(nodes, dtype=torch.float64)
    x = mean_q + std_q * z
    log_r = normal_log_prob(x, mean_p, std_p) - normal_log_prob(x, mean_q, std_q)
    s_p, s_q = -(x - mean_p) / std_p ** 2, -(x - mean_q) / std_q ** 2
    v = weight(name, log_r) * (s_q - s_p)
    return torch.stack([(w * v).sum(), (w * v * z).sum()])


def normal_log_prob(x, mean, std):
    """log N(x; mean, std^2)."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(torch.as_tensor(std, dtype=x.dtype)) \
        - 0.5 * math.log(2 * math.pi)


def gauss_hermite(nodes: int, dtype=torch.float64):
    """Nodes and weights for E[g(z)], z ~ N(0, 1) (probabilists' Gauss-Hermite)."""
    import numpy as np

    if int(nodes) != nodes or nodes < 2:
        raise ValueError(f"nodes must be an integer >= 2, got {nodes}")
    z, w = np.polynomial.hermite_e.hermegauss(int(nodes))
    return torch.tensor(z, dtype=dtype), torch.tensor(w / w.sum(), dtype=dtype)
