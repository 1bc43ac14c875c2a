"""Tests of repro.optimization.batch_size: AdaGrad-Norm against its update equation, per-example
gradients against autograd, the batch-size tests against their definitions, and the growing-batch
training loop."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from repro.core.tuning import GridEdgeError
from repro.optimization import batch_size as bs
from repro.optimization import benchmark


def test_adagrad_norm_follows_its_update_equation():
    torch.manual_seed(0)
    a, b = torch.randn(3, 2, requires_grad=True), torch.randn(4, requires_grad=True)
    opt = bs.AdaGradNorm([a, b], lr=0.5, initial_accumulator_value=0.1, eps=0.0)
    x, v = [a.detach().clone(), b.detach().clone()], 0.1
    for _ in range(4):
        opt.zero_grad()
        loss = (a ** 3).sum() + (b.sin() * torch.arange(4.0)).sum()
        loss.backward()
        grads = [a.grad.clone(), b.grad.clone()]
        opt.step()
        v += sum(float((g * g).sum()) for g in grads)
        x = [xi - 0.5 * g / math.sqrt(v) for xi, g in zip(x, grads)]
        torch.testing.assert_close(a.detach(), x[0])
        torch.testing.assert_close(b.detach(), x[1])


def test_adagrad_norm_calls_the_closure_and_rejects_a_bad_rate():
    p = torch.ones(2, requires_grad=True)
    opt = bs.AdaGradNorm([p], lr=1.0)

    def closure():
        opt.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0
    with pytest.raises(ValueError):
        bs.AdaGradNorm([p], lr=0.0)


def _model_and_data(n=12):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    return model, torch.randn(n, 5), torch.randint(0, 3, (n,))


def test_per_example_gradients_match_autograd():
    model, x, y = _model_and_data()
    grads = bs.per_example_gradients(model, x, y)
    assert grads.shape == (len(x), sum(p.numel() for p in model.parameters()))
    for i in (0, 5):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(grads[i], torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    full = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(grads.mean(0), full, atol=1e-6, rtol=1e-5)


def test_the_tests_match_their_definitions():
    torch.manual_seed(2)
    grads = torch.randn(9, 6, dtype=torch.float64) + torch.linspace(-1, 2, 6, dtype=torch.float64)
    g = grads.mean(0)
    norm2 = float(g @ g)
    assert bs.norm_test(grads, 0.5) == pytest.approx(float(grads.var(0).sum()) / (0.25 * norm2))
    assert bs.inner_product_test(grads, 0.7) == pytest.approx(
        float((grads @ g).var()) / (0.49 * norm2 ** 2))
    orthogonal = grads - torch.outer(grads @ g / norm2, g)
    assert bs.orthogonality_test(grads, 2.0) == pytest.approx(float(orthogonal.var(0).sum()) / (4 * norm2))
    assert bs.augmented_inner_product_test(grads, 0.7, 2.0) == max(
        bs.inner_product_test(grads, 0.7), bs.orthogonality_test(grads, 2.0))
    # identical per-example gradients: no variance, no demand; one example is refused
    same = g.repeat(4, 1)
    assert bs.norm_test(same, 0.1) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        bs.norm_test(grads[:1], 0.5)


def test_next_batch_size_never_shrinks_and_is_capped():
    assert bs.next_batch_size(16, 3.2, 100) == 16
    assert bs.next_batch_size(16, 20.0, 100) == 20
    assert bs.next_batch_size(16, 20.2, 100) == 21
    assert bs.next_batch_size(16, 1e9, 100) == 100
    assert bs.next_batch_size(16, math.inf, 100) == 100


def test_train_grows_the_batch_and_counts_samples():
    task = benchmark.task("logistic")
    x, y = bs.digits_training_set()
    curve, diverged = bs.train(task, x, y, bs.AdaGradNorm, 1.0, seed=0, samples=2000, batch_size=8,
                               test=lambda g: bs.norm_test(g, 0.5))
    assert not diverged
    assert curve.batch_size.is_monotonic_increasing and curve.batch_size.iloc[-1] > 8
    assert curve.samples.iloc[-1] >= 2000 and (curve.samples.diff().dropna() == curve.batch_size[1:]).all()
    assert curve.eval_loss.notna().sum() >= 5 and math.isfinite(curve.eval_loss.iloc[-1])
    constant, _ = bs.train(task, x, y, bs.AdaGradNorm, 1.0, seed=0, samples=1000, batch_size=64)
    assert set(constant.batch_size) == {64} and constant.samples.iloc[-1] == 1024


def test_compare_tunes_every_scheme_and_refuses_an_edge():
    task = benchmark.task("logistic")
    x, y = bs.digits_training_set()
    schemes = {"norm": bs.Scheme(bs.AdaGradNorm, 8, lambda g: bs.norm_test(g, 0.5)),
               "constant": bs.Scheme(bs.AdaGradNorm, 32)}
    grids = {"norm": [0.01, 1.0, 1000.0], "constant": [0.01, 1.0, 1000.0]}
    result = bs.compare(schemes, task, x, y, lr_grids=grids, seeds=[0, 1], samples=1500)
    assert list(result.chosen.lr) == [1.0, 1.0]
    assert result.finals().shape == (2, 2) and result.finals().notna().all().all()
    steps = bs.steps_to(result.curves, 10.0)
    assert (steps.step == 1).all()
    with pytest.raises(GridEdgeError):
        bs.compare(schemes, task, x, y, lr_grids={"norm": [1e-4, 3e-4, 1e-3],
                                                  "constant": [1e-4, 3e-4, 1e-3]},
                   seeds=[0], samples=500)
    with pytest.raises(ValueError):
        bs.compare(schemes, task, x, y, lr_grids={"norm": [0.1, 1, 10]}, seeds=[0], samples=500)
