import pytest
import torch

from repro.generative_diffusion import f_distillation as fd

NAMES = list(fd.WEIGHTS)


@pytest.mark.parametrize("name", NAMES)
def test_weight_is_f_second_derivative_times_r_squared(name):
    r = torch.tensor([0.05, 0.3, 1.0, 2.5, 9.0], dtype=torch.float64, requires_grad=True)
    f = fd.f_function(name)
    (d1,) = torch.autograd.grad(f(r).sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert torch.allclose(fd.weight(name, r.detach().log()), d2 * r.detach() ** 2, rtol=1e-10)
    assert float(f(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)


def test_reverse_kl_weight_is_constant_and_others_increase():
    log_r = torch.linspace(-5, 5, 11, dtype=torch.float64)
    assert torch.all(fd.weight("reverse-kl", log_r) == 1)
    for name in ("forward-kl", "js", "squared-hellinger", "jeffreys"):
        assert torch.all(fd.weight(name, log_r).diff() > 0)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_formula_matches_autograd_of_the_divergence(name):
    mean_q = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    std_q = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    d = fd.gaussian_f_divergence(name, -0.2, 0.9, mean_q, std_q)
    exact = torch.stack(torch.autograd.grad(d, (mean_q, std_q)))
    formula = fd.gaussian_f_distill_gradient(name, -0.2, 0.9, 0.7, 1.3)
    assert torch.allclose(formula, exact, rtol=1e-7, atol=1e-10)


def test_quadrature_matches_closed_form_kl():
    d = fd.gaussian_f_divergence("reverse-kl", 0.0, 1.0, torch.tensor(1.0, dtype=torch.float64),
                                 torch.tensor(2.0, dtype=torch.float64))
    # KL(N(1, 4) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2
    assert float(d) == pytest.approx(-0.6931471805599453 + 2.0, rel=1e-10)


def test_surrogate_gradient_is_weighted_score_difference():
    torch.manual_seed(0)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    s_q, s_p = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    log_r = torch.randn(5, dtype=torch.float64)
    loss = fd.f_distill_loss(x, "js", log_r, s_q, s_p, normalize=False)
    (g,) = torch.autograd.grad(loss, x)
    assert torch.allclose(g, fd.f_divergence_gradient_terms("js", log_r, s_q, s_p) / 5)
    # normalised weights: the reverse-KL surrogate is unchanged, the others are rescaled
    g_rkl = torch.autograd.grad(fd.f_distill_loss(x, "reverse-kl", log_r, s_q, s_p), x)[0]
    assert torch.allclose(g_rkl, (s_q - s_p) / 5)


def test_discriminator_loss_optimum_is_log_ratio():
    # two points, teacher mass 0.8 / 0.2, student 0.5 / 0.5: per-point optimal logit log p/q
    logit = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logit], max_iter=200)
    p = torch.tensor([0.8, 0.2], dtype=torch.float64)
    q = torch.tensor([0.5, 0.5], dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = (p * torch.nn.functional.softplus(-logit)).sum() + \
            (q * torch.nn.functional.softplus(logit)).sum()
        loss.backward()
        return loss
    opt.step(closure)
    assert torch.allclose(logit.detach(), (p / q).log(), atol=1e-4)
    assert float(fd.discriminator_loss(torch.zeros(3), torch.zeros(3))) == pytest.approx(
        2 * 0.6931471805599453)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="divergence"):
        fd.weight("tv", torch.zeros(1))
    with pytest.raises(ValueError, match="one shape"):
        fd.f_distill_loss(torch.zeros(3, 2), "js", torch.zeros(3), torch.zeros(3, 1),
                          torch.zeros(3, 1))
    with pytest.raises(ValueError, match="one value per sample"):
        fd.f_distill_loss(torch.zeros(3, 2), "js", torch.zeros(2), torch.zeros(3, 2),
                          torch.zeros(3, 2))
    with pytest.raises(ValueError, match="nodes"):
        fd.gauss_hermite(1)
