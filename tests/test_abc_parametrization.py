import pytest
import torch

from repro.infinite_width_kernels.abc_parametrization import (PARAMETRIZATIONS, ParametrizedMLP, accuracy_gain, feature_change,
                                   linear_probe)


def _net(parametrization, width, seed=0, **kw):
    torch.manual_seed(seed)
    return ParametrizedMLP(4, width, 1, depth=2, parametrization=parametrization, **kw).double()


def _inputs(n=256):
    torch.manual_seed(123)
    return torch.randn(n, 4, dtype=torch.float64)


@pytest.mark.parametrize("parametrization", list(PARAMETRIZATIONS))
def test_hidden_preactivations_are_order_one_at_any_width(parametrization):
    x = _inputs()
    for width in (64, 4096):
        net = _net(parametrization, width, activation="identity")
        h1, h2 = net.features(x)
        # a wrong exponent would be off by a factor of 8 to 64 at these widths
        assert h1.var().item() == pytest.approx(1.0, rel=0.3)
        assert h2.var().item() == pytest.approx(1.0, rel=0.3)


def test_output_scale_at_init_is_order_one_for_ntk_and_vanishes_for_mup():
    x = _inputs()
    def output_std(parametrization, width):
        torch.manual_seed(0)
        net = ParametrizedMLP(4, width, 64, depth=2, parametrization=parametrization).double()
        return net(x).std().item()
    ntk = [output_std("ntk", w) for w in (64, 4096)]
    mup = [output_std("mup", w) for w in (64, 4096)]
    assert ntk[1] == pytest.approx(ntk[0], rel=0.5)
    assert mup[1] / mup[0] == pytest.approx((64 / 4096) ** 0.5, rel=0.5)  # ~ 1/sqrt(n)


def test_sp_and_ntk_are_the_same_function_at_init():
    """They differ only in where 1/sqrt(n) sits: in the weight or in a multiplier."""
    x = _inputs(8)
    sp, ntk = _net("sp", 32, bias=0.1), _net("ntk", 32, bias=0.1)
    with torch.no_grad():
        for a, b in zip(sp.parameters(), ntk.parameters()):
            b.copy_(a)
        for layer in list(ntk.hidden_layers)[1:] + [ntk.readout]:
            layer.weight.mul_(32 ** 0.5)
    torch.testing.assert_close(sp(x), ntk(x))


def _feature_change(parametrization, width, seed, lr=0.5):
    x, y = _inputs(32), torch.randn(32, 1, generator=torch.Generator().manual_seed(1)).double()
    net = _net(parametrization, width, seed)
    before = net.features(x)[-1].detach()
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    # root-mean-square change of one coordinate of the last hidden layer
    return (net.features(x)[-1] - before).pow(2).mean().sqrt().item()


def test_one_sgd_step_moves_features_like_n_to_minus_half_under_ntk_and_order_one_under_mup():
    def ratio(parametrization):  # mean over initializations: one init's residual is random
        change = {w: sum(_feature_change(parametrization, w, s) for s in range(6)) for w in (128, 2048)}
        return change[2048] / change[128]
    ntk, mup = ratio("ntk"), ratio("mup")
    assert ntk == pytest.approx(0.25, rel=0.3)  # sqrt(128 / 2048)
    assert mup == pytest.approx(1.0, rel=0.3)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="parametrization == 'mf', must be one of"):
        ParametrizedMLP(2, 8, parametrization="mf")
    with pytest.raises(ValueError, match="activation == 'swish'"):
        ParametrizedMLP(2, 8, activation="swish")
    with pytest.raises(ValueError, match="must be >= 1"):
        ParametrizedMLP(2, 0)


# --- feature_change, linear_probe, accuracy_gain ---------------------------------------------------


def test_feature_change_is_the_rms_coordinate_change():
    before = torch.zeros(4, 3)
    after = torch.full((4, 3), 2.0)
    assert feature_change(before, after) == pytest.approx(2.0)
    assert feature_change(after, after) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        feature_change(torch.zeros(4, 3), torch.zeros(4, 2))


def test_linear_probe_matches_sklearn_ridge_on_scaled_features():
    from sklearn.linear_model import Ridge
    gen = torch.Generator().manual_seed(0)
    f_train, f_test = torch.randn(40, 7, generator=gen), torch.randn(15, 7, generator=gen)
    labels = torch.randint(0, 3, (40,), generator=gen)
    ours = linear_probe(f_train, labels, f_test, ridge=0.3)
    mean, std = f_train.mean(0), f_train.std(0) + 1e-8
    design = lambda f: torch.cat([(f - mean) / std / 7 ** 0.5, torch.ones(len(f), 1)], 1).double().numpy()
    ref = Ridge(alpha=0.3, fit_intercept=False).fit(design(f_train), torch.nn.functional.one_hot(labels).double().numpy())
    assert ours.tolist() == ref.predict(design(f_test)).argmax(1).tolist()


def test_linear_probe_separates_linearly_separable_classes_and_checks_input():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 5, generator=gen)
    y = (x[:, 0] > 0).long()
    # least squares on one-hot targets is not a max-margin separator, but close to one here
    assert (linear_probe(x[:100], y[:100], x[100:], ridge=1e-3) == y[100:]).float().mean() > 0.9
    with pytest.raises(ValueError, match="same width"):
        linear_probe(x[:10], y[:10], x[10:20, :3])
    with pytest.raises(ValueError, match="labels for"):
        linear_probe(x[:10], y[:9], x[10:20])
    with pytest.raises(ValueError, match="ridge == 0"):
        linear_probe(x[:10], y[:10], x[10:20], ridge=0)


def test_accuracy_gain_is_the_paired_difference_with_its_standard_error():
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    new = torch.tensor([0, 1, 1, 0, 1, 0, 1, 1])    # 7 right
    base = torch.tensor([0, 0, 1, 1, 1, 0, 0, 1])   # 6 right; new alone right on 2, base alone on 1
    gain, se = accuracy_gain(new, base, labels)
    assert gain == pytest.approx(1 / 8)
    # McNemar's form: sqrt(b + c - (b - c)^2 / n) / n with b = 2, c = 1 discordant examples
    assert se == pytest.approx((2 + 1 - 1 / 8) ** 0.5 / 8)
    assert accuracy_gain(base, base, labels) == (0.0, 0.0)
    with pytest.raises(ValueError, match="equally long"):
        accuracy_gain(new[:4], base, labels)
