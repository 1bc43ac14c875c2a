import math

import numpy as np
import pytest
import torch

from repro.optimization import adam
from repro.optimization.adam import Adam

TORCH = {"Adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
         "AdaGrad": lambda p, lr: torch.optim.Adagrad(p, lr=lr),
         "RMSProp": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
         "SGD-Nesterov": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
         "AdaDelta": lambda p, lr: torch.optim.Adadelta(p, lr=lr)}


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _run(make_opt, steps=25, seed=0):
    model = _net(seed)
    x, y = torch.randn(64, 5, generator=torch.Generator().manual_seed(1)), torch.arange(64) % 3
    opt = make_opt(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.0, 0.99), (0.5, 0.9999)])
def test_matches_torch_adam(betas):
    ours = _run(lambda p: Adam(p, lr=1e-2, betas=betas, eps=1e-8))
    ref = _run(lambda p: torch.optim.Adam(p, lr=1e-2, betas=betas, eps=1e-8))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(adam.OPTIMIZERS))
def test_every_optimizer_matches_torch(name):
    lr = 1.0 if name == "AdaDelta" else 0.05
    ours = _run(lambda p: adam.make(name, p, lr))
    ref = _run(lambda p: TORCH[name](p, lr))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(adam.OPTIMIZERS))
def test_one_rate_per_member_equals_separate_runs(name):
    rates = torch.tensor([0.01, 0.1, 0.03])
    torch.manual_seed(0)
    w0, x = torch.randn(3, 4, 2), torch.randn(16, 4)
    target = torch.randn(16, 2)

    def train(w, lr):
        w = torch.nn.Parameter(w.clone())
        opt = adam.make(name, [w], lr)
        for _ in range(10):
            opt.zero_grad()
            ((x @ w - target) ** 2).mean(dim=(-1, -2)).sum().backward()
            opt.step()
        return w.detach()

    stacked = train(w0, rates)
    separate = torch.stack([train(w0[i:i + 1], float(rates[i]))[0] for i in range(3)])
    torch.testing.assert_close(stacked, separate, rtol=1e-6, atol=1e-7)


def test_without_bias_correction_first_step_is_larger():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    for bc, expected in [(True, 1.0), (False, 0.1 / 0.001 ** 0.5)]:
        q = torch.nn.Parameter(p.detach().clone())
        opt = Adam([q], lr=0.01, betas=(0.9, 0.999), eps=0.0, bias_correction=bc)
        q.grad = torch.tensor([3.0, -0.5], dtype=torch.float64)
        opt.step()
        # first step: m_1 = (1-b1) g, v_1 = (1-b2) g^2, so |delta| = lr (with) or lr (1-b1)/sqrt(1-b2)
        delta = opt.state[q]["delta"]
        torch.testing.assert_close(delta.abs(), torch.full_like(delta, 0.01 * expected))
        torch.testing.assert_close(p.detach() - q.detach(), delta)


