import math

import numpy as np
import pytest
import torch
from torch import nn

from repro.core import models
from repro.normalization import fnn_comparison as fnn

KINDS = {"selu": dict(activation="selu", init="lecun"),
         "relu": dict(activation="relu", init="he"),
         "batch": dict(activation="relu", init="he", norm="batch"),
         "layer": dict(activation="relu", init="he", norm="layer")}


def mlps(kind, copies=3, d_in=5, d_out=3, seed=0):
    torch.manual_seed(seed)
    return [models.MLP(d_in, d_out, width=7, depth=3, **KINDS[kind]) for _ in range(copies)]


# --- the stack against the MLPs it was built from ---------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("training", [True, False])
def test_stack_computes_what_its_mlps_compute(kind, training):
    nets = mlps(kind)
    stack = fnn.StackedMLP(nets)
    x = torch.randn(20, 5)
    for net in nets:
        net.train(training)
    stack.train(training)
    assert torch.allclose(stack(x), torch.stack([net(x) for net in nets]), atol=1e-5)
    # a different input per copy
    xs = torch.randn(3, 20, 5)
    assert torch.allclose(stack(xs), torch.stack([net(xi) for net, xi in zip(nets, xs)]), atol=1e-5)


def test_batch_norm_running_averages_follow_torch():
    nets = mlps("batch")
    stack = fnn.StackedMLP(nets)
    x = torch.randn(16, 5) * 2 + 1
    for net in nets:
        net.train()
        net(x)
    stack.train()
    stack(x)
    bns = [[m for m in net.modules() if isinstance(m, nn.BatchNorm1d)] for net in nets]
    for i in range(len(bns[0])):
        for stat in ("running_mean", "running_var"):
            expected = torch.cat([getattr(b[i], stat) for b in bns])
            assert torch.allclose(getattr(stack, f"{stat}{i}"), expected)


def test_stack_rejects_mixed_architectures_and_dropout():
    with pytest.raises(ValueError, match="same architecture"):
        fnn.StackedMLP(mlps("relu", 1) + mlps("batch", 1))
    with pytest.raises(ValueError, match="dropout"):
        fnn.StackedMLP([models.MLP(5, 3, width=7, depth=2, activation="selu", dropout=0.1)])
    with pytest.raises(ValueError, match="at least one"):
        fnn.StackedMLP([])


# --- SGD with one learning rate per copy --------------------------------------------------------
@pytest.mark.parametrize("kind", ["selu", "batch", "layer"])
def test_train_sgd_equals_plain_sgd_on_each_copy(kind):
    lrs = [0.01, 0.05, 0.2]
    nets = mlps(kind)
    stack = fnn.StackedMLP(nets)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    diverged = fnn.train_sgd(stack, lrs, x, y, steps=7, batch_size=8, seed=3)
    assert not diverged.any() and not stack.training
    from repro.core import train
    for net, lr in zip(nets, lrs):  # the reference: torch's SGD, one net at a time, same batches
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        batches = train.batches(x, y, batch_size=8, seed=3)
        net.train()
        for _ in range(7):
            xb, yb = next(batches)
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
        net.eval()
    assert torch.allclose(stack(x), torch.stack([net(x) for net in nets]), atol=1e-5)


def test_a_diverging_copy_is_frozen_and_leaves_the_others_alone():
    x, y = torch.randn(40, 5) * 10, torch.randint(0, 3, (40,))
    stack = fnn.StackedMLP(mlps("relu"))
    diverged = fnn.train_sgd(stack, [0.01, 1e12, 0.02], x, y, steps=5, batch_size=8, seed=1)
    assert diverged.tolist() == [False, True, False]
    alone = fnn.StackedMLP(mlps("relu"))  # the same initial weights, without the diverging copy
    fnn.train_sgd(alone, [0.01, 0.01, 0.02], x, y, steps=5, batch_size=8, seed=1)
    out, ref = stack(x), alone(x)
    assert torch.allclose(out[[0, 2]], ref[[0, 2]], atol=1e-5)
    loss, correct = fnn.evaluate(stack, x, y)
    assert math.isnan(loss[1]) and np.isfinite(loss[[0, 2]]).all() and correct.shape == (3, 40)


