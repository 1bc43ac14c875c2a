import numpy as np
import pytest
import torch

from repro.core import stacked
from repro.core.models import MLP, count_parameters
from repro.core.stacked import Ensemble, MemberAdam, StackedLinear, StackedModels
from repro.optimization import adam


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 3, generator=g), torch.arange(40) % 2


def _train_separately(seed, lr, steps, x, y):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = adam.make("Adam", model.parameters(), lr)
    batches = stacked.member_batches(len(x), 8, [seed])
    for _ in range(steps):
        idx = next(batches)[0]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return torch.cat([model.weight.detach().flatten(), model.bias.detach()])


def test_members_train_as_separate_runs():
    x, y = _data()
    seeds, rates = [0, 1, 0], torch.tensor([0.01, 0.01, 0.1])
    stack = Ensemble.from_seeds(lambda: torch.nn.Linear(3, 2), seeds)
    opt = adam.make("Adam", stack.parameters(), rates)

    def per_member(logits, labels):
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(1)

    loss = lambda model, idx: per_member(model(x[idx]), y[idx])  # noqa: E731
    full = lambda model: per_member(model(x, shared=True), y.expand(3, -1))  # noqa: E731

    hist = stacked.fit_members(stack, loss, opt, steps=12, data=stacked.member_batches(40, 8, seeds),
                               callback=lambda step, m: {"full": full(m)}, every=4)
    assert len(hist) == 36 and not hist.diverged.any()
    assert sorted(hist.dropna(subset=["full"]).step.unique()) == [4, 8, 12]
    for i, m in enumerate(stack.members()):
        ours = torch.cat([m.weight.detach().flatten(), m.bias.detach()])
        torch.testing.assert_close(ours, _train_separately(seeds[i], float(rates[i]), 12, x, y),
                                   rtol=1e-5, atol=1e-6)
    scores = stacked.member_scores(hist)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_dropout_differs_between_members_and_is_off_in_eval():
    stack = Ensemble.from_seeds(lambda: torch.nn.Sequential(torch.nn.Dropout(0.5)), [0, 0])
    x = torch.ones(2, 1000)
    stack.train()
    out = stack(x)
    assert not torch.equal(out[0], out[1])
    stack.eval()
    assert torch.equal(stack(x), x)


def test_a_diverging_member_is_marked_and_the_others_train_on():
    x, y = _data()
    stack = Ensemble.from_seeds(lambda: torch.nn.Linear(3, 1), [0, 0])
    opt = adam.make("SGD-Nesterov", stack.parameters(), torch.tensor([1e-3, 1e3]))
    target = (y.float() * 1e3)[:, None]

    def loss(model, idx):
        return ((model(x[idx]) - target[idx]) ** 2).mean(dim=(1, 2))

    hist = stacked.fit_members(stack, loss, opt, steps=60, data=stacked.member_batches(40, 8, [0, 0]))
    last = hist[hist.step == 60].set_index("member")
    assert not last.diverged[0] and last.diverged[1] and np.isnan(last.loss[1]) and np.isfinite(last.loss[0])
    assert list(np.isinf(stacked.member_scores(hist))) == [False, True]


def test_batches_follow_each_seed():
    rows = next(stacked.member_batches(10, 5, [3, 4, 3]))
    assert rows.shape == (3, 5) and torch.equal(rows[0], rows[2]) and not torch.equal(rows[0], rows[1])
    with pytest.raises(ValueError, match="batch_size"):
        next(stacked.member_batches(10, 11, [0]))


def test_an_ensemble_runs_each_member_on_its_own_inputs_and_trains_them_separately():
    torch.manual_seed(0)
    nets = [MLP(3, 2, width=4, depth=1) for _ in range(3)]
    x = torch.randn(3, 5, 3)  # one batch per member
    ensemble = Ensemble(nets)
    assert len(ensemble) == 3
    assert sum(p.numel() for p in ensemble.parameters()) == 3 * count_parameters(nets[0])
    torch.testing.assert_close(ensemble(x), torch.stack([net(xi) for net, xi in zip(nets, x)]))
    # a step on member 0's loss alone leaves the others where they were
    opt = torch.optim.SGD(ensemble.parameters(), lr=0.1)
    ensemble(x)[0].pow(2).sum().backward()
    opt.step()
    before = [[p.detach().clone() for p in net.parameters()] for net in nets]
    members = ensemble.members()
    assert not all(torch.equal(a, b) for a, b in zip(members[0].parameters(), before[0]))
    for net, old in zip(members[1:], before[1:]):
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), old))
    torch.testing.assert_close(ensemble(x)[0], members[0](x[0]))
    with pytest.raises(ValueError, match="at least one model"):
        Ensemble([])


def test_stacked_linear_is_its_layers_side_by_side():
    torch.manual_seed(0)
    layer = StackedLinear.uniform(3, 4, 2, scale=0.5)
    assert layer.weight.abs().max() <= 0.5 / 4 ** 0.5 and not layer.bias.any()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(3, 5, 6, 4)  # extra dimensions between the copies and the features
    out = layer(x)
    for c in range(3):
        torch.testing.assert_close(out[c], x[c] @ layer.weight[c] + layer.bias[c, 0])
    torch.testing.assert_close(layer(x[[2, 0]], index=[2, 0]), out[[2, 0]])
    bare = StackedLinear(layer.weight.detach().clone())
    torch.testing.assert_close(bare(x), out - layer.bias.detach()[:, None])


def test_stacked_models_compute_what_their_copies_compute():
    class Shifted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.shift = MLP(4, 2, width=5, depth=2, activation="tanh"), torch.nn.Parameter(torch.randn(()))

        def forward(self, x):
            return self.net(x) + self.shift

    torch.manual_seed(0)
    copies = [Shifted() for _ in range(3)]
    stack = StackedModels(copies)
    assert len(stack) == 3 and sum(p.numel() for p in stack.parameters()) == 3 * count_parameters(copies[0])
    x = torch.randn(3, 7, 4)
    torch.testing.assert_close(stack(x), torch.stack([m(xi) for m, xi in zip(copies, x)]))
    with torch.no_grad():
        for p in stack.parameters():
            p.mul_(2.0)
    for m, xi, yi in zip(stack.members(), x, stack(x)):
        assert not m.training
        torch.testing.assert_close(m(xi), yi)
    with pytest.raises(ValueError, match="at least one model"):
        StackedModels([])

def test_stacked_models_refuse_other_parameters():
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.scale = torch.nn.Linear(2, 2), torch.nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.lin(x) * self.scale

    with pytest.raises(ValueError, match="scale"):
        StackedModels([Scaled(), Scaled()])


def test_member_adam_is_adam_at_each_copy_s_learning_rate():
    torch.manual_seed(0)
    w0 = torch.randn(2, 3)
    stacked = torch.nn.Parameter(w0.clone())
    singles = [torch.nn.Parameter(w0[e].clone()) for e in range(2)]
    opt = MemberAdam([stacked], [1e-2, 3e-3])
    opts = [torch.optim.Adam([singles[0]], lr=1e-2), torch.optim.Adam([singles[1]], lr=3e-3)]
    target = torch.tensor([1.0, -2.0, 0.5])
    for _ in range(20):
        for o in [opt, *opts]:
            o.zero_grad()
        ((stacked - target) ** 4).sum().backward()
        for p in singles:
            ((p - target) ** 4).sum().backward()
        for o in [opt, *opts]:
            o.step()
    for e in range(2):
        torch.testing.assert_close(stacked[e], singles[e], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lrs =="):
        MemberAdam([torch.nn.Parameter(torch.zeros(2, 1))], [1e-3, 0.0])
