import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from repro.core.tuning import GridEdgeError  # noqa: E402
from repro.optimization import benchmark  # noqa: E402

OPTIMIZERS = {"SGD": lambda params, lr: torch.optim.SGD(params, lr=lr),
              "Adam": lambda params, lr: torch.optim.Adam(params, lr=lr)}
# 30 steps on the digits: SGD is best near 3 and diverges at 1e3, Adam is best near 0.03
GRIDS = {"SGD": [0.3, 3.0, 1e3], "Adam": [3e-3, 3e-2, 3e-1]}
SMALL = dict(lr_grids=GRIDS, seeds=[0, 1], steps=30, eval_every=5)


@pytest.fixture(scope="module")
def logistic():
    return benchmark.task("logistic")


@pytest.fixture(scope="module")
def result(logistic):
    return benchmark.compare(OPTIMIZERS, logistic, target=0.5, **SMALL)


def test_each_optimizer_is_tuned_on_its_own_grid_of_one_length(result):
    grid = result.grid
    assert grid.groupby("optimizer").size().to_dict() == {"SGD": 3, "Adam": 3}
    for name, rates in GRIDS.items():
        assert grid[grid.optimizer == name].lr.tolist() == rates
    assert result.chosen.set_index("optimizer").lr.to_dict() == {"SGD": 3.0, "Adam": 3e-2}
    # the chosen rate's score is the best finite score of its grid
    for name, rows in grid.groupby("optimizer"):
        chosen = result.chosen.set_index("optimizer").loc[name]
        assert chosen.score == rows.score.min()


def test_a_diverging_rate_is_recorded_and_never_chosen(result):
    sgd = result.grid[result.grid.optimizer == "SGD"].set_index("lr")
    assert bool(sgd.diverged[1e3]) and math.isnan(sgd.score[1e3])
    assert not sgd.diverged[[0.3, 3.0]].any()
    assert 1e3 not in result.chosen.lr.tolist()
    assert (result.summary.diverged == 0).all()


def test_seeds_give_different_curves_and_one_seed_the_same_curve(result, logistic):
    curves = result.curves
    adam = curves[curves.optimizer == "Adam"]
    first, second = (adam[adam.seed == s].loss.to_numpy() for s in (0, 1))
    assert len(first) == len(second) == 30 and not np.allclose(first, second)
    again = benchmark.compare(OPTIMIZERS, logistic, **SMALL).curves
    numbers = ["step", "loss", "eval_loss", "eval_accuracy"]  # time_s differs from run to run
    pd.testing.assert_frame_equal(curves[numbers], again[numbers])


def test_the_tables_have_their_documented_columns(result):
    assert list(result.curves.columns) == benchmark.CURVE_COLUMNS + ["eval_accuracy"]
    assert list(result.grid.columns) == benchmark.GRID_COLUMNS
    assert list(result.chosen.columns) == ["optimizer", "lr", "score"]
    assert list(result.summary.columns) == benchmark.SUMMARY_COLUMNS + [
        "final_eval_accuracy_mean", "steps_to_target_mean", "time_to_target_s_mean",
        "reached_target"]


def test_curves_record_time_and_evaluations_as_documented(result):
    run = result.curves[(result.curves.optimizer == "SGD") & (result.curves.seed == 1)]
    assert run.step.tolist() == list(range(1, 31)) and (run.lr == 3.0).all()
    assert (run.time_s.diff().dropna() > 0).all()
    assert run.eval_loss.notna().tolist() == [step % 5 == 0 for step in range(1, 31)]


