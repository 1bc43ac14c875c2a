import numpy as np
import pytest
import torch

from repro.optimization import adam, members


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 3, generator=g), torch.arange(40) % 2


def _train_separately(seed, lr, steps, x, y):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = adam.make("Adam", model.parameters(), lr)
    batches = members.member_batches(len(x), 8, [seed])
    for _ in range(steps):
        idx = next(batches)[0]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return torch.cat([model.weight.detach().flatten(), model.bias.detach()])


def test_members_train_as_separate_runs():
    x, y = _data()
    seeds, rates = [0, 1, 0], torch.tensor([0.01, 0.01, 0.1])
    stack = members.Members.from_seeds(lambda: torch.nn.Linear(3, 2), seeds)
    opt = adam.make("Adam", stack.parameters(), rates)

    def per_member(logits, labels):
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(1)

    loss = lambda model, idx: per_member(model(x[idx]), y[idx])  # noqa: E731
    full = lambda model: per_member(model(x, shared=True), y.expand(3, -1))  # noqa: E731

    hist = members.fit_members(stack, loss, opt, steps=12, data=members.member_batches(40, 8, seeds),
                               callback=lambda step, m: {"full": full(m)}, every=4)
    assert len(hist) == 36 and not hist.diverged.any()
    assert sorted(hist.dropna(subset=["full"]).step.unique()) == [4, 8, 12]
    for i, m in enumerate(stack.members()):
        ours = torch.cat([m.weight.detach().flatten(), m.bias.detach()])
        torch.testing.assert_close(ours, _train_separately(seeds[i], float(rates[i]), 12, x, y),
                                   rtol=1e-5, atol=1e-6)
    scores = members.member_scores(hist)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_dropout_differs_between_members_and_is_off_in_eval():
    stack = members.Members.from_seeds(lambda: torch.nn.Sequential(torch.nn.Dropout(0.5)), [0, 0])
    x = torch.ones(2, 1000)
    stack.train()
    out = stack(x)
    assert not torch.equal(out[0], out[1])
    stack.eval()
    assert torch.equal(stack(x), x)


def test_a_diverging_member_is_marked_and_the_others_train_on():
    x, y = _data()
    stack = members.Members.from_seeds(lambda: torch.nn.Linear(3, 1), [0, 0])
    opt = adam.make("SGD-Nesterov", stack.parameters(), torch.tensor([1e-3, 1e3]))
    target = (y.float() * 1e3)[:, None]

    def loss(model, idx):
        return ((model(x[idx]) - target[idx]) ** 2).mean(dim=(1, 2))

    hist = members.fit_members(stack, loss, opt, steps=60, data=members.member_batches(40, 8, [0, 0]))
    last = hist[hist.step == 60].set_index("member")
    assert not last.diverged[0] and last.diverged[1] and np.isnan(last.loss[1]) and np.isfinite(last.loss[0])
    assert list(np.isinf(members.member_scores(hist))) == [False, True]


def test_batches_follow_each_seed():
    rows = next(members.member_batches(10, 5, [3, 4, 3]))
    assert rows.shape == (3, 5) and torch.equal(rows[0], rows[2]) and not torch.equal(rows[0], rows[1])
    with pytest.raises(ValueError, match="batch_size"):
        next(members.member_batches(10, 11, [0]))
