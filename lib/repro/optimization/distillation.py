"""Knowledge distillation and DOT, the Distillation-Oriented Trainer (Zhao et al., ICCV 2023).

A student is trained on two losses at once: the task loss (cross-entropy with the labels) and the
distillation loss (Hinton et al.'s KL divergence to a fixed teacher's softened outputs, at
temperature T, scaled by T^2). Plain KD runs SGD with one momentum on the weighted sum. DOT keeps
the two losses' gradients apart, with one momentum buffer each: the distillation gradient's buffer
decays with mu + delta, the task gradient's with mu - delta, and the step is their sum:

    b_task <- (mu - delta) b_task + (g_task + wd * theta)
    b_kd   <- (mu + delta) b_kd + g_kd
    theta  <- theta - lr (b_task + b_kd)

(each buffer starts at its first gradient, as torch.optim.SGD's does). With delta = 0 the two
buffers add up to SGD's buffer of the summed gradient, so DOT is SGD with momentum on the sum.
This follows the authors' optimizer (megvii-research/mdistiller, mdistiller/engine/dot.py); like
theirs, a parameter that only one of the losses reaches keeps one buffer with momentum mu.

`DOT.step(closure)` takes a closure that returns the two losses *without* differentiating them,
(task_loss, distillation_loss), and differentiates each itself; `DOT.update(task_grads, kd_grads)`
is the update alone, for gradients computed elsewhere. `kd_objective` builds the losses of a
student against a teacher, summed (for KD with any torch optimizer) or split (for DOT), in the form
`repro.optimization.benchmark.compare(..., losses=...)` reads; `student_task` is the chapter's
digits task with a student model and an evaluation that also reports the training set's task and
distillation losses.

Introduced in: notebooks/optimization/dot.ipynb
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import Optimizer

from ..core import train
from ..core.data import sklearn_dataset
from ..core.validation import check_positive


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """T^2 * mean over the batch of KL(softmax(teacher / T) || softmax(student / T)).
    Introduced in: notebooks/optimization/dot.ipynb"""
    check_positive("temperature", temperature)
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)
    return kl.mean() * temperature ** 2


def kd_objective(teacher: nn.Module, *, temperature: float = 4.0, task_weight: float = 0.1,
                 kd_weight: float = 0.9, split: bool = False) -> Callable:
    """loss(student, (x, y)) for a student distilled from the fixed `teacher`: the weighted sum
    task_weight * CE + kd_weight * distillation_loss, or (split=True) the two weighted terms as a
    tuple, for DOT. The defaults are the authors' KD settings (mdistiller's configuration).
    Introduced in: notebooks/optimization/dot.ipynb"""
    teacher.eval()

    def loss(student, batch):
        x, y = batch
        with torch.no_grad():
            teacher_logits = teacher(x)
        logits = student(x)
        terms = (task_weight * F.cross_entropy(logits, y),
                 kd_weight * distillation_loss(logits, teacher_logits, temperature))
        return terms if split else terms[0] + terms[1]

    return loss


class DOT(Optimizer):
    """SGD with separate momentum buffers for the task and the distillation gradients: momentum
    mu - delta for the task loss, mu + delta for the distillation loss (module docstring).
    step(closure): closure() returns (task_loss, distillation_loss), not yet differentiated.
    Introduced in: notebooks/optimization/dot.ipynb"""

    def __init__(self, params, lr: float, momentum: float = 0.9, delta: float = 0.075,
                 weight_decay: float = 0.0):
        check_positive("lr", lr)
        if not (0.0 <= momentum - delta and momentum + delta < 1.0):
            raise ValueError(f"momentum {momentum} -/+ delta {delta} must lie in [0, 1)")
        if weight_decay < 0:
            raise ValueError(f"weight_decay == {weight_decay}, must be >= 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, delta=delta,
                                      weight_decay=weight_decay))

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    @torch.no_grad()
    def step(self, closure):
        """Differentiate the closure's two losses separately, update, and return their sum."""
        if closure is None:
            raise ValueError("DOT.step needs a closure returning (task_loss, distillation_loss)")
        params = self._params()
        with torch.enable_grad():
            task_loss, kd_loss = closure()
            kd_grads = torch.autograd.grad(kd_loss, params, retain_graph=True, allow_unused=True)
            task_grads = torch.autograd.grad(task_loss, params, allow_unused=True)
        self.update(task_grads, kd_grads)
        return (task_loss + kd_loss).detach()

    @torch.no_grad()
    def update(self, task_grads: Sequence[torch.Tensor | None],
               kd_grads: Sequence[torch.Tensor | None]) -> None:
        """One DOT step from the two losses' gradients, one entry (or None) per parameter in the
        order of the parameter groups."""
        params = self._params()
        if not len(params) == len(task_grads) == len(kd_grads):
            raise ValueError(f"{len(params)} parameters, {len(task_grads)} task gradients and "
                             f"{len(kd_grads)} distillation gradients")
        grads = iter(zip(params, task_grads, kd_grads))
        for group in self.param_groups:
            mu, delta, wd = group["momentum"], group["delta"], group["weight_decay"]
            for p in (p for p in group["params"] if p.requires_grad):
                _, g_task, g_kd = next(grads)
                if g_task is None and g_kd is None:
                    continue
                state = self.state[p]
                if g_task is not None and g_kd is not None:
                    step = (self._buffer(state, "task", g_task.add(p, alpha=wd), mu - delta)
                            + self._buffer(state, "kd", g_kd, mu + delta))
                else:   # one loss reaches p: one buffer at the mean momentum (as the authors do)
                    g = g_task if g_task is not None else g_kd
                    step = self._buffer(state, "one", g.add(p, alpha=wd), mu)
                p.add_(step, alpha=-group["lr"])

    @staticmethod
    def _buffer(state: dict, name: str, grad: torch.Tensor, momentum: float) -> torch.Tensor:
        key = f"momentum_{name}"
        if key not in state:
            state[key] = grad.detach().clone()
        else:
            state[key].mul_(momentum).add_(grad)
        return state[key]


def student_task(base, make_student: Callable[[], nn.Module], teacher: nn.Module,
                 temperature: float = 4.0):
    """The benchmark's digits task `base` (a `benchmark.Task`) with the student `make_student`,
    whose evaluation adds train_task_loss (cross-entropy) and train_kd_loss (distillation_loss to
    `teacher` at `temperature`, unweighted) on the whole training set to the held-out eval_loss
    and eval_accuracy.
    Introduced in: notebooks/optimization/dot.ipynb"""
    split = sklearn_dataset("digits")   # the benchmark's digits split (1347 train, 450 held out)
    x_train, y_train = split.x_train, split.y_train
    teacher.eval()
    with torch.no_grad():
        teacher_logits = teacher(x_train)

    def evaluate(model):
        result = base.evaluate(model)
        with train.evaluating(model):
            logits = model(x_train)
        result["train_task_loss"] = F.cross_entropy(logits, y_train).item()
        result["train_kd_loss"] = distillation_loss(logits, teacher_logits, temperature).item()
        return result

    return dataclasses.replace(base, name=f"{base.name}-student", make_model=make_student,
                               evaluate=evaluate)
