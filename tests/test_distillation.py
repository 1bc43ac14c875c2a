import math

import numpy as np
import pytest
import torch

from repro.core import models
from repro.optimization import benchmark, distillation


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_distillation_loss_is_t_squared_times_the_mean_kl_by_hand():
    rng = np.random.default_rng(0)
    student, teacher, T = rng.normal(size=(5, 7)), rng.normal(size=(5, 7)) * 3, 4.0
    p, q = _softmax(teacher / T), _softmax(student / T)
    by_hand = T ** 2 * np.mean(np.sum(p * np.log(p / q), axis=1))
    ours = distillation.distillation_loss(torch.tensor(student), torch.tensor(teacher), T)
    assert ours.item() == pytest.approx(by_hand, rel=1e-12)
    same = distillation.distillation_loss(torch.tensor(teacher), torch.tensor(teacher), T)
    assert abs(same.item()) < 1e-12


def _problem(seed=0):
    torch.manual_seed(seed)
    student = models.MLP(6, 4, width=8, depth=1).double()
    teacher = models.MLP(6, 4, width=16, depth=1).double()
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randint(0, 4, (32,))
    return student, teacher, (x, y)


def test_dot_with_delta_zero_is_sgd_with_momentum_on_the_summed_loss():
    student, teacher, batch = _problem()
    twin = models.MLP(6, 4, width=8, depth=1).double()
    twin.load_state_dict(student.state_dict())
    split = distillation.kd_objective(teacher, split=True)
    summed = distillation.kd_objective(teacher)
    dot = distillation.DOT(student.parameters(), lr=0.05, momentum=0.9, delta=0.0, weight_decay=5e-4)
    sgd = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(20):
        total = dot.step(lambda: split(student, batch))
        sgd.zero_grad()
        loss = summed(twin, batch)
        loss.backward()
        sgd.step()
        assert total.item() == pytest.approx(loss.item(), rel=1e-10)
    for a, b in zip(student.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_dot_update_follows_its_equations():
    """b_task = (mu - d) b_task + g_task + wd theta; b_kd = (mu + d) b_kd + g_kd; theta -= lr (sum)."""
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    lr, mu, d, wd = 0.1, 0.9, 0.075, 0.01
    opt = distillation.DOT([theta], lr=lr, momentum=mu, delta=d, weight_decay=wd)
    g_task = [torch.tensor([0.5, 1.0], dtype=torch.float64), torch.tensor([-1.0, 2.0], dtype=torch.float64)]
    g_kd = [torch.tensor([2.0, -1.0], dtype=torch.float64), torch.tensor([0.3, 0.1], dtype=torch.float64)]
    ref = theta.detach().clone()
    b_task = b_kd = None
    for gt, gk in zip(g_task, g_kd):
        gt_wd = gt + wd * ref
        b_task = gt_wd.clone() if b_task is None else (mu - d) * b_task + gt_wd
        b_kd = gk.clone() if b_kd is None else (mu + d) * b_kd + gk
        ref = ref - lr * (b_task + b_kd)
        opt.update([gt], [gk])
        torch.testing.assert_close(theta.detach(), ref, rtol=1e-14, atol=1e-14)


def test_dot_step_uses_each_loss_gradient_separately():
    """A delta > 0 changes the trajectory, and only through the split of the gradients."""
    student, teacher, batch = _problem(1)
    start = {k: v.clone() for k, v in student.state_dict().items()}
    split = distillation.kd_objective(teacher, split=True)
    ends = {}
    for delta in (0.0, 0.075):
        student.load_state_dict(start)
        opt = distillation.DOT(student.parameters(), lr=0.05, delta=delta)
        for _ in range(5):
            opt.step(lambda: split(student, batch))
        ends[delta] = torch.cat([p.detach().flatten() for p in student.parameters()])
    assert not torch.allclose(ends[0.0], ends[0.075])


def test_dot_rejects_momenta_outside_zero_one():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError):
        distillation.DOT(p, lr=0.1, momentum=0.95, delta=0.075)
    with pytest.raises(ValueError):
        distillation.DOT(p, lr=0.1, momentum=0.05, delta=0.075)


def test_compare_runs_a_split_loss_through_dot_and_reports_both_training_losses():
    torch.manual_seed(0)
    teacher = models.MLP(64, 10, width=32, depth=1)
    task = distillation.student_task(benchmark.task("mlp"),
                                     lambda: models.MLP(64, 10, width=8, depth=1), teacher)
    grid = [0.003, 0.01, 0.03]
    optimizers = {"KD": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
                  "DOT-0": lambda p, lr: distillation.DOT(p, lr=lr, momentum=0.9, delta=0.0)}
    losses = {"KD": distillation.kd_objective(teacher),
              "DOT-0": distillation.kd_objective(teacher, split=True)}
    runs = {name: benchmark.run(make, task, 0.01, seed=0, steps=10, loss=losses[name])[0]
            for name, make in optimizers.items()}
    # DOT with delta = 0 is SGD with momentum on the summed loss: the same curve (float32)
    np.testing.assert_allclose(runs["KD"].loss, runs["DOT-0"].loss, rtol=1e-4)
    assert {"train_task_loss", "train_kd_loss", "eval_accuracy"} <= set(runs["KD"].columns)
    with pytest.raises(ValueError, match="losses"):
        benchmark.compare(optimizers, task, lr_grids={"KD": grid, "DOT-0": grid}, seeds=[0],
                          steps=5, losses={"other": losses["KD"]})
    assert math.isfinite(runs["DOT-0"].train_kd_loss.iloc[-1])
