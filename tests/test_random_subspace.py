"""Tests for repro.optimization.random_subspace: training in a random subspace theta = theta_0 + P theta_d (Li et al.
2018, Eq. 2). With d = D and P the identity, subspace training must be ordinary training; gradients
must reach only theta_d; the projections' columns have unit norm; d_int90 is read off a curve as the
smallest d reaching 90% of the baseline."""
import math

import pytest
import torch
from torch import nn

from repro.core import models
from repro.optimization.random_subspace import (SubspaceModel, bootstrap_intrinsic_dimension,
                                                dense_projection, intrinsic_dimension, l2_penalty,
                                                sparse_projection)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _mlp():
    return models.MLP(5, 3, width=7, depth=2).double()


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


# --- the wrapped model -------------------------------------------------------------------------
def test_starts_as_the_base_model_and_counts_parameters():
    base = _mlp()
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = base(x)
    m = SubspaceModel(base, 6, seed=1)
    assert m.D == models.count_parameters(_mlp()) and m.d == 6
    torch.testing.assert_close(m(x), expected)        # theta_d = 0: theta = theta_0
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["theta_d"]
    assert models.count_parameters(m) == 6


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_identity_projection_with_d_equal_D_is_ordinary_training(optimizer):
    torch.manual_seed(3)
    ref, base = _mlp(), _mlp()
    base.load_state_dict(ref.state_dict())
    m = SubspaceModel(base, projection=torch.eye(models.count_parameters(ref), dtype=torch.float64))
    make = ((lambda p: torch.optim.SGD(p, lr=0.1)) if optimizer == "sgd"
            else (lambda p: torch.optim.Adam(p, lr=0.01)))
    opt_ref, opt_sub = make(ref.parameters()), make(m.parameters())
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(3, (16,))
    for _ in range(20):
        for model, opt in ((ref, opt_ref), (m, opt_sub)):
            opt.zero_grad()
            _loss(model, x, y).backward()
            opt.step()
    flat_ref = torch.cat([p.detach().flatten() for p in ref.parameters()])
    torch.testing.assert_close(m.theta(), flat_ref)
    torch.testing.assert_close(m(x), ref(x))


@pytest.mark.parametrize("projection", ["dense", "sparse"])
def test_gradients_reach_only_theta_d_and_equal_P_transpose_grad(projection):
    base = _mlp()
    theta_0 = torch.cat([p.detach().flatten().clone() for p in base.parameters()])
    m = SubspaceModel(base, 4, projection=projection, seed=0)
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(3, (8,))
    _loss(m, x, y).backward()
    assert all(p.grad is None and not p.requires_grad for p in base.parameters())
    assert m.theta_d.grad is not None and m.theta_d.grad.shape == (4,)
    # chain rule: dL/dtheta_d = P^T dL/dtheta, with dL/dtheta from the plain model at theta_0
    ref = _mlp()
    torch.nn.utils.vector_to_parameters(theta_0, ref.parameters())
    _loss(ref, x, y).backward()
    g = torch.cat([p.grad.flatten() for p in ref.parameters()])
    P = m.P.to_dense() if m.P.is_sparse else m.P
    torch.testing.assert_close(m.theta_d.grad, P.T @ g)
    # a step moves theta only inside the span of P, and leaves the base model's tensors alone
    torch.optim.SGD(m.parameters(), lr=0.5).step()
    torch.testing.assert_close(m.theta() - theta_0, P @ m.theta_d.detach())
    torch.testing.assert_close(torch.cat([p.flatten() for p in base.parameters()]), theta_0)


def test_works_with_buffers_and_keyword_arguments():
    base = models.MLP(5, 3, width=6, depth=1, norm="batch")
    m = SubspaceModel(base, 3, seed=0)
    out = m(x=torch.randn(10, 5))
    assert out.shape == (10, 3)
    assert base.net[1].num_batches_tracked.item() == 1   # batch-norm statistics still update


# --- the projections ---------------------------------------------------------------------------
def test_dense_projection_has_unit_norm_nearly_orthogonal_columns():
    P = dense_projection(20000, 30, torch.Generator().manual_seed(0))
    assert P.shape == (20000, 30)
    torch.testing.assert_close(P.norm(dim=0), torch.ones(30))
    off = (P.T @ P - torch.eye(30)).abs().max().item()
    assert off < 5 / math.sqrt(20000)                 # |cos| ~ 1/sqrt(D) for random directions


def test_sparse_projection_has_unit_norm_columns_and_the_asked_density():
    D, d = 10000, 50
    P = sparse_projection(D, d, generator=torch.Generator().manual_seed(0))
    assert P.is_sparse and P.shape == (D, d)
    dense = P.to_dense()
    torch.testing.assert_close(dense.norm(dim=0), torch.ones(d))
    density = (dense != 0).float().mean().item()
    assert abs(density - 1 / math.sqrt(D)) < 0.2 / math.sqrt(D)
    # every column has at least one entry even when the density is tiny
    tiny = sparse_projection(1000, 40, density=1e-4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tiny.to_dense().norm(dim=0), torch.ones(40))


def test_same_seed_same_projection():
    a, b = SubspaceModel(_mlp(), 5, seed=7), SubspaceModel(_mlp(), 5, seed=7)
    torch.testing.assert_close(a.P, b.P)
    assert not torch.equal(a.P, SubspaceModel(_mlp(), 5, seed=8).P)


