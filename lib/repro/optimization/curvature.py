"""Cheap estimates of a loss's curvature, shared by the second-order optimizers
(`repro.optimization.second_order`).

Hutchinson's estimator of the Hessian diagonal: for z with independent Rademacher entries
(+1 or -1, each with probability 1/2), E[z * (H z)] = diag(H), since E[z_i z_j] = 1 if i = j and 0
otherwise. Each sample costs one Hessian-vector product, H z = d(g . z)/dw, the gradient of the
gradient along z, so the gradients must be built with `create_graph=True`. AdaHessian (Yao et al.,
arXiv 2006.00719) averages |diag| over each convolution kernel's spatial block to reduce the
variance (`spatial_average`).

Kronecker factors of a linear layer (K-FAC, as AdaFisher uses them: Gomes et al., arXiv
2405.16397). For a layer s = W_bar a_bar, with a_bar = [a, 1] the input with a 1 appended for the
bias and W_bar = [W, b], the gradient of one example's loss is grad W_bar = g a_bar^T, with
g = dloss/ds. Its Fisher block E[vec(g a_bar^T) vec(g a_bar^T)^T] is approximated by A (x) G, with
A = E[a_bar a_bar^T] and G = E[g g^T] (vec stacks columns, so vec(g a^T) = a (x) g). For one
example the two are equal.
"""
from __future__ import annotations

import torch
from torch import nn


