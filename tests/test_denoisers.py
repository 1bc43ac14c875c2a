import pytest
import torch

from repro.generative_diffusion.denoisers import ConvDenoiser, MLPDenoiser
from repro.generative_diffusion.mixtures import GaussianMixture
from repro.generative_diffusion.objectives import (denoised_from_noise, noise_prediction_loss,
                                                   score_from_noise, score_model)
from repro.generative_diffusion.processes import VariancePreserving


def test_shapes_and_time_inputs():
    mlp = MLPDenoiser(3, width=16, depth=2)
    x = torch.randn(5, 3)
    assert mlp(x, 0.5).shape == (5, 3)
    assert mlp(x, torch.rand(5)).shape == (5, 3)
    conv = ConvDenoiser(width=8, depth=2)
    assert conv(torch.randn(4, 1, 8, 8), torch.rand(4)).shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="side"):
        conv(torch.randn(4, 64), 0.5)


def test_exact_noise_predictor_minimises_the_loss():
    # for mixture data the optimal eps-predictor is -sigma * grad log p_t
    torch.manual_seed(0)
    data = GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], scales=[0.5, 0.3])
    vp = VariancePreserving()

    def oracle(x, t):
        out = torch.empty_like(x)
        for i in range(len(x)):
            law = data.noised(vp.alpha(t[i]), vp.sigma(t[i]))
            out[i] = -vp.sigma(t[i]) * law.score(x[i:i + 1].double())[0]
        return out

    x0 = data.sample(2000).float()
    g = torch.Generator().manual_seed(1)
    best = noise_prediction_loss(oracle, x0, vp, generator=g).item()
    g = torch.Generator().manual_seed(1)
    zero = noise_prediction_loss(lambda x, t: torch.zeros_like(x), x0, vp, generator=g).item()
    assert best < 0.8 * zero


def test_conversions_invert_the_forward_process():
    vp = VariancePreserving()
    x0, t = torch.randn(6, 2, dtype=torch.float64), torch.rand(6, dtype=torch.float64)
    xt, eps = vp.perturb(x0, t)
    assert torch.allclose(denoised_from_noise(xt, eps, vp, t), x0)
    score = score_model(lambda x, s: eps, vp)(xt, t)
    assert torch.allclose(score, score_from_noise(eps, vp, t))
    assert torch.allclose(score * vp.sigma(t)[:, None], -eps)
