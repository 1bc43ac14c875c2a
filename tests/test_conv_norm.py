"""Tests for repro.normalization.conv_norm: ConvNorm (Liu et al. 2021) against its equations built
independently from the explicit circulant matrices of a small multi-channel convolution (channel-wise
isometry: P_i A_i has all singular values 1), the zero-padded layer against a direct computation,
shapes, and where gradients flow."""
import pytest
import torch
from torch import nn

from repro.core.models import SmallCNN
from repro.normalization.conv_norm import (ConvNormConv, circular_conv, conv_norm,
                                           fourier_preconditioner, precondition)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _matrix(op, shape):
    """The matrix of the linear map `op` on inputs of `shape` (C, *n), columns = basis vectors."""
    d = torch.tensor(shape).prod().item()
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
    return op(basis).reshape(d, -1).T


def _channel_blocks(weight, n):
    """A_i, the rows of output channel i of the circular convolution, as explicit matrices."""
    c_out, c_in = weight.shape[:2]
    a = _matrix(lambda x: circular_conv(x, weight), (c_in, n, n))  # (c_out n^2, c_in n^2)
    return a, a.reshape(c_out, n * n, c_in * n * n)


def _inverse_sqrt(m):
    vals, vecs = torch.linalg.eigh(m)
    return vecs @ torch.diag(vals.rsqrt()) @ vecs.T


@pytest.mark.parametrize("c_in,c_out,k,n", [(3, 4, 3, 6), (2, 5, 5, 7), (1, 3, 3, 5)])
def test_preconditioner_is_the_inverse_square_root_of_sum_of_circulant_products(c_in, c_out, k, n):
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    a, blocks = _channel_blocks(w, n)
    expected = torch.cat([_inverse_sqrt(b @ b.T) @ b for b in blocks])  # P_i A_i, stacked
    v_hat = fourier_preconditioner(w, (n, n))
    ours = _matrix(lambda x: precondition(circular_conv(x, w), v_hat), (c_in, n, n))
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("c_in,c_out", [(3, 4), (4, 2), (1, 3)])
def test_channel_wise_isometry(c_in, c_out):
    n = 6
    w = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64) * 3.0
    v_hat = fourier_preconditioner(w, (n, n))
    m = _matrix(lambda x: precondition(circular_conv(x, w), v_hat), (c_in, n, n))
    for block in m.reshape(c_out, n * n, -1):
        s = torch.linalg.svdvals(block)
        torch.testing.assert_close(s, torch.ones_like(s), rtol=0, atol=1e-10)
    # the layer's norm: between 1 and sqrt(c_out), whatever the weights' scale; a large
    # plain convolution's norm drops to it
    a, _ = _channel_blocks(w, n)
    norm = torch.linalg.matrix_norm(m, ord=2).item()
    assert 1 - 1e-9 <= norm <= c_out ** 0.5 + 1e-9
    assert norm < torch.linalg.matrix_norm(a, ord=2).item()


def test_preconditioner_is_scale_invariant():
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    out = precondition(circular_conv(x, w), fourier_preconditioner(w, (6, 6)))
    out10 = precondition(circular_conv(x, 10 * w), fourier_preconditioner(10 * w, (6, 6)))
    torch.testing.assert_close(out, out10)


def test_zero_padded_layer_matches_full_convolution_then_circular_preconditioning():
    layer = ConvNormConv(3, 4, 3, padding=1, affine=False).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    full = nn.functional.conv2d(x, layer.weight, padding=2)  # 10 x 10
    v_hat = fourier_preconditioner(layer.weight, (10, 10))
    expected = precondition(full, v_hat)[..., 1:-1, 1:-1]
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("padding,size", [(0, 6), (1, 8), (2, 10)])
def test_shapes_match_a_plain_convolution(padding, size):
    layer = ConvNormConv(3, 5, 3, padding=padding)
    assert layer(torch.randn(2, 3, 8, 8)).shape == (2, 5, size, size)
    layer1d = ConvNormConv(3, 5, 3, padding=padding, dims=1)
    assert layer1d(torch.randn(2, 3, 8)).shape == (2, 5, size)


def test_no_gradient_through_v_and_gradients_reach_the_weights():
    layer = ConvNormConv(3, 4, 3, padding=1).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    layer(x).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    # the gradient equals the one with v_hat held fixed as a constant
    w = layer.weight.detach().clone().requires_grad_()
    v_hat = fourier_preconditioner(w.detach(), (10, 10))
    out = precondition(nn.functional.conv2d(x, w, padding=2), v_hat)[..., 1:-1, 1:-1]
    layer.affine(out).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, w.grad)


def test_small_cnn_with_conv_norm_trains_a_step():
    net = SmallCNN(1, 10, length=8, dims=2, channels=8, conv=conv_norm(), norm="batch")
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss) and net.features[0].weight.grad is not None


def test_rejects_even_kernels_and_bad_padding():
    with pytest.raises(ValueError):
        ConvNormConv(1, 2, 4)
    with pytest.raises(ValueError):
        ConvNormConv(1, 2, 3, padding=3)
