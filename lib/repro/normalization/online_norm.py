"""Online Normalization (Chiley et al., 2019): normalize every sample with running, exponentially
decayed estimates of each feature's mean and variance instead of batch statistics, and correct the
backward pass with a control process that removes, on average over time, the gradient's components
along the normalized output y and along the ones.

The forward pass, for the t-th sample x_t of a stream (a sample's feature may have several scalar
components, e.g. the pixels of a channel; mu(x_t) and sigma^2(x_t) are their mean and variance, and
for a fully connected layer mu(x_t) = x_t, sigma^2(x_t) = 0):

    y_t       = (x_t - mu_{t-1}) / sqrt(sigma^2_{t-1} + eps)
    mu_t      = a_f mu_{t-1} + (1 - a_f) mu(x_t)
    sigma^2_t = a_f sigma^2_{t-1} + (1 - a_f) sigma^2(x_t) + a_f (1 - a_f) (mu(x_t) - mu_{t-1})^2

The backward pass (the control process) takes the incoming gradient g_t = dL/dy_t and keeps two
error accumulators per feature, v (along y) and u (along the ones):

    g~_t = g_t - (1 - a_b) v_{t-1} y_t ;   v_t = v_{t-1} + mu(g~_t * y_t)
    x'_t = g~_t / sqrt(sigma^2_{t-1} + eps) - (1 - a_b) u_{t-1} ;   u_t = u_{t-1} + mu(x'_t)

so the sums over time of mu(g~_t y_t) and of mu(x'_t) stay equal to v_T - v_0 and u_T - u_0, which
stay bounded: averaged over time, the gradient passed back has no component along y nor along the
ones, which is what batch normalization's backward pass does exactly inside one batch. The forward
equations are the paper's (as quoted on the method's Papers-with-Code page; their section number
unverified); the backward recursion follows the authors' reference code
(github.com/Cerebras/online-normalization, online-norm/numpy_on), since we could not read the
paper's own equations for it. A batch of N samples is processed as N consecutive time steps, so
batch size 1 is the method's natural setting.

After the affine scale and shift, a guard keeps errors of the running estimates from compounding
across layers: layer scaling (divide each sample's activation vector by its root mean square over
the features, the paper's choice) or activation clamping to [-c, c] (the authors' later
alternative).
Introduced in: notebooks/normalization/online-normalization-for-training-neural-networks.ipynb
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.validation import check_choice

GUARDS = (None, "layer_scaling", "clamp")


def _feature_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-feature mean and (biased) variance over the components: (N, C) each."""
    flat = x.flatten(2) if x.dim() > 2 else x.unsqueeze(-1)
    return flat.mean(-1), flat.var(-1, correction=0)