def test_the_summary_is_computed_over_seeds(result):
    finals = result.curves.groupby(["optimizer", "seed"]).tail(1).groupby("optimizer").eval_loss
    summary = result.summary.set_index("optimizer")
    np.testing.assert_allclose(summary.final_eval_loss_mean[finals.mean().index], finals.mean())
    np.testing.assert_allclose(summary.final_eval_loss_sd[finals.std().index], finals.std())
    # steps to target: the first evaluation at or below it, on every seed that got there
    curves = result.curves
    for name, runs in curves.groupby("optimizer"):
        hits = [runs[(runs.seed == s) & (runs.eval_loss <= 0.5)].step.min() for s in (0, 1)]
        assert summary.steps_to_target_mean[name] == np.nanmean(hits)
        assert summary.reached_target[name] == np.isfinite(hits).sum()


def test_finals_are_the_last_evaluation_per_seed_and_optimizer(result):
    table = result.finals("eval_loss")
    assert list(table.index) == [0, 1] and set(table.columns) == {"SGD", "Adam"}
    last = result.curves.groupby(["optimizer", "seed"]).tail(1).set_index(["seed", "optimizer"])
    for (seed, name), row in last.iterrows():
        assert table.loc[seed, name] == row.eval_loss
    assert (result.finals("eval_accuracy").values <= 1).all()
    with pytest.raises(ValueError, match="no column 'accuracy'"):
        result.finals("accuracy")


def test_finals_leave_a_diverged_run_out_rather_than_report_its_last_good_value():
    rows = [dict(optimizer="A", seed=s, step=t, eval_loss=v)
            for s, curve in ((0, [1.0, 0.5]), (1, [1.0, math.nan])) for t, v in zip((1, 2), curve)]
    curves = pd.DataFrame(rows)
    table = benchmark.Comparison("toy", curves, pd.DataFrame(), pd.DataFrame(), pd.DataFrame()).finals()
    assert table.loc[0, "A"] == 0.5 and math.isnan(table.loc[1, "A"])


def test_the_plot_has_curves_by_step_and_time_and_the_grid(result):
    fig = benchmark.plot_comparison(result)
    by_step, by_time, grid = fig.axes
    assert by_step.get_xlabel() == "step" and "wall time" in by_time.get_xlabel()
    assert grid.get_xscale() == "log" and by_step.get_yscale() == "log"
    assert {line.get_label() for line in by_step.get_lines()} >= {"SGD", "Adam", "target"}
    stars = [line for line in grid.get_lines() if line.get_marker() == "*"]
    assert sorted(line.get_xdata()[0] for line in stars) == [3e-2, 3.0]
    crosses = [line for line in grid.get_lines() if line.get_marker() == "x"]
    assert [line.get_xdata().tolist() for line in crosses] == [[1e3]]
    plt.close(fig)


def test_a_best_rate_at_the_edge_of_its_grid_is_refused(logistic):
    with pytest.raises(GridEdgeError, match="SGD on logistic.*largest"):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids={"SGD": [1e-3, 3e-3, 1e-2],
                                                          "Adam": GRIDS["Adam"]},
                          seeds=[0], steps=10)


@pytest.mark.parametrize("grids, match", [
    ({"SGD": [0.3, 3.0, 1e3], "Adam": [1e-3, 3e-3, 3e-2, 3e-1]}, "same length"),
    ({"SGD": [0.3, 3.0, 1e3]}, "one grid per optimizer"),
    ({"SGD": [3.0, 0.3, 1e3], "Adam": GRIDS["Adam"]}, "increasing"),
    ({"SGD": [0.3, 3.0], "Adam": [3e-3, 3e-2]}, "at least 3"),
])
def test_bad_grids_raise(grids, match, logistic):
    with pytest.raises(ValueError, match=match):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids=grids, seeds=[0], steps=5)


def test_a_bad_task_name_raises_listing_the_tasks():
    with pytest.raises(ValueError, match="unknown task 'digits'.*'logistic', 'mlp', 'cnn'"):
        benchmark.task("digits")
    with pytest.raises(ValueError, match="unknown task"):
        benchmark.compare(OPTIMIZERS, "digits", lr_grids=GRIDS, seeds=[0])


