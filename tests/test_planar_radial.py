import math

import pytest
import torch

from repro.normalizing_flows import planar_radial, potentials
from layer_checks import autograd_log_det, randomize


@pytest.mark.parametrize("make, dim", [
    (lambda: planar_radial.Planar(2), 2),
    (lambda: planar_radial.Planar(3, length=4), 3),
    (lambda: planar_radial.Radial(2), 2),
    (lambda: planar_radial.Radial(3, length=3), 3),
    (lambda: planar_radial.DiagonalAffine(3), 3),
])
def test_log_det_matches_autograd_jacobian(make, dim):
    torch.manual_seed(0)
    block = randomize(make().double())
    z = 1.5 * torch.randn(6, dim, dtype=torch.float64)
    _, log_det = block(z)
    torch.testing.assert_close(log_det, autograd_log_det(block, z))


def test_planar_u_hat_keeps_the_layer_invertible_for_any_u():
    layer = planar_radial.Planar(2, length=3).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.1]]))
        layer.u.copy_(-25.0 * layer.w)                                # w.u << -1: not invertible as given
    wu_hat = (layer.w * layer.u_hat()).sum(-1)
    assert (wu_hat >= -1).all()
    # Appendix A: w.u_hat = m(w.u) = -1 + log(1 + exp(w.u)), and u_hat only moves along w
    for scale in (-25.0, 0.3, 5.0):
        with torch.no_grad():
            layer.u.copy_(scale * layer.w + torch.tensor([2.0, -1.0]))
        wu = (layer.w * layer.u).sum(-1)
        torch.testing.assert_close((layer.w * layer.u_hat()).sum(-1), -1 + torch.log1p(wu.exp()))
        shift = layer.u_hat() - layer.u
        torch.testing.assert_close(shift[:, 0] * layer.w[:, 1], shift[:, 1] * layer.w[:, 0])


@pytest.mark.parametrize("make", [
    lambda: planar_radial.Planar(2, length=5),
    lambda: planar_radial.Radial(2, length=5),
    lambda: planar_radial.DiagonalAffine(2),
])
def test_inverse_undoes_forward(make):
    block = randomize(make().double(), scale=1.5)
    z = 2 * torch.randn(200, 2, dtype=torch.float64)
    torch.testing.assert_close(block.inverse(block(z)[0]), z, atol=1e-8, rtol=1e-8)