def rademacher(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A tensor shaped like `like` with independent entries +1 or -1 (probability 1/2 each),
    drawn on the CPU from `generator` (so that a run is reproducible) and moved to like's device.
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    bits = torch.randint(0, 2, like.shape, generator=generator, dtype=torch.int64)
    return (2 * bits - 1).to(like.device, like.dtype)


def hessian_vector_products(grads, params, vectors) -> list[torch.Tensor]:
    """H v for each parameter, H the Hessian of the loss whose gradients `grads` (one per parameter
    of `params`) were computed with create_graph=True; the graph is kept for further products.
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    for g in grads:
        if g.grad_fn is None:
            raise RuntimeError("the gradients carry no graph: compute them with loss.backward("
                               "create_graph=True) or autograd.grad(..., create_graph=True)")
    return list(torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True))


def hutchinson_diagonal(grads, params, samples: int = 1,
                        generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Hutchinson's estimate of diag(H), the mean of z * (H z) over `samples` Rademacher vectors z,
    one tensor per parameter (same shapes). Unbiased; each sample is one Hessian-vector product.
    The z are drawn parameter after parameter, sample after sample, from `generator`.
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples == {samples!r}, must be an int >= 1")
    params = list(params)
    total = [torch.zeros_like(p) for p in params]
    for _ in range(samples):
        z = [rademacher(p, generator) for p in params]
        for t, zi, hz in zip(total, z, hessian_vector_products(grads, params, z)):
            t.add_(zi * hz.detach())
    return [t / samples for t in total]


def spatial_average(diagonal: torch.Tensor) -> torch.Tensor:
    """AdaHessian's spatial averaging of a Hessian-diagonal estimate: |diagonal|, averaged over
    each kernel's spatial positions for a convolution weight (out, in, *kernel), i.e. over every
    dimension after the second, and broadcast back to the weight's shape. Vectors and matrices
    (biases, linear layers) are returned as |diagonal|, as in the authors' image-classification
    code.
    Introduced in: notebooks/optimization/adahessian.ipynb"""
    magnitude = diagonal.abs()
    if diagonal.dim() <= 2:
        return magnitude
    spatial = tuple(range(2, diagonal.dim()))
    return magnitude.mean(dim=spatial, keepdim=True).expand_as(diagonal).clone()


# --- Kronecker factors of nn.Linear layers ------------------------------------------------------
def with_bias_column(a: torch.Tensor) -> torch.Tensor:
    """a_bar = [a, 1]: the inputs (B, n_in) with a column of ones appended, (B, n_in + 1).
    Introduced in: notebooks/optimization/adafisher.ipynb"""
    return torch.cat([a, torch.ones_like(a[:, :1])], dim=1)


def kronecker_factors(a: torch.Tensor, g: torch.Tensor, bias: bool = True):
    """K-FAC's factors of one linear layer from a batch: A = mean_n a_bar_n a_bar_n^T, (n_in + 1,
    n_in + 1) with the bias (n_in, n_in without), and G = mean_n g_n g_n^T, (n_out, n_out), from the
    inputs a (B, n_in) and the per-example gradients g (B, n_out) of the loss w.r.t. the outputs.
    Introduced in: notebooks/optimization/adafisher.ipynb"""
    a_bar = with_bias_column(a) if bias else a
    return a_bar.T @ a_bar / a.shape[0], g.T @ g / g.shape[0]


def kfac_precondition(grad: torch.Tensor, A: torch.Tensor, G: torch.Tensor,
                      damping: float) -> torch.Tensor:
    """(G + damping I)^-1 grad (A + damping I)^-1 for grad = grad W_bar, (n_out, n_in [+ 1]):
    the solution X of ((A + damping I) (x) (G + damping I)) vec(X) = vec(grad).
    Introduced in: notebooks/optimization/adafisher.ipynb"""
    if not damping >= 0:
        raise ValueError(f"damping == {damping!r}, must be >= 0")
    eye = lambda n: torch.eye(n, dtype=grad.dtype, device=grad.device)  # noqa: E731
    left = torch.linalg.solve(G + damping * eye(G.shape[0]), grad)       # (G + d)^-1 grad
    return torch.linalg.solve(A + damping * eye(A.shape[0]), left.T).T   # A is symmetric


class LinearCapture:
    """Records, for every nn.Linear of `model`, the inputs a (B, n_in) of the last forward pass and
    the per-example gradients g (B, n_out) of the loss w.r.t. the layer's outputs in the following
    backward pass (hooks). The loss must be a mean over the B examples of the batch: g is then
    B times the gradient that autograd passes back. `factors(layer)` gives (A, G),
    `diagonals(layer)` gives (diag A, diag G) without forming A and G. Inputs must be 2-D
    (batch, features).
    Introduced in: notebooks/optimization/adafisher.ipynb"""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.inputs: dict[nn.Linear, torch.Tensor] = {}
        self.output_grads: dict[nn.Linear, torch.Tensor] = {}
        self._handles = [layer.register_forward_hook(self._forward) for layer in self.layers]

    def _forward(self, layer, inputs, output):
        a = inputs[0]
        if a.dim() != 2:
            raise ValueError(f"input of {layer} has shape {tuple(a.shape)}, "
                             "must be (batch, features)")
        if not output.requires_grad:   # evaluation passes (no_grad) leave the record alone
            return
        self.inputs[layer] = a.detach()

        def save(grad, layer=layer, batch=a.shape[0]):
            self.output_grads[layer] = grad.detach() * batch   # the mean's 1/B undone
        output.register_hook(save)

    def captured(self, layer: nn.Linear) -> bool:
        """Whether `layer` has both its inputs and its output gradients of the same batch."""
        return (layer in self.inputs and layer in self.output_grads
                and self.inputs[layer].shape[0] == self.output_grads[layer].shape[0])

    def factors(self, layer: nn.Linear):
        """(A, G) of `layer` for the last batch (`kronecker_factors`)."""
        return kronecker_factors(self.inputs[layer], self.output_grads[layer],
                                 bias=layer.bias is not None)

    def diagonals(self, layer: nn.Linear):
        """(diag A, diag G) of `layer` for the last batch: mean squares of a_bar and of g."""
        a, g = self.inputs[layer], self.output_grads[layer]
        a_bar = with_bias_column(a) if layer.bias is not None else a
        return (a_bar ** 2).mean(0), (g ** 2).mean(0)

    def remove(self):
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