def test_bad_seeds_raise(logistic):
    with pytest.raises(ValueError, match="seeds"):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids=GRIDS, seeds=[0, 0])


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")  # expected here
def test_create_graph_reaches_the_backward_of_the_named_optimizers(logistic):
    seen = {}

    class Recording(torch.optim.SGD):
        def step(self, closure):
            loss = super().step(closure)
            seen.setdefault(self.name, self.param_groups[0]["params"][0].grad.requires_grad)
            return loss

    def factory(name):
        def make(params, lr):
            opt = Recording(params, lr=lr)
            opt.name = name
            return opt
        return make

    benchmark.compare({"plain": factory("plain"), "hessian": factory("hessian")}, logistic,
                      lr_grids={"plain": [0.3, 3.0, 1e3], "hessian": [0.3, 3.0, 1e3]},
                      seeds=[0], steps=30, create_graph=["hessian"])
    assert seen == {"plain": False, "hessian": True}


def test_every_task_trains_and_evaluates():
    tasks = benchmark.tasks()
    assert list(tasks) == ["logistic", "mlp", "cnn", "char-transformer", "mlp-bn"]
    for name, task in tasks.items():
        torch.manual_seed(0)
        model = task.make_model()
        loss = task.loss(model, next(task.batches(0)))
        n_classes = 8 if name == "char-transformer" else 10
        assert abs(loss.item() - math.log(n_classes)) < 0.5, name
        scores = task.evaluate(model)
        assert math.isfinite(scores["eval_loss"])
        assert ("eval_accuracy" in scores) == (name != "char-transformer")
    floor = tasks["char-transformer"].floor
    assert 0.5 < floor < math.log(8) - 0.5  # the chain is learnable but not trivial


def test_an_optimizer_that_diverges_everywhere_is_named(logistic):
    with pytest.raises(ValueError, match="SGD on logistic: every lr"):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids={"SGD": [1e3, 3e3, 1e4],
                                                          "Adam": GRIDS["Adam"]},
                          seeds=[0], steps=10)


def test_takes_model_hands_the_model_to_the_named_factories(logistic):
    received = {}

    def factory(name):
        def make(params_or_model, lr):
            received[name] = isinstance(params_or_model, torch.nn.Module)
            params = (params_or_model.parameters() if received[name] else params_or_model)
            return torch.optim.SGD(params, lr=lr)
        return make

    benchmark.compare({"params": factory("params"), "model": factory("model")}, logistic,
                      lr_grids={"params": [0.3, 3.0, 1e3], "model": [0.3, 3.0, 1e3]},
                      seeds=[0], steps=30, takes_model="model")
    assert received == {"params": False, "model": True}
    with pytest.raises(ValueError, match="takes_model names \\['Muon'\\]"):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids=GRIDS, seeds=[0], takes_model=["Muon"])


# --- schedules, the range test and smaller training sets (super-convergence.ipynb) ---

def test_a_schedule_sets_the_rate_of_every_step(logistic):
    def halve_at_10(optimizer, steps):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[10], gamma=0.5)

    result = benchmark.compare(OPTIMIZERS, logistic, lr_grids=GRIDS, seeds=[0], steps=20,
                               schedules={"SGD": halve_at_10})
    curves = result.curves
    sgd = curves[curves.optimizer == "SGD"]
    lr = result.chosen.set_index("optimizer").lr["SGD"]
    np.testing.assert_allclose(sgd.step_lr, [lr] * 10 + [lr / 2] * 10)
    assert curves[curves.optimizer == "Adam"].step_lr.isna().all()  # no schedule, no rates
    with pytest.raises(ValueError, match="schedules names \\['Muon'\\]"):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids=GRIDS, seeds=[0], steps=5,
                          schedules={"Muon": halve_at_10})