def test_planar_inverse_at_the_edge_of_invertibility():
    layer = planar_radial.Planar(2).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([[2.0, 0.0]]))
        layer.u.copy_(torch.tensor([[-10.0, 0.0]]))                  # w.u_hat close to -1
    z = torch.linspace(-3, 3, 50, dtype=torch.float64)[:, None].repeat(1, 2)
    assert (layer.w * layer.u_hat()).sum() < -0.99
    torch.testing.assert_close(layer.inverse(layer(z)[0]), z, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_flow_density_integrates_to_one_on_a_grid(kind):
    torch.manual_seed(1)
    flow = planar_radial.make_flow(kind, 6).double()
    randomize(flow.blocks[1], scale=1.0, seed=3)
    zz, area = potentials.grid(lim=9.0, n=500)
    mass = (flow.log_prob(zz).exp().sum() * area).item()
    assert mass == pytest.approx(1.0, abs=5e-3)


def test_sampled_log_density_matches_log_prob():
    torch.manual_seed(2)
    flow = planar_radial.make_flow("planar", 8, copies=3).double()
    randomize(flow.blocks[1], scale=0.8)
    z, log_q = flow.sample_and_log_prob(500)
    assert z.shape == (3, 500, 2) and log_q.shape == (3, 500)
    torch.testing.assert_close(flow.log_prob(z), log_q.detach(), atol=1e-6, rtol=1e-6)


def test_copies_are_independent_flows():
    torch.manual_seed(3)
    many = planar_radial.make_flow("planar", 4, copies=2).double()
    randomize(many, scale=0.7)
    one = planar_radial.make_flow("planar", 4).double()
    with torch.no_grad():
        for p_one, p_many in zip(one.parameters(), many.parameters()):
            p_one.copy_(p_many[1])
    zz, _ = potentials.grid(lim=3.0, n=20)
    torch.testing.assert_close(many.log_prob(zz)[1], one.log_prob(zz))   # a shared grid (N, D) is broadcast


def test_reverse_kl_is_zero_for_the_exact_answer_and_matches_the_gaussian_formula():
    std_normal = lambda z: 0.5 * (z ** 2).sum(-1)                     # noqa: E731, log Z = log(2 pi)
    exact = planar_radial.make_flow("planar", 0, learn_base=False)
    assert planar_radial.reverse_kl(exact, std_normal, math.log(2 * math.pi), n=1000).item() == pytest.approx(0, abs=1e-5)
    gauss = planar_radial.make_flow("planar", 0).double()
    with torch.no_grad():
        gauss.blocks[0].mu.copy_(torch.tensor([0.5, -1.0]))
        gauss.blocks[0].log_sigma.copy_(torch.tensor([0.3, -0.4]))
    mu, sigma = torch.tensor([0.5, -1.0]), torch.tensor([0.3, -0.4]).exp()
    analytic = 0.5 * (sigma ** 2 + mu ** 2 - 1 - 2 * sigma.log()).sum().item()
    torch.manual_seed(0)
    estimate = planar_radial.reverse_kl(gauss, std_normal, math.log(2 * math.pi), n=200_000).item()
    assert estimate == pytest.approx(analytic, abs=0.01)


def test_fitting_a_planar_flow_lowers_the_kl_to_a_shifted_gaussian():
    torch.manual_seed(0)
    target = lambda z: 0.5 * ((z - torch.tensor([1.0, -2.0])) ** 2).sum(-1)  # noqa: E731
    flow = planar_radial.make_flow("planar", 2)
    opt = torch.optim.Adam(flow.parameters(), lr=0.05)
    before = planar_radial.reverse_kl(flow, target, math.log(2 * math.pi), n=5000).item()
    for step in range(300):
        loss = planar_radial.free_energy(flow, target, 128, beta=planar_radial.annealing(step, warmup=100))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = planar_radial.reverse_kl(flow, target, math.log(2 * math.pi), n=5000).item()
    assert before > 2 and after < 0.02


def test_stack_energies_applies_one_energy_per_copy():
    energy = planar_radial.stack_energies([potentials.potential("U1"), potentials.potential("U2")])
    z = torch.randn(2, 7, 2)
    torch.testing.assert_close(energy(z)[1], potentials.potential("U2")(z[1]))
    with pytest.raises(ValueError, match=r"must be \(2, N, D\)"):
        energy(torch.randn(3, 7, 2))
    with pytest.raises(ValueError, match="energies is empty"):
        planar_radial.stack_energies([])


def test_annealing_schedule_is_the_papers():
    assert planar_radial.annealing(0) == pytest.approx(0.01)
    assert planar_radial.annealing(4_900) == pytest.approx(0.5)
    assert planar_radial.annealing(10_000) == 1.0 and planar_radial.annealing(10**6) == 1.0
    assert planar_radial.annealing(50, warmup=100) == pytest.approx(0.51)
    with pytest.raises(ValueError, match="warmup == 0"):
        planar_radial.annealing(1, warmup=0)


def test_bad_arguments_are_rejected_with_their_value():
    with pytest.raises(ValueError, match="kind == 'nice', must be one of 'planar', 'radial'"):
        planar_radial.make_flow("nice", 2)
    with pytest.raises(ValueError, match="length == -1"):
        planar_radial.make_flow("planar", -1)
    with pytest.raises(ValueError, match="dim == 0"):
        planar_radial.Planar(0)
    with pytest.raises(ValueError, match="copies == 0"):
        planar_radial.Radial(2, copies=0)
    with pytest.raises(ValueError, match="n == 0"):
        planar_radial.make_flow("planar", 1).sample_and_log_prob(0)
    with pytest.raises(ValueError, match="beta == 2"):
        planar_radial.free_energy(planar_radial.make_flow("planar", 1), potentials.potential("U1"), 8, beta=2)
    with pytest.raises(ValueError, match=r"z has shape \(5, 3\), must be \(N, 2\)"):
        planar_radial.make_flow("planar", 1).log_prob(torch.zeros(5, 3))


def test_planar_layers_with_a_zero_u_hat_are_the_identity():
    torch.manual_seed(4)
    w, u, b = torch.randn(3, 5, 2), torch.randn(3, 5, 2), torch.randn(3, 5)
    z = torch.randn(3, 7, 2)
    mask = torch.tensor([[1.0] * 5, [1.0, 1.0, 0, 0, 0], [0.0] * 5]).unsqueeze(-1)
    out, log_det = planar_radial.planar_layers(z, w, planar_radial.planar_u_hat(w, u) * mask, b)
    torch.testing.assert_close(out[2], z[2])
    torch.testing.assert_close(log_det[2], torch.zeros(7))
    two, two_log_det = planar_radial.planar_layers(z[1], w[1, :2], planar_radial.planar_u_hat(w[1, :2], u[1, :2]), b[1, :2])
    torch.testing.assert_close(out[1], two)                           # a masked tail changes nothing
    torch.testing.assert_close(log_det[1], two_log_det)


def test_gaussian_flow_and_the_standard_error_of_the_kl():
    target = lambda z: 0.5 * ((z - torch.tensor([1.0, -2.0], dtype=z.dtype)) ** 2).sum(-1)  # noqa: E731
    exact = planar_radial.gaussian_flow(torch.tensor([1.0, -2.0]), torch.zeros(2)).double()
    kl, se = planar_radial.reverse_kl(exact, target, math.log(2 * math.pi), n=2000, return_se=True)
    assert kl.item() == pytest.approx(0, abs=1e-6) and se.item() == pytest.approx(0, abs=1e-6)
    wide = planar_radial.gaussian_flow(torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 0.5]])).double()
    torch.manual_seed(8)
    kl, se = planar_radial.reverse_kl(wide, planar_radial.stack_energies([target]), math.log(2 * math.pi),
                                      n=100_000, return_se=True)
    analytic = 2 * 0.5 * (math.exp(1.0) - 1 - 1.0)                   # sum over dims of (s^2 - 1 - log s^2) / 2
    assert abs(kl.item() - analytic) < 4 * se.item() and 0 < se.item() < 0.01
    with pytest.raises(ValueError, match="must both be"):
        planar_radial.gaussian_flow(torch.zeros(2), torch.zeros(3))


