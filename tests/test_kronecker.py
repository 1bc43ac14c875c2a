import pytest
import torch
from torch import nn
from torch.nn import functional as F

from repro.optimization import curvature, kronecker

D = torch.float64


def _spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d, d, generator=g, dtype=D)
    return x @ x.T / d + torch.eye(d, dtype=D)


def test_sherman_morrison_is_the_inverse_of_the_updated_matrix():
    g = torch.Generator().manual_seed(1)
    M = _spd(6, 0)
    u, v = torch.randn(6, generator=g, dtype=D), torch.randn(6, generator=g, dtype=D)
    got = kronecker.sherman_morrison(torch.linalg.inv(M), u, v)
    torch.testing.assert_close(got, torch.linalg.inv(M + torch.outer(u, v)), rtol=1e-10, atol=1e-12)
    sym = kronecker.sherman_morrison(torch.linalg.inv(M), u)
    torch.testing.assert_close(sym, torch.linalg.inv(M + torch.outer(u, u)), rtol=1e-10, atol=1e-12)


def test_sherman_morrison_refuses_a_singular_update():
    with pytest.raises(ZeroDivisionError):
        kronecker.sherman_morrison(torch.eye(2, dtype=D), torch.tensor([1.0, 0.0], dtype=D),
                                   torch.tensor([-1.0, 0.0], dtype=D))


@pytest.mark.parametrize("gamma", [0.5, 0.95])
def test_decayed_rank1_inverse_is_the_inverse_of_the_running_average(gamma):
    M = _spd(5, 2)
    x = torch.randn(5, generator=torch.Generator().manual_seed(3), dtype=D)
    got = kronecker.decayed_rank1_inverse(torch.linalg.inv(M), x, gamma)
    want = torch.linalg.inv(gamma * M + (1 - gamma) * torch.outer(x, x))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_many_updates_stay_the_inverse_in_float64():
    g = torch.Generator().manual_seed(4)
    M, inverse = torch.eye(8, dtype=D), torch.eye(8, dtype=D)
    for _ in range(200):
        x = torch.randn(8, generator=g, dtype=D)
        M = 0.9 * M + 0.1 * torch.outer(x, x)
        inverse = kronecker.decayed_rank1_inverse(inverse, x, 0.9)
    torch.testing.assert_close(inverse, torch.linalg.inv(M), rtol=1e-8, atol=1e-10)


def test_stabilize_mixes_in_the_identity_only_above_the_threshold():
    small = torch.tensor([[1.5, 0.2], [0.2, 1.0]], dtype=D)
    assert torch.equal(kronecker.stabilize(small, 2.0, 0.9), small)
    large = 3 * small
    torch.testing.assert_close(kronecker.stabilize(large, 2.0, 0.9),
                               0.9 * large + 0.1 * torch.eye(2, dtype=D))


def _layer_and_batches(seed=0, steps=3):
    torch.manual_seed(seed)
    layer = nn.Linear(3, 2).to(D)
    batches = [(torch.randn(5, 3, dtype=D), torch.randn(5, 2, dtype=D)) for _ in range(steps)]
    return layer, batches