def test_a_scheduled_run_equals_torch_stepping_the_same_scheduler(logistic):
    def one_cycle(optimizer, steps):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=steps)

    make = lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)  # noqa: E731
    curve, diverged = benchmark._run(logistic, make, 1.0, 0, steps=15, eval_every=5,
                                     diverge_factor=10.0, create_graph=False, takes_model=False,
                                     make_schedule=one_cycle)
    assert not diverged and len(curve) == 15
    torch.manual_seed(0)
    model = logistic.make_model()
    opt = make(model.parameters(), 1.0)
    schedule, data, losses = one_cycle(opt, 15), logistic.batches(0), []
    for _ in range(15):
        opt.zero_grad()
        loss = logistic.loss(model, next(data))
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    np.testing.assert_allclose(curve.loss, losses, rtol=1e-6)


def test_the_range_test_grows_the_rate_linearly_and_stops_where_it_diverges(logistic):
    make = lambda params, lr: torch.optim.SGD(params, lr=lr)  # noqa: E731
    curve = benchmark.range_test(make, logistic, low=0.01, high=1.0, steps=11, eval_every=5)
    np.testing.assert_allclose(curve.step_lr, np.linspace(0.01, 1.0, 11))
    assert curve.eval_loss.notna().tolist() == [s % 5 == 0 or s == 11 for s in range(1, 12)]
    wild = benchmark.range_test(make, logistic, low=1.0, high=1e5, steps=30)
    assert len(wild) < 30
    with pytest.raises(ValueError, match="low < high"):
        benchmark.range_test(make, logistic, low=1.0, high=0.1, steps=10)


def test_with_train_size_keeps_a_stratified_subset_and_the_held_out_set():
    small = benchmark.with_train_size("mlp", 200, seed=0)
    full = benchmark.task("mlp")
    x, y = next(small.batches(0))
    assert x.shape == (64, 64) and small.steps == full.steps and "200" in small.name
    seen = torch.cat([next(small.batches(0))[1] for _ in range(3)])  # 3 batches = one epoch
    assert set(seen.tolist()) == set(range(10))  # every class present
    torch.manual_seed(0)
    model = full.make_model()
    assert small.evaluate(model) == full.evaluate(model)
    assert next(benchmark.with_train_size("cnn", 100).batches(0))[0].shape == (64, 1, 8, 8)
    bn = benchmark.with_train_size("mlp-bn", 200, seed=0)
    assert next(bn.batches(0))[0].shape == (64, 64)
    assert (next(bn.batches(0))[1] == y).all()  # the same subset and batches as the mlp's
    with pytest.raises(ValueError, match="train_size"):
        benchmark.with_train_size("mlp", 10)
    with pytest.raises(ValueError, match="digits task"):
        benchmark.with_train_size("char-transformer", 100)


