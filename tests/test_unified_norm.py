import math

import pytest
import torch
from torch import nn

from repro.core.transformer import TinyTransformer
from repro.normalization.unified_norm import (TokenBatchNorm, UnifiedNorm, fold_into_linear,
                                              fold_transformer, unified_norm)


def _plain(layer, x):
    """y = gamma x / sqrt(mean(x^2) + eps) + beta over every axis but the last, by autograd."""
    q = (x * x).reshape(-1, x.shape[-1]).mean(0)
    return layer.weight * x / (q + layer.eps).sqrt() + layer.bias


def test_hand_computed_forward():
    # one feature, batch of 2 x 2 tokens: q = (1 + 4 + 9 + 16) / 4 = 7.5
    layer = UnifiedNorm(1, window=1, eps=0.0)
    x = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])
    y = layer(x)
    assert torch.allclose(y, x / math.sqrt(7.5))
    assert torch.allclose(layer.running_var, torch.tensor([0.9 + 0.1 * 7.5]))


def test_window_one_is_uncentered_batch_norm_with_exact_gradients():
    torch.manual_seed(0)
    layer = UnifiedNorm(5, window=1)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.normal_()
    for _ in range(3):
        x = (torch.randn(4, 6, 5) * 3 + 1).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        g = torch.randn(4, 6, 5)
        y = layer(x)
        y.backward(g)
        ref = _plain(layer, x_ref)
        ref.backward(g)
        assert torch.allclose(y, ref, atol=1e-5)
        assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)


def test_matches_torch_batch_norm_on_centered_input():
    torch.manual_seed(1)
    x = torch.randn(8, 4, 3)
    x = x - x.reshape(-1, 3).mean(0)                      # every feature has batch mean zero
    g = torch.randn(8, 4, 3)
    g = g - g.reshape(-1, 3).mean(0)                      # so BN's extra -mean(g) term vanishes
    un, bn = UnifiedNorm(3, window=1), TokenBatchNorm(3)
    xu, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    yu, yb = un(xu), bn(xb)
    assert torch.allclose(yu, yb, atol=1e-5)
    yu.backward(g)
    yb.backward(g)
    assert torch.allclose(xu.grad, xb.grad, atol=1e-5)


def test_forward_smoothing_is_the_geometric_mean_of_the_window():
    layer = UnifiedNorm(1, window=2, warmup=0, eps=0.0, momentum=0.5)
    qs = [4.0, 1.0, 16.0]
    outs = []
    for q in qs:
        outs.append(layer(torch.full((3, 1), math.sqrt(q))))
    # iterations 1 and 2 (<= W) use the batch statistic; iteration 3 the GM of q_2, q_3 = 4
    assert torch.allclose(outs[0], torch.ones(3, 1))
    assert torch.allclose(outs[1], torch.ones(3, 1))
    assert torch.allclose(outs[2], torch.full((3, 1), 4.0 / 2.0))
    assert torch.allclose(layer.last_stat, torch.tensor([4.0]))
    assert torch.allclose(layer.running_var, torch.tensor([0.5 ** 3 + 0.5 ** 3 * 4 + 0.5 ** 2 + 0.5 * 4]))


def test_backward_smoothing_uses_the_averaged_projection():
    layer = UnifiedNorm(1, window=2, warmup=0, eps=0.0, momentum=0.5)
    gzs = []
    for t in range(3):
        x = torch.tensor([[1.0], [-1.0]], requires_grad=True)   # q = 1, z = x
        g = torch.tensor([[1.0 + t], [0.0]])
        layer(x).backward(g)
        gzs.append((g * x.detach()).mean().item())               # mean(g z) of this iteration
        if t == 2:
            ema = layer.ema_gz.item()
            # ema after 3 iterations: 0.5 * (0.5 * (0.5 * 0 + 0.5 gz1) + 0.5 gz2) + 0.5 * mean(gz2, gz3)
            expected = 0.5 * (0.5 * (0.5 * gzs[0]) + 0.5 * gzs[1]) + 0.5 * (gzs[1] + gzs[2]) / 2
            assert ema == pytest.approx(expected)
            assert torch.allclose(x.grad, g - ema * x.detach())


def test_outlier_is_filtered_and_kept_out_of_the_window():
    torch.manual_seed(2)
    layer = UnifiedNorm(4, window=4, warmup=8, outlier_filtration=True)
    for _ in range(20):
        layer(torch.randn(64, 4))
    assert layer.outliers.item() == 0
    before = layer.buffer_q.clone()
    layer(torch.randn(64, 4) * 30)                               # an outlier batch
    assert layer.outliers.item() == 1 and layer.last_skip
    assert layer.buffer_q.max() < before.max() * 2               # replaced by the running statistic


def test_eval_is_affine_and_folds_into_the_next_linear():
    torch.manual_seed(3)
    norm, lin = UnifiedNorm(6, window=2, warmup=0), nn.Linear(6, 5)
    for _ in range(5):
        norm(torch.randn(10, 6) * 2)
    norm.eval()
    x = torch.randn(7, 6)
    assert torch.allclose(fold_into_linear(norm, lin)(x), lin(norm(x)), atol=1e-5)
    a, b = norm.affine()
    assert torch.allclose(norm(x), a * x + b)
    with pytest.raises(TypeError):
        fold_into_linear(nn.LayerNorm(6), lin)


def test_fold_transformer_gives_the_same_logits():
    torch.manual_seed(4)
    model = TinyTransformer(8, context=16, norm=unified_norm(window=2, warmup=0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        ids = torch.randint(0, 8, (4, 16))
        opt.zero_grad()
        model(ids).square().mean().backward()
        opt.step()
    model.eval()
    ids = torch.randint(0, 8, (3, 16))
    with torch.no_grad():
        before = model(ids)
        after = fold_transformer(model)(ids)
    assert not any(isinstance(m, UnifiedNorm) for m in model.modules())
    assert torch.allclose(before, after, atol=1e-5)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        UnifiedNorm(4, momentum=1.0)
    with pytest.raises(ValueError):
        UnifiedNorm(4)(torch.randn(2, 5))