def test_mkor_step_follows_algorithm_1_step_by_step():
    gamma, zeta, epsilon, lr, momentum = 0.8, 0.9, 2.0, 0.05, 0.9
    layer, batches = _layer_and_batches()
    reference = nn.Linear(3, 2).to(D)
    reference.load_state_dict(layer.state_dict())
    opt = kronecker.MKOR(layer, lr=lr, momentum=momentum, gamma=gamma, zeta=zeta, epsilon=epsilon)
    L_inv, R_inv, buffer = torch.eye(2, dtype=D), torch.eye(4, dtype=D), None
    W = torch.cat([reference.weight.detach(), reference.bias.detach()[:, None]], 1).clone()
    for x, y in batches:
        opt.zero_grad()
        (((layer(x) - y) ** 2).sum(1) / 2).mean().backward()
        opt.step()
        # the algorithm, with explicit inverses of the running averages (torch.linalg.inv)
        a_bar = curvature.with_bias_column(x)
        s = a_bar @ W.T
        g_n = s - y                                   # per-example d loss_n / d s_n
        grad = g_n.T @ a_bar / len(x)                 # grad W_bar of the mean loss
        a, g = a_bar.mean(0), g_n.mean(0)             # lines 2-3
        stab = lambda M: zeta * M + (1 - zeta) * torch.eye(len(M), dtype=D) \
            if M.abs().max() > epsilon else M          # noqa: E731, lines 5-6
        L_inv = torch.linalg.inv(gamma * torch.linalg.inv(stab(L_inv))
                                 + (1 - gamma) * torch.outer(g, g))      # lines 7-8
        R_inv = torch.linalg.inv(gamma * torch.linalg.inv(stab(R_inv))
                                 + (1 - gamma) * torch.outer(a, a))
        update = L_inv @ grad @ R_inv                 # line 9
        update = update * grad.norm() / update.norm()  # line 10
        buffer = update if buffer is None else momentum * buffer + update   # torch's SGD momentum
        W = W - lr * buffer                           # line 14
        got = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
        torch.testing.assert_close(got, W, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(opt.left_inverse[layer], L_inv, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(opt.right_inverse[layer], R_inv, rtol=1e-9, atol=1e-11)


def test_kfac_step_preconditions_with_exact_running_factors():
    gamma, damping, lr = 0.9, 1e-2, 0.1
    layer, batches = _layer_and_batches(1, steps=2)
    W = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1).clone()
    opt = kronecker.KFAC(layer, lr=lr, momentum=0.0, gamma=gamma, damping=damping)
    A, G = torch.eye(4, dtype=D), torch.eye(2, dtype=D)
    for x, y in batches:
        opt.zero_grad()
        (((layer(x) - y) ** 2).sum(1) / 2).mean().backward()
        opt.step()
        a_bar = curvature.with_bias_column(x)
        g_n = a_bar @ W.T - y
        grad = g_n.T @ a_bar / len(x)
        A = gamma * A + (1 - gamma) * a_bar.T @ a_bar / len(x)
        G = gamma * G + (1 - gamma) * g_n.T @ g_n / len(x)
        eye = lambda n: torch.eye(n, dtype=D)  # noqa: E731
        update = (torch.linalg.inv(G + damping * eye(2)) @ grad
                  @ torch.linalg.inv(A + damping * eye(4)))
        W = W - lr * update * grad.norm() / update.norm()
        got = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
        torch.testing.assert_close(got, W, rtol=1e-9, atol=1e-11)


def test_parameters_outside_linear_layers_take_the_first_order_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    opt = kronecker.MKOR(model, lr=0.1, momentum=0.0)
    norm_before = model[1].weight.detach().clone()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    raw = model[1].weight.grad.clone()
    opt.step()
    torch.testing.assert_close(model[1].weight.detach(), norm_before - 0.1 * raw)
    assert set(opt.left_inverse) == {model[0], model[2]}


def test_update_every_keeps_the_factors_between_updates_and_adam_runs():
    layer, batches = _layer_and_batches(2, steps=3)
    opt = kronecker.MKOR(layer, lr=0.01, update_every=2, first_order="adam")
    seen = []
    for x, y in batches:
        opt.zero_grad()
        ((layer(x) - y) ** 2).mean().backward()
        opt.step()
        seen.append(opt.left_inverse[layer].clone())
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert isinstance(opt.first_order, torch.optim.Adam)


def test_step_returns_the_closure_loss_and_schedulers_see_the_rate():
    layer, batches = _layer_and_batches(3, steps=1)
    opt = kronecker.MKOR(layer, lr=0.1)
    x, y = batches[0]

    def closure():
        opt.zero_grad()
        loss = ((layer(x) - y) ** 2).mean()
        loss.backward()
        return loss
    assert opt.step(closure) is not None
    opt.param_groups[0]["lr"] = 0.01
    assert opt.first_order.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("kwargs", [dict(lr=0.0), dict(gamma=0.0), dict(gamma=1.0), dict(zeta=1.5),
                                    dict(epsilon=-1.0), dict(first_order="lamb"),
                                    dict(update_every=0), dict(momentum=1.0)])
def test_mkor_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        kronecker.MKOR(nn.Linear(2, 2), **kwargs)


def test_inplace_update_overwrites_and_matches():
    M = _spd(4, 5)
    x = torch.randn(4, generator=torch.Generator().manual_seed(6), dtype=D)
    inverse = torch.linalg.inv(M)
    fresh = kronecker.decayed_rank1_inverse(inverse, x, 0.9)
    same = kronecker.decayed_rank1_inverse(inverse, x, 0.9, inplace=True)
    assert same is inverse
    torch.testing.assert_close(same, fresh, rtol=1e-12, atol=1e-14)
