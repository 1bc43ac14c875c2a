"""Checks that the flow layers' tests share: random parameters, and log|det J| from autograd."""
import torch
from torch.autograd.functional import jacobian


def randomize(module, scale=1.0, seed=0):
    """Give every parameter a random value, so that a layer that starts as the identity is far
    from it."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def autograd_log_det(fn, z):
    """log|det J| of `fn` (a map of a batch returning (output, ...)) at each row of z, from the
    full Jacobian computed by autograd."""
    return torch.stack([torch.linalg.slogdet(jacobian(lambda x: fn(x[None])[0][0], zi))[1]
                        for zi in z])
