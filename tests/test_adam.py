import pytest
import torch

from repro.optimization.adam import Adam


def _run(opt_cls, steps=25, **kw):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    opt = opt_cls(model.parameters(), **kw)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.0, 0.99), (0.5, 0.9999)])
def test_matches_torch_adam(betas):
    ours = _run(Adam, lr=1e-2, betas=betas, eps=1e-8)
    ref = _run(torch.optim.Adam, lr=1e-2, betas=betas, eps=1e-8)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_without_bias_correction_differs_and_first_step_is_larger():
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


@pytest.mark.parametrize("kw, match", [(dict(lr=0.0), "lr"), (dict(betas=(0.9, 1.0)), "betas"),
                                       (dict(betas=(0.9,)), "betas"), (dict(eps=-1.0), "eps")])
def test_invalid_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        Adam([torch.nn.Parameter(torch.ones(1))], **kw)