# --- d_int90 -----------------------------------------------------------------------------------
def test_intrinsic_dimension_on_a_hand_made_curve():
    dims = [0, 10, 50, 100, 200, 400]
    acc = [0.10, 0.40, 0.80, 0.87, 0.90, 0.95]
    # baseline 0.97: threshold 0.873, first reached at d = 200 (0.87 at 100 falls just short)
    assert intrinsic_dimension(dims, acc, baseline=0.97) == 200
    assert intrinsic_dimension(dims, acc, baseline=0.9) == 100            # threshold 0.81
    assert intrinsic_dimension(dims, acc, baseline=0.97, fraction=1.0) == math.inf
    # order does not matter; a noisy dip after the crossing does not move it
    assert intrinsic_dimension(dims[::-1], acc[::-1], baseline=0.97) == 200
    assert intrinsic_dimension([50, 100, 200], [0.9, 0.5, 0.9], baseline=1.0) == 50


def test_intrinsic_dimension_interpolates_in_log_d():
    dims, acc = [100, 200, 400], [0.80, 0.85, 0.95]
    # threshold 0.9 lies halfway between 0.85 (d = 200) and 0.95 (d = 400): d = sqrt(200 * 400)
    assert intrinsic_dimension(dims, acc, 1.0) == 400
    assert intrinsic_dimension(dims, acc, 1.0, interpolate=True) == pytest.approx(math.sqrt(200 * 400))
    assert intrinsic_dimension(dims, acc, 0.5, interpolate=True) == 100     # first point: no bracket
    assert intrinsic_dimension([0, 10], [0.1, 0.95], 1.0, interpolate=True) == 10  # log 0 undefined
    assert intrinsic_dimension(dims, acc, 1.0, fraction=1.0, interpolate=True) == math.inf


def test_intrinsic_dimension_averages_repeated_runs():
    dims = [100, 100, 200, 200]
    acc = [0.95, 0.70, 0.90, 0.92]                    # mean at 100: 0.825 < 0.9
    assert intrinsic_dimension(dims, acc, baseline=1.0) == 200


# --- errors ------------------------------------------------------------------------------------
def test_bad_arguments_raise_named_errors():
    with pytest.raises(TypeError, match="nn.Module"):
        SubspaceModel("not a model", 3)
    with pytest.raises(ValueError, match="no parameters"):
        SubspaceModel(nn.ReLU(), 3)
    with pytest.raises(ValueError, match="d == 0, must be an int >= 1"):
        SubspaceModel(_mlp(), 0)
    with pytest.raises(ValueError, match="give d"):
        SubspaceModel(_mlp())
    with pytest.raises(ValueError, match="projection == 'fastfood'"):
        SubspaceModel(_mlp(), 3, projection="fastfood")
    with pytest.raises(ValueError, match=r"must be \(D, d\)"):
        SubspaceModel(_mlp(), projection=torch.eye(4))
    D = models.count_parameters(_mlp())
    with pytest.raises(ValueError, match="d == 2 but the projection has 3 columns"):
        SubspaceModel(_mlp(), 2, projection=torch.zeros(D, 3))
    with pytest.raises(ValueError, match="density == 0"):
        sparse_projection(100, 3, density=0)


@pytest.mark.parametrize("dims, perf, baseline, fraction, match", [
    ([], [], 1.0, 0.9, "dims is empty"),
    ([1, 2], [0.5], 1.0, 0.9, "must match"),
    ([1.5], [0.5], 1.0, 0.9, "non-negative integer"),
    ([-1], [0.5], 1.0, 0.9, "non-negative integer"),
    ([1], [float("nan")], 1.0, 0.9, "must be finite"),
    ([1], [0.5], 0.0, 0.9, "baseline == 0.0"),
    ([1], [0.5], 1.0, 1.5, "fraction == 1.5"),
])
def test_intrinsic_dimension_rejects_bad_input(dims, perf, baseline, fraction, match):
    with pytest.raises(ValueError, match=match):
        intrinsic_dimension(dims, perf, baseline, fraction)


# --- the L2 penalty and the bootstrap --------------------------------------------------------------
def test_l2_penalty_counts_weight_matrices_only_and_reaches_theta_d():
    base = _mlp()
    expected = 1e-3 * sum((p ** 2).sum() for n, p in base.named_parameters() if p.dim() >= 2)
    torch.testing.assert_close(l2_penalty(base, 1e-3), expected)
    m = SubspaceModel(base, 4, seed=0)
    torch.testing.assert_close(l2_penalty(m, 1e-3), expected.detach())   # theta_d = 0: theta_0
    l2_penalty(m, 1e-3).backward()
    assert m.theta_d.grad is not None and m.theta_d.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="weight_decay == -1"):
        l2_penalty(base, -1)


def test_bootstrap_intrinsic_dimension_estimate_and_spread():
    dims = [100, 200, 400]
    same = [[0.5, 0.8, 0.95]] * 4                       # identical runs: no spread
    d, se = bootstrap_intrinsic_dimension(dims, same, [1.0] * 4, n_boot=50)
    assert d == intrinsic_dimension(dims, same[0], 1.0, interpolate=True) and se == 0
    runs = [[0.5, 0.80, 0.95], [0.5, 0.88, 0.95], [0.5, 0.92, 0.95]]
    d, se = bootstrap_intrinsic_dimension(dims, runs, [1.0] * 3, n_boot=200, seed=1)
    mean_curve = [sum(r[i] for r in runs) / 3 for i in range(3)]
    assert d == pytest.approx(intrinsic_dimension(dims, mean_curve, 1.0, interpolate=True))
    assert 0 < se < d
    d, se = bootstrap_intrinsic_dimension(dims, [[0.5, 0.6, 0.95], [0.5, 0.6, 0.7]], [1.0, 1.0])
    assert se == math.inf                               # some resample never reaches 90%
    with pytest.raises(ValueError, match=r"must be \(runs, dims\)"):
        bootstrap_intrinsic_dimension(dims, [[0.5, 0.9]], [1.0])