def test_closure_and_missing_grad():
    a = torch.nn.Parameter(torch.ones(2))
    b = torch.nn.Parameter(torch.ones(2))
    opt = Adam([a, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(2.0)
    assert torch.equal(b.detach(), torch.ones(2)) and b not in opt.state


@pytest.mark.parametrize("kw, match", [(dict(lr=0.0), "lr"), (dict(lr=torch.tensor([0.1, -1.0])), "lr"),
                                       (dict(betas=(0.9, 1.0)), "betas"),
                                       (dict(betas=(0.9,)), "betas"), (dict(eps=-1.0), "eps")])
def test_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        Adam([torch.nn.Parameter(torch.ones(1))], **kw)


def test_make_rejects_unknown_names():
    with pytest.raises(ValueError, match="AdaMax"):
        adam.make("AdaMax", [torch.nn.Parameter(torch.ones(1))], 0.1)


def test_inverse_sqrt_decay():
    p = torch.nn.Parameter(torch.ones(1))
    opt = adam.NesterovSGD([p], lr=torch.tensor([0.5]))
    decay = adam.InverseSqrtDecay(opt)
    for t in range(1, 5):
        assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.5 / math.sqrt(t))
        decay.step()


def test_step_ratio_matches_the_optimizer():
    g = np.random.default_rng(0).standard_normal((3, 40))
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = Adam([p], lr=0.1, eps=0.0)
    seen = []
    for t in range(40):
        p.grad = torch.from_numpy(g[:, t])
        opt.step()
        seen.append(opt.state[p]["delta"].abs() / 0.1)
    np.testing.assert_allclose(adam.step_ratio(g), torch.stack(seen, 1).numpy(), rtol=1e-12)


def test_sparse_and_worst_sequences():
    b = (0.9, 0.999)
    # a gradient that is zero except now: (1-b1)/(1-b1^t) sqrt((1-b2^t)/(1-b2)), -> 0.1/sqrt(0.001)
    spike = np.zeros(5000)
    spike[-1] = 1.0
    assert adam.step_ratio(spike, b)[-1] == pytest.approx(0.1 / (1 - 0.9 ** 5000) * math.sqrt(
        (1 - 0.999 ** 5000) / 0.001))
    # the geometric sequence attains the supremum, and nothing random exceeds it
    for t in (1, 10, 300):
        assert adam.step_ratio(adam.worst_sequence(t, b), b)[-1] == pytest.approx(adam.sup_step_ratio(b, t))
        random = np.random.default_rng(t).standard_normal((2000, t)) * np.exp(np.arange(t) / 10)
        assert adam.step_ratio(random, b)[:, -1].max() <= adam.sup_step_ratio(b, t) * (1 + 1e-12)
    assert adam.sup_step_ratio(b) == pytest.approx(0.1 / math.sqrt(0.001) / math.sqrt(1 - 0.81 / 0.999))
    assert adam.sup_step_ratio(b, 100000) == pytest.approx(adam.sup_step_ratio(b), rel=1e-9)
    assert adam.sup_step_ratio((0.9, 0.5)) == math.inf


def test_adam_settings_per_member_equal_separate_runs():
    settings = [(0.9, 0.999, True), (0.0, 0.9999, False), (0.9, 0.99, False)]
    torch.manual_seed(0)
    w0, x, target = torch.randn(3, 4, 2), torch.randn(16, 4), torch.randn(16, 2)

    def train(w, **kw):
        w = torch.nn.Parameter(w.clone())
        opt = Adam([w], **kw)
        for _ in range(10):
            opt.zero_grad()
            ((x @ w - target) ** 2).mean(dim=(-1, -2)).sum().backward()
            opt.step()
        return w.detach()

    b1, b2, bc = zip(*settings)
    b1, b2 = torch.tensor(b1, dtype=torch.float64), torch.tensor(b2, dtype=torch.float64)
    bc = torch.tensor(bc)
    stacked = train(w0, lr=torch.tensor([0.01, 0.1, 0.03]), betas=(b1, b2), bias_correction=bc)
    separate = torch.stack([train(w0[i:i + 1], lr=lr, betas=(s[0], s[1]), bias_correction=s[2])[0]
                            for i, (s, lr) in enumerate(zip(settings, [0.01, 0.1, 0.03]))])
    torch.testing.assert_close(stacked, separate, rtol=1e-6, atol=1e-7)


def test_every_public_name_points_to_a_notebook_that_exists():
    import re
    from pathlib import Path

    from repro.core import stacked
    from repro.optimization import bag_of_words, vae

    root = Path(__file__).resolve().parents[1]
    for module in (adam, stacked, bag_of_words, vae):
        public = [obj for name, obj in vars(module).items() if not name.startswith("_")
                  and callable(obj) and getattr(obj, "__module__", None) == module.__name__]
        assert public
        for obj in public:
            match = re.search(r"Introduced in: (notebooks/\S+\.ipynb)", obj.__doc__ or "")
            assert match and (root / match.group(1)).is_file(), obj.__name__