def test_train_sgd_calls_back_in_eval_mode_and_checks_its_rates():
    stack = fnn.StackedMLP(mlps("batch", 2))
    x, y = torch.randn(30, 5), torch.randint(0, 3, (30,))
    seen = []
    fnn.train_sgd(stack, [0.1, 0.1], x, y, steps=10, batch_size=8, record_every=4,
                  callback=lambda step, s: seen.append((step, s.training)))
    assert seen == [(4, False), (8, False), (10, False)]
    with pytest.raises(ValueError, match="one per copy"):
        fnn.train_sgd(stack, [0.1], x, y, steps=1, batch_size=8)
    with pytest.raises(ValueError, match="one per copy"):
        fnn.train_sgd(stack, [0.1, -1.0], x, y, steps=1, batch_size=8)


def test_evaluate_matches_a_direct_computation():
    nets = mlps("selu", 2)
    stack = fnn.StackedMLP(nets)
    x, y = torch.randn(25, 5), torch.randint(0, 3, (25,))
    loss, correct = fnn.evaluate(stack, x, y)
    for i, net in enumerate(nets):
        out = net.eval()(x)
        assert loss[i] == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)
        assert (correct[i] == (out.argmax(-1) == y).numpy()).all()


# --- early stopping, validation split, ranks -----------------------------------------------------
def test_early_stopping_picks_each_copys_best_evaluation():
    val = np.array([[3.0, 2.0, 1.0], [1.0, 2.5, np.nan], [2.0, 0.5, 0.2]])  # (evaluations, copies)
    test = np.arange(3 * 3 * 2).reshape(3, 3, 2)
    score, hits = fnn.early_stopping(val, test)
    assert score[0] == 1.0 and score[1] == 0.5 and math.isnan(score[2])  # copy 2 diverged once
    assert hits[0].tolist() == test[1, 0].tolist() and hits[1].tolist() == test[2, 1].tolist()
    with pytest.raises(ValueError, match="shapes"):
        fnn.early_stopping(val, test[:2])


def test_hold_out_is_stratified_and_disjoint():
    x = torch.arange(100.0)[:, None]
    y = torch.tensor([0] * 80 + [1] * 20)
    x_fit, y_fit, x_val, y_val = fnn.hold_out(x, y, 0.15, seed=0)
    assert len(x_val) == 15 and len(x_fit) == 85 and int(y_val.sum()) == 3
    assert set(x_fit[:, 0].tolist()).isdisjoint(x_val[:, 0].tolist())
    with pytest.raises(ValueError, match="fraction"):
        fnn.hold_out(x, y, 1.5)


def test_average_ranks_share_ties():
    acc = [[0.9, 0.8, 0.9, 0.7],   # ranks 1.5, 3, 1.5, 4
           [0.6, 0.9, 0.8, 0.7]]   # ranks 4, 1, 2, 3
    assert fnn.average_ranks(acc).tolist() == [2.75, 2.0, 1.75, 3.5]
    assert fnn.average_ranks(np.stack([acc, acc])).shape == (2, 4)
    with pytest.raises(ValueError, match="methods >= 2"):
        fnn.average_ranks([[0.5], [0.6]])


def test_rank_gap_and_its_bootstrap():
    rng = np.random.default_rng(0)
    # method 0 right on every test example, the others on about half
    tasks = [np.stack([np.ones(n), rng.random(n) < 0.5, rng.random(n) < 0.5]) for n in (40, 60)]
    ranks = fnn.average_ranks(np.stack([t.mean(1) for t in tasks]))
    gap, se = fnn.rank_gap(tasks, 0, draws=200)
    assert ranks[0] == 1 and gap == ranks[0] - ranks[1:].min() and 0 <= se < 0.5
    assert fnn.rank_gap(tasks, 0, against=[1], draws=200)[0] == ranks[0] - ranks[1]
    # two identical methods: no gap, and no bootstrap draw sees one either
    twins = [np.tile(rng.random(30) < 0.7, (2, 1)) for _ in range(3)]
    assert fnn.rank_gap(twins, 0, draws=50) == (0.0, 0.0)
    with pytest.raises(ValueError, match="distinct"):
        fnn.rank_gap(tasks, 0, against=[0])
    with pytest.raises(ValueError, match="same methods"):
        fnn.rank_gap([tasks[0], tasks[1][:2]], 0)