def test_mlp_bn_is_the_mlp_with_batch_norm_after_each_hidden_layer():
    torch.manual_seed(0)
    plain = benchmark.task("mlp").make_model()
    torch.manual_seed(0)
    bn = benchmark.task("mlp-bn").make_model()
    norms = [m for m in bn.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [64, 64]
    linears = lambda m: [(l.in_features, l.out_features) for l in m.modules()  # noqa: E731
                         if isinstance(l, torch.nn.Linear)]
    assert linears(bn) == linears(plain) == [(64, 64), (64, 64), (64, 10)]
    # evaluation reads the running statistics (eval mode) and gives the training mode back
    task = benchmark.task("mlp-bn")
    task.loss(bn, next(task.batches(0)))  # a training-mode forward updates the running stats
    assert norms[0].num_batches_tracked == 1
    scores = task.evaluate(bn)
    assert bn.training and norms[0].num_batches_tracked == 1 and math.isfinite(scores["eval_loss"])


def test_run_is_the_run_compare_makes_at_that_rate(logistic, result):
    curve, diverged = benchmark.run(OPTIMIZERS["Adam"], logistic, 3e-2, seed=1, steps=30,
                                    eval_every=5)
    theirs = result.curves[(result.curves.optimizer == "Adam") & (result.curves.seed == 1)]
    assert not diverged
    np.testing.assert_allclose(curve.loss, theirs.loss, rtol=1e-6)
    np.testing.assert_allclose(curve.eval_loss, theirs.eval_loss, rtol=1e-6)
    _, wild = benchmark.run(OPTIMIZERS["SGD"], logistic, 1e3, seed=0, steps=30)
    assert wild
    with pytest.raises(ValueError, match="lr"):
        benchmark.run(OPTIMIZERS["SGD"], logistic, -1.0, seed=0)


def test_binary_logistic_is_the_regularized_objective_and_full_batch_by_default():
    task = benchmark.binary_logistic("breast_cancer")
    x, y = task.data
    assert x.dtype == torch.float64 and x.shape == (426, 30) and set(y.unique().tolist()) == {0.0, 1.0}
    assert task.l2 == pytest.approx(1 / 426)
    torch.manual_seed(0)
    model = task.make_model()
    first, second = next(task.batches(0)), next(task.batches(1))
    assert first[0] is x and second[0] is x            # every step sees the whole training set
    w = torch.cat([model.weight.detach().ravel(), model.bias.detach()])
    logits = x @ w[:-1] + w[-1]
    expected = (torch.nn.functional.softplus(logits) - y * logits).mean() + 0.5 / 426 * (w ** 2).sum()
    torch.testing.assert_close(task.loss(model, first), expected)
    scores = task.evaluate(model)
    assert set(scores) == {"eval_loss", "eval_accuracy"} and 0 <= scores["eval_accuracy"] <= 1
    digits = benchmark.binary_logistic("digits", batch_size=32, dtype=torch.float32)
    xb, yb = next(digits.batches(0))
    assert xb.shape == (32, 64) and xb.dtype == torch.float32 and digits.data[1].mean() > 0.3
    with pytest.raises(ValueError, match="binary set"):
        benchmark.binary_logistic("wine")


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_run_with_create_graph_lets_a_hessian_optimizer_train():
    from repro.optimization.second_order import OASIS
    task = benchmark.binary_logistic("breast_cancer", steps=20)
    make = lambda p, lr: OASIS(p, lr=lr, generator=torch.Generator().manual_seed(0))  # noqa: E731
    curve, diverged = benchmark.run(make, task, 1.0, seed=0, create_graph=True)
    assert not diverged and len(curve) == 20 and curve.loss.iloc[-1] < 0.2 * curve.loss.iloc[0]
    with pytest.raises(RuntimeError, match="create_graph"):
        benchmark.run(make, task, 1.0, seed=0)


def test_step_times_interleaves_and_sees_a_slower_optimizer(logistic):
    class Slow(torch.optim.SGD):
        def step(self, closure=None):
            loss = super().step(closure)
            time.sleep(0.005)
            return loss

    import time
    makers = {"SGD": lambda p, lr: torch.optim.SGD(p, lr=lr), "slow": lambda p, lr: Slow(p, lr=lr)}
    times = benchmark.step_times(makers, logistic, lrs={"SGD": 0.1, "slow": 0.1}, steps=4)
    assert list(times.columns) == ["optimizer", "round", "seconds"] and len(times) == 8
    assert list(times.optimizer[:4]) == ["SGD", "slow", "slow", "SGD"]   # the order alternates
    median = times.groupby("optimizer").seconds.median()
    assert median["slow"] > median["SGD"] + 0.004
    with pytest.raises(ValueError, match="one rate per optimizer"):
        benchmark.step_times(makers, logistic, lrs={"SGD": 0.1})


def test_a_fixed_rate_runs_untuned_beside_tuned_baselines(logistic):
    result = benchmark.compare(OPTIMIZERS, logistic, lr_grids={"SGD": GRIDS["SGD"]},
                               fixed={"Adam": 0.01}, seeds=[0, 1], steps=30, eval_every=5)
    assert result.chosen.set_index("optimizer").lr.to_dict() == {"SGD": 3.0, "Adam": 0.01}
    adam = result.grid[result.grid.optimizer == "Adam"]
    assert adam.lr.tolist() == [0.01] and not adam.diverged.any()
    curve, _ = benchmark.run(OPTIMIZERS["Adam"], logistic, 0.01, seed=1, steps=30, eval_every=5)
    theirs = result.curves[(result.curves.optimizer == "Adam") & (result.curves.seed == 1)]
    np.testing.assert_allclose(curve.loss, theirs.loss, rtol=1e-6)
    assert set(result.finals().columns) == {"SGD", "Adam"}
    with pytest.raises(ValueError, match="fixed"):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids={"SGD": GRIDS["SGD"]},
                          fixed={"Adam": -1.0}, seeds=[0])
    with pytest.raises(ValueError, match="one grid per optimizer"):
        benchmark.compare(OPTIMIZERS, logistic, lr_grids=GRIDS, fixed={"Adam": 0.01}, seeds=[0])


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_step_times_builds_the_graph_for_the_named_optimizers(logistic):
    from repro.optimization.second_order import AdaHessian
    makers = {"Adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
              "AdaHessian": lambda p, lr: AdaHessian(p, lr=lr)}
    times = benchmark.step_times(makers, logistic, lrs={"Adam": 0.01, "AdaHessian": 0.1}, steps=3,
                                 create_graph=["AdaHessian"])
    assert times.groupby("optimizer").size().to_dict() == {"Adam": 3, "AdaHessian": 3}
    with pytest.raises(RuntimeError, match="create_graph"):   # without the graph: no Hessian
        benchmark.step_times(makers, logistic, lrs={"Adam": 0.01, "AdaHessian": 0.1}, steps=1)
    with pytest.raises(ValueError, match="create_graph"):
        benchmark.step_times(makers, logistic, lrs={"Adam": 0.01, "AdaHessian": 0.1}, steps=1,
                             create_graph=["Muon"])


