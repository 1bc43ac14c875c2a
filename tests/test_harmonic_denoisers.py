import math

import pytest
import torch

from repro.generative_diffusion.harmonic_denoisers import (StackedDenoisers, StackedNoiseDenoisers,
                                                           blind_denoising_loss,
                                                           cosine_similarity, denoising_mse,
                                                           jacobian, nearest_cosine,
                                                           stacked_score, sure)
from repro.generative_diffusion.processes import VarianceExploding

pytestmark = pytest.mark.usefixtures("float64")


def _model(k=3, width=5, depth=3, seed=0):
    return StackedDenoisers(k, width=width, depth=depth,
                            generator=torch.Generator().manual_seed(seed))


def test_each_model_is_a_bias_free_conv_net_as_torch_computes_it():
    model = _model()
    y = torch.randn(3, 4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    out = model.residual(y)
    for k in range(3):
        h = y[k]
        for i, w in enumerate(model.weights):
            h = torch.nn.functional.conv2d(h, w[k].reshape(w.shape[1], -1, 3, 3), padding=1)
            if i < len(model.weights) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(out[k], h)
    torch.testing.assert_close(model(y), y - out)


def test_models_do_not_see_each_other():
    model = _model()
    y = torch.randn(3, 2, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    z = y.clone()
    z[1] += 1.0
    torch.testing.assert_close(model(y)[[0, 2]], model(z)[[0, 2]])


def test_bias_free_denoiser_is_homogeneous_and_equals_its_jacobian_times_input():
    model = _model(k=2, width=6, depth=4)
    y = torch.randn(1, 6, 6, generator=torch.Generator().manual_seed(3))
    jac, d = jacobian(model, 1, y)
    torch.testing.assert_close(jac @ y.flatten(), d.flatten())
    full = torch.stack([y, y])[:, None]
    torch.testing.assert_close(model(2.5 * full), 2.5 * model(full))


def test_jacobian_matches_finite_differences():
    model = _model(k=2, width=4, depth=3)
    y = torch.randn(1, 5, 5, generator=torch.Generator().manual_seed(4))
    jac, _ = jacobian(model, 0, y)
    h = 1e-6
    for i in (0, 7, 24):
        e = torch.zeros(25)
        e[i] = h
        plus = jacobian(model, 0, y + e.reshape(y.shape))[1].flatten()
        minus = jacobian(model, 0, y - e.reshape(y.shape))[1].flatten()
        torch.testing.assert_close(jac[:, i], (plus - minus) / (2 * h), atol=1e-6, rtol=1e-5)


def test_loss_of_the_identity_denoiser_is_the_mean_noise_energy():
    # D(y) = y (zero residual): E|sigma eps|^2 = dim E[sigma^2], sigma log-uniform in [a, b]:
    # E[sigma^2] = (b^2 - a^2) / (2 log(b / a)); the loss sums over the K models
    model = _model(k=2)
    for w in model.weights:
        torch.nn.init.zeros_(w)
    sets = [torch.rand(3, 1, 4, 4), torch.rand(5, 1, 4, 4)]
    a, b = 0.1, 2.0
    loss = blind_denoising_loss(model, sets, 100_000, a, b, torch.Generator().manual_seed(5))
    expected = 2 * 16 * (b ** 2 - a ** 2) / (2 * math.log(b / a))
    assert loss.item() == pytest.approx(expected, rel=1e-2)


def test_denoising_mse_of_the_identity_is_sigma_squared():
    model = _model(k=2)
    for w in model.weights:
        torch.nn.init.zeros_(w)
    images = torch.rand(4000, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    err = denoising_mse(model, images, [0.1, 0.5], torch.Generator().manual_seed(7))
    assert err.shape == (2, 2)
    torch.testing.assert_close(err, torch.tensor([[0.01, 0.25]] * 2), rtol=2e-2, atol=0)


def test_score_is_tweedie_residual_over_sigma_squared():
    model = _model(k=2)
    process = VarianceExploding(0.1, 3.0)
    y = torch.randn(2, 3, 1, 6, 6, generator=torch.Generator().manual_seed(8))
    t = torch.tensor(0.4)
    expected = (model(y) - y) / process.sigma(t) ** 2
    torch.testing.assert_close(stacked_score(model, process)(y, t), expected.detach())


def test_sure_is_unbiased_for_a_linear_shrinkage():
    # D(y) = c y on x ~ N(0, s^2 I_d): E|D(y) - x|^2 = d ((c - 1)^2 s^2 + c^2 sigma^2)
    d, s, sigma, c = 16, 0.8, 0.5, 0.6
    g = torch.Generator().manual_seed(9)
    x = s * torch.randn(200_000, d, generator=g)
    y = x + sigma * torch.randn(x.shape, generator=g)
    est = sure(((y - c * y) ** 2).sum(1), c * d, sigma, d).mean().item()
    assert est == pytest.approx(d * ((c - 1) ** 2 * s ** 2 + c ** 2 * sigma ** 2), rel=1e-2)


def test_cosine_similarity_and_nearest_image():
    a = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(10))
    torch.testing.assert_close(cosine_similarity(a, 2 * a), torch.ones(3))
    torch.testing.assert_close(cosine_similarity(a, -a), -torch.ones(3))
    ref = torch.cat([torch.rand(5, 1, 4, 4), 3 * a[1:2]])
    best, idx = nearest_cosine(a[1:2], ref)
    assert idx.item() == 5 and best.item() == pytest.approx(1.0)


def test_noise_denoisers_are_independent_preconditioned_mlps():
    process = VarianceExploding(0.01, 3.0)
    model = StackedNoiseDenoisers(2, 4, process, width=5, depth=2, sigma_data=0.2,
                                  generator=torch.Generator().manual_seed(11))
    for b in model.biases:
        torch.nn.init.normal_(b)
    g = torch.Generator().manual_seed(12)
    x, t = torch.randn(6, 4, generator=g), torch.rand(6, generator=g)
    out = model(x, t)
    sig = process.sigma(t)[:, None]
    c_in, c_skip = 1 / (sig ** 2 + 0.04).sqrt(), 0.04 / (sig ** 2 + 0.04)
    for k in range(2):
        rows = slice(3 * k, 3 * k + 3)
        h = torch.cat([c_in[rows] * x[rows], model.time(t[rows], 3)], 1)
        for i, (w, b) in enumerate(zip(model.weights, model.biases)):
            h = h @ w[k] + b[k]
            if i < len(model.weights) - 1:
                h = torch.nn.functional.gelu(h)
        d = c_skip[rows] * x[rows] + sig[rows] * 0.2 * c_in[rows] * h
        torch.testing.assert_close(out[rows], (x[rows] - d) / sig[rows])
    z = x.clone()
    z[4] += 1.0
    torch.testing.assert_close(model(z, t)[:3], out[:3])


def test_noise_denoiser_with_constant_output_memorizes_one_image_at_every_noise_level():
    # readout weights zero, readout bias x0 / (sigma_data): at large sigma D -> x0, so the noise
    # prediction is (x_t - x0) / sigma, the exact noise of x_t = x0 + sigma eps
    process = VarianceExploding(0.01, 3.0)
    model = StackedNoiseDenoisers(1, 4, process, width=3, depth=1, sigma_data=1e-4)
    x0 = torch.tensor([0.2, 0.5, 0.9, 0.0])
    torch.nn.init.zeros_(model.weights[-1])
    with torch.no_grad():
        model.biases[-1][0, 0] = x0 / 1e-4
    t = torch.tensor([0.3, 0.6, 1.0])
    xt, eps = process.perturb(x0.expand(3, 4), t, generator=torch.Generator().manual_seed(13))
    torch.testing.assert_close(model(xt, t), eps, atol=1e-4, rtol=1e-4)


def test_bad_input_raises():
    model = _model(k=2)
    with pytest.raises(ValueError, match="models"):
        model(torch.zeros(3, 1, 1, 4, 4))
    with pytest.raises(ValueError, match="one per model"):
        blind_denoising_loss(model, [torch.zeros(2, 1, 4, 4)], 4, 0.1, 1.0)
    with pytest.raises(ValueError, match="sigma_max"):
        blind_denoising_loss(model, [torch.zeros(2, 1, 4, 4)] * 2, 4, 1.0, 0.5)
    with pytest.raises(ValueError, match="k =="):
        jacobian(model, 2, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="same shape"):
        cosine_similarity(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError):
        StackedDenoisers(0)
    with pytest.raises(ValueError, match="models"):
        StackedNoiseDenoisers(2, 4, VarianceExploding())(torch.zeros(3, 4), torch.tensor(0.5))
    with pytest.raises(ValueError):
        sure(1.0, 1.0, -0.1, 4)