def _per_feature(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A (C,) or (N, C) tensor shaped to broadcast against (N, C, *components) of `ndim` dims."""
    t = t.unsqueeze(0) if t.dim() == 1 else t
    return t.reshape(*t.shape, *([1] * (ndim - 2)))


def _recursion(a, w: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """z_t = a_t z_{t-1} + w_t for t = 0..N-1 from z_{-1} = z0; returns z (N, C).

    w is (N, C), z0 is (C,). A constant coefficient `a` (a float) takes the closed form
    z_t = sum_{s<=t} a^(t-s) w_s + a^(t+1) z0, one (N, N) matrix product; a coefficient that varies
    with t, an (N, C) tensor, is stepped through (no division, so a zero or negative a_t is exact).
    """
    n = w.shape[0]
    if isinstance(a, float):
        steps = torch.arange(n, device=w.device, dtype=w.dtype)
        lag = steps[:, None] - steps[None, :]
        weights = torch.where(lag >= 0, a ** lag.clamp(min=0), torch.zeros_like(lag))
        return weights @ w + (a ** (steps + 1))[:, None] * z0
    z, out = z0, []
    for t in range(n):
        z = a[t] * z + w[t]
        out.append(z)
    return torch.stack(out)


def _previous(z0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The value before each step: (z0, z_0, ..., z_{N-2})."""
    return torch.cat([z0[None], z[:-1]])


def running_estimates(x: torch.Tensor, m0: torch.Tensor, var0: torch.Tensor, alpha_f: float,
                      eps: float = 0.0):
    """The forward recursions over the stream of samples x (N, C, *components) from mu = m0 and
    sigma^2 = var0: (center, scale, m, var), where center[t] = mu_{t-1} and
    scale[t] = sqrt(sigma^2_{t-1} + eps) normalize sample t (both (N, C)), and m, var (C,) are the
    estimates after the last sample."""
    mu_x, var_x = _feature_stats(x)
    m = _recursion(float(alpha_f), (1 - alpha_f) * mu_x, m0)
    center = _previous(m0, m)                                           # mu_{t-1}
    spread = (1 - alpha_f) * var_x + alpha_f * (1 - alpha_f) * (mu_x - center) ** 2
    var = _recursion(float(alpha_f), spread, var0)
    scale = torch.sqrt(_previous(var0, var) + eps)                      # sigma_{t-1}
    return center, scale, m[-1], var[-1]


class OnlineNormFunction(torch.autograd.Function):
    """The normalization y = (x - mu_{t-1}) / sigma_{t-1} with its control-process backward.

    `state` is the OnlineNorm module whose buffers m, var (forward estimates) and u, v (backward
    accumulators) are read and updated in place; a batch is a stream of N samples, computed at
    once where the recursions allow (`_recursion`). With control=False the backward
    treats the statistics as constants: x' = g / sigma_{t-1} (the uncorrected gradient).
    """

    @staticmethod
    def forward(ctx, x, state, alpha_f, alpha_b, eps, control):
        center, scale, m_last, var_last = running_estimates(x.detach(), state.m, state.var,
                                                            alpha_f, eps)
        state.m.copy_(m_last)
        state.var.copy_(var_last)
        y = (x - _per_feature(center, x.dim())) / _per_feature(scale, x.dim())
        ctx.save_for_backward(y, scale)
        ctx.state, ctx.alpha_b, ctx.control = state, alpha_b, control
        return y

    @staticmethod
    def backward(ctx, grad_y):
        y, scale = ctx.saved_tensors
        nd = y.dim()
        if not ctx.control:
            return grad_y / _per_feature(scale, nd), None, None, None, None, None
        state, alpha_b = ctx.state, ctx.alpha_b
        gain = 1 - alpha_b
        # along y: g~_t = g_t - gain v_{t-1} y_t, v_t = v_{t-1} + mu(g~_t y_t)
        #        = (1 - gain mu(y_t^2)) v_{t-1} + mu(g_t y_t)
        y_sq, gy = _feature_stats(y * y)[0], _feature_stats(grad_y * y)[0]
        v = _recursion(1 - gain * y_sq, gy, state.v)
        g = grad_y - gain * _per_feature(_previous(state.v, v), nd) * y
        h = g / _per_feature(scale, nd)
        # along the ones: x'_t = h_t - gain u_{t-1}, u_t = u_{t-1} + mu(x'_t)
        #        = alpha_b u_{t-1} + mu(h_t)
        mu_h = _feature_stats(h)[0]
        u = _recursion(float(alpha_b), mu_h, state.u)
        grad_x = h - gain * _per_feature(_previous(state.u, u), nd)
        state.u.copy_(u[-1])
        state.v.copy_(v[-1])
        return grad_x, None, None, None, None, None


class OnlineNorm(nn.Module):
    """Online Normalization of (N, C) or (N, C, *spatial) inputs: per-feature running statistics
    (decay alpha_f) in the forward pass, the control process (decay alpha_b) in the backward pass,
    a learned scale and shift (`affine`), then the guard (`guard`: "layer_scaling", "clamp" to
    [-clamp, clamp], or None). `control=False` gives the ablation without the backward correction.
    In eval mode the running estimates normalize without being updated.
    The defaults alpha_f=0.999, alpha_b=0.99 are those of the authors' code."""

    def __init__(self, num_features: int, alpha_f: float = 0.999, alpha_b: float = 0.99,
                 eps: float = 1e-5, affine: bool = True, guard: str | None = "layer_scaling",
                 clamp: float = 5.0, control: bool = True, ls_eps: float = 1e-5):
        super().__init__()
        for name, a in (("alpha_f", alpha_f), ("alpha_b", alpha_b)):
            if not 0 <= a < 1:
                raise ValueError(f"{name} == {a}, must be in [0, 1)")
        check_choice("guard", guard, GUARDS)
        if not eps >= 0 or not clamp > 0:
            raise ValueError(f"eps == {eps} must be >= 0 and clamp == {clamp} > 0")
        self.num_features, self.alpha_f, self.alpha_b, self.eps = num_features, alpha_f, alpha_b, eps
        self.guard, self.clamp, self.control, self.ls_eps = guard, clamp, control, ls_eps
        self.register_buffer("m", torch.zeros(num_features))
        self.register_buffer("var", torch.ones(num_features))
        self.register_buffer("u", torch.zeros(num_features))
        self.register_buffer("v", torch.zeros(num_features))
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def extra_repr(self) -> str:
        return (f"{self.num_features}, alpha_f={self.alpha_f}, alpha_b={self.alpha_b}, "
                f"guard={self.guard!r}, control={self.control}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """y before the affine map and the guard (updates the running estimates in training)."""
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"input of shape {tuple(x.shape)}, expected (N, {self.num_features}, ...)")
        if self.training:
            return OnlineNormFunction.apply(x, self, self.alpha_f, self.alpha_b, self.eps,
                                            self.control)
        return ((x - _per_feature(self.m, x.dim()))
                / _per_feature(torch.sqrt(self.var + self.eps), x.dim()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.normalize(x)
        if self.weight is not None:
            out = out * _per_feature(self.weight, x.dim()) + _per_feature(self.bias, x.dim())
        if self.guard == "layer_scaling":
            rms = out.flatten(1).pow(2).mean(1).add(self.ls_eps).sqrt()
            out = out / rms.view(-1, *([1] * (x.dim() - 1)))
        elif self.guard == "clamp":
            out = out.clamp(-self.clamp, self.clamp)
        return out


def online_norm(**kwargs):
    """A factory width/channels -> OnlineNorm(width, **kwargs), for `MLP(norm=...)` and
    `SmallCNN(norm=...)`."""
    def make(num_features: int) -> OnlineNorm:
        return OnlineNorm(num_features, **kwargs)
    return make