def test_digits_task_serves_flat_or_image_batches_of_the_requested_size():
    flat = benchmark.digits_task(lambda: torch.nn.Linear(64, 10), batch_size=32, steps=5)
    x, y = next(flat.batches(0))
    assert x.shape == (32, 64) and y.shape == (32,) and flat.steps == 5
    assert set(flat.evaluate(flat.make_model())) == {"eval_loss", "eval_accuracy"}
    image = benchmark.digits_task(lambda: torch.nn.Flatten(), image=True, name="images")
    assert next(image.batches(0))[0].shape == (64, 1, 8, 8) and image.name == "images"
    with pytest.raises(ValueError, match="batch_size"):
        benchmark.digits_task(lambda: torch.nn.Linear(64, 10), batch_size=0)


def test_a_task_per_name_trains_each_name_on_its_own_model():
    def linear():
        return torch.nn.Linear(64, 10)

    def mlp():
        return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))

    sgd = OPTIMIZERS["SGD"]
    tasks = {"linear": benchmark.digits_task(linear, steps=30),
             "mlp": benchmark.digits_task(mlp, steps=30)}
    result = benchmark.compare({"linear": sgd, "mlp": sgd}, tasks, seeds=[0, 1], eval_every=5,
                               lr_grids={"linear": GRIDS["SGD"], "mlp": [0.03, 0.3, 30.0]})
    assert result.task == "digits" and set(result.finals().columns) == {"linear", "mlp"}
    for name, task in tasks.items():  # each name's curve is a run of its own task
        lr = result.chosen.set_index("optimizer").lr[name]
        curve, _ = benchmark.run(sgd, task, lr, seed=1, steps=30, eval_every=5)
        theirs = result.curves[(result.curves.optimizer == name) & (result.curves.seed == 1)]
        np.testing.assert_allclose(curve.loss, theirs.loss, rtol=1e-6)
    with pytest.raises(ValueError, match="name the optimizers exactly"):
        benchmark.compare({"linear": sgd}, tasks, lr_grids={"linear": GRIDS["SGD"]}, seeds=[0])
