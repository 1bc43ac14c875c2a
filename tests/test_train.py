import pytest
import torch

from repro.core import models, train


def test_fit_learns_a_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = (x[:, 0] > 0).long()
    model = models.MLP(2, 2, width=16, depth=1)
    history = train.fit(model, train.cross_entropy, torch.optim.Adam(model.parameters(), 1e-2),
                        steps=200, data=train.batches(x, y, batch_size=32), record_every=10)
    assert list(history.columns) == ["step", "loss"] and history.step.iloc[-1] == 200
    assert history.loss.iloc[-1] < 0.3 * history.loss.iloc[0]
    assert train.accuracy(model, x, y) > 0.95


def test_callback_values_are_recorded_after_their_step():
    model = torch.nn.Linear(1, 1, bias=False)
    w0 = model.weight.item()
    history = train.fit(model, lambda m, b: m.weight.pow(2).sum(), torch.optim.SGD(model.parameters(), 0.1),
                        steps=5, record_every=2, callback=lambda step, m: {"w": m.weight.item()})
    # gradient descent on w^2 with lr 0.1 multiplies w by 0.8 a step; the loss is the one the step took
    assert list(history.columns) == ["step", "loss", "w"] and history.step.tolist() == [2, 4, 5]
    assert history.w.tolist() == pytest.approx([w0 * 0.8 ** k for k in (2, 4, 5)], rel=1e-5)
    assert history.loss.tolist() == pytest.approx([w0 ** 2 * 0.64 ** (k - 1) for k in (2, 4, 5)], rel=1e-5)


def test_fit_errors():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), 0.1)
    with pytest.raises(ValueError, match="steps == 0"):
        train.fit(model, lambda m, b: m.weight.sum(), opt, steps=0)
    with pytest.raises(FloatingPointError, match="at step 1"):
        train.fit(model, lambda m, b: m.weight.sum() * float("nan"), opt, steps=2)


def test_batches():
    x, y = torch.arange(10.0), torch.arange(10)
    first = [next(it) for it in [train.batches(x, y, batch_size=5, seed=1)] for _ in range(2)]
    seen = torch.cat([b[1] for b in first])
    assert sorted(seen.tolist()) == list(range(10))  # one epoch without replacement
    with pytest.raises(ValueError, match="different lengths"):
        next(train.batches(x, y[:3], batch_size=2))
    with pytest.raises(ValueError, match=r"batch_size == 20, must be in \[1, 10\]"):
        next(train.batches(x, batch_size=20))


def test_quiet(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(train.QUIET_ENV, raising=False)
    assert not train.quiet()
    monkeypatch.setenv("CI", "true")
    assert train.quiet()


def test_scheduler_and_per_step_inputs():
    model = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), 1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    seen = []
    train.fit(model, lambda m, beta: seen.append(beta) or m.weight.sum() * beta, opt, steps=3,
              data=iter([1.0, 2.0, 3.0]), scheduler=scheduler)
    assert seen == [1.0, 2.0, 3.0] and opt.param_groups[0]["lr"] == 0.125


def test_evaluation_keeps_the_training_mode():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    x, y = torch.randn(8, 2), torch.zeros(8, dtype=torch.long)
    model.train()
    train.accuracy(model, x, y)
    train.mean_loss(model, train.cross_entropy, x, y)
    assert model.training
    model.eval()
    train.accuracy(model, x, y)
    assert not model.training
