import math

import torch

from repro.optimization import continual


def test_effective_rank_of_known_spectra():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(50, 4, generator=g, dtype=torch.float64))
    # centered columns with equal singular values: rank 4; one dominant direction: close to 1
    equal = Q - Q.mean(0)
    assert abs(continual.effective_rank(equal) - 4) < 0.3
    one = torch.outer(torch.randn(50, generator=g, dtype=torch.float64),
                      torch.ones(8, dtype=torch.float64))
    assert continual.effective_rank(one) < 1.0 + 1e-6


def test_class_mean_cosine_extremes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    separate = torch.eye(3).repeat_interleave(2, dim=0)      # each class its own unit
    assert abs(continual.class_mean_cosine(separate, labels)) < 1e-6
    shared = torch.ones(6, 3)
    assert math.isclose(continual.class_mean_cosine(shared, labels), 1.0, rel_tol=1e-6)


def test_permuted_digits_switches_task_and_reports_both():
    task = continual.permuted_digits_task(switch=3, steps=5)
    torch.manual_seed(0)
    model = task.make_model()
    batches = list(zip(range(5), task.batches(0)))
    first, fourth = batches[0][1][0], batches[3][1][0]
    assert first.shape == (64, 64) and fourth.shape == (64, 64)
    report = task.evaluate(model)
    assert set(report) == {"eval_loss", "eval_accuracy", "loss_a", "accuracy_a", "rank_a",
                           "cosine_a"}
    assert all(math.isfinite(v) for v in report.values())


def test_the_permutation_only_reorders_pixels():
    task = continual.permuted_digits_task(switch=2, steps=4)
    xs = [b[0] for _, b in zip(range(4), task.batches(0))]
    # every task-B image is a pixel permutation of some task-A training image: same sorted values
    a_pool = torch.cat([b[0] for _, b in zip(range(40), continual.permuted_digits_task(
        switch=40, steps=41).batches(0))])
    sorted_a = {tuple(row.sort().values.round(decimals=5).tolist()) for row in a_pool}
    assert all(tuple(row.sort().values.round(decimals=5).tolist()) in sorted_a for row in xs[2])