def test_stack_energies_with_repeats_lays_copies_out_as_repeat_then_energy():
    names = ["U1", "U2", "U3"]
    energy = planar_radial.stack_energies([potentials.potential(n) for n in names], repeats=2)
    z = torch.randn(6, 5, 2, dtype=torch.float64)
    values = energy(z)
    for c in range(6):
        torch.testing.assert_close(values[c], potentials.potential(names[c % 3])(z[c]))
    with pytest.raises(ValueError, match=r"must be \(6, N, D\)"):
        energy(torch.randn(3, 5, 2))
    with pytest.raises(ValueError, match="repeats == 0"):
        planar_radial.stack_energies(names, repeats=0)


def test_select_keeps_the_chosen_copies_in_order():
    torch.manual_seed(6)
    flow = planar_radial.make_flow("planar", 3, copies=4).double()
    randomize(flow, scale=0.7)
    chosen = flow.select([3, 1])
    zz, _ = potentials.grid(lim=3.0, n=10)
    torch.testing.assert_close(chosen.log_prob(zz), flow.log_prob(zz)[[3, 1]])
    assert chosen.copies == 2 and chosen.sample_and_log_prob(5)[0].shape == (2, 5, 2)
    with pytest.raises(ValueError, match="needs a flow with copies"):
        planar_radial.make_flow("planar", 1).select([0])
