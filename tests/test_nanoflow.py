import pytest
import torch

from repro.normalizing_flows import nanoflow
from layer_checks import autograd_log_det, randomize

VARIANTS = {
    "unshared": dict(),
    "naive": dict(share_trunk=True, share_projection=True),
    "decomp": dict(share_trunk=True),
    "nanoflow": dict(share_trunk=True, embed_dim=3),
}


def _flow(dim, n_steps, variant, hidden=8, copies=1):
    torch.manual_seed(0)
    return nanoflow.coupling_flow(dim, n_steps, hidden, copies=copies, **VARIANTS[variant])


class _Layers(torch.nn.Module):
    """One copy of a CouplingFlow as a map of (N, D) batches, (output, log_det) both ways."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def forward(self, x):
        u, log_det = self.flow(x[None])
        return u[0], log_det[0]

    def inverse(self, u):
        x, log_det = self.flow.inverse(u[None])
        return x[0], log_det[0]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dim", [2, 5])
def test_inverse_undoes_forward_and_negates_log_det(variant, dim):
    chain = _Layers(randomize(_flow(dim, 4, variant).double(), scale=0.5))
    x = 1.5 * torch.randn(50, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u, log_det = chain(x)
    assert (u - x).abs().max() > 1e-2                       # far from the identity
    x_back, log_det_inverse = chain.inverse(u)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_det_inverse, -log_det, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dim", [2, 5])
def test_log_det_matches_autograd_jacobian(variant, dim):
    chain = _Layers(randomize(_flow(dim, 3, variant).double(), scale=0.5))
    x = torch.randn(4, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(chain(x)[1], autograd_log_det(chain, x))
    u = chain(x)[0]
    torch.testing.assert_close(chain.inverse(u)[1], autograd_log_det(chain.inverse, u))


def test_log_prob_integrates_to_one_in_2d():
    flow = randomize(_flow(2, 3, "nanoflow").double(), scale=0.3)
    g = torch.linspace(-12, 12, 601, dtype=torch.float64)
    xx = torch.cartesian_prod(g, g)
    mass = flow.log_prob(xx).exp().sum(1) * (g[1] - g[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3


def test_copies_are_independent_flows():
    flow = randomize(_flow(3, 2, "nanoflow", copies=3).double(), scale=0.5)
    x = torch.randn(7, 3, dtype=torch.float64)
    log_p = flow.log_prob(x)
    assert log_p.shape == (3, 7) and not torch.allclose(log_p[0], log_p[1])
    loss = -log_p[1].sum()
    loss.backward()
    assert flow.steps[0].trunk.w1.grad[0].abs().max() == 0       # copy 1's loss leaves copy 0
    samples, log_q = flow.sample_and_log_prob(5, torch.Generator().manual_seed(0))
    assert samples.shape == (3, 5, 3)
    torch.testing.assert_close(log_q, flow.log_prob(samples))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dim, n_steps, hidden", [(2, 1, 8), (2, 7, 16), (5, 4, 8), (6, 12, 5)])
def test_parameter_count_formula(variant, dim, n_steps, hidden):
    flow = nanoflow.coupling_flow(dim, n_steps, hidden, copies=2, **VARIANTS[variant])
    assert nanoflow.count_parameters(flow) == nanoflow.parameter_count(dim, n_steps, hidden,
                                                                         **VARIANTS[variant])


def test_sharing_gives_the_promised_growth_in_steps():
    count = {v: [nanoflow.count_parameters(nanoflow.coupling_flow(4, k, 16, **VARIANTS[v]))
                 for k in (1, 2, 3)] for v in VARIANTS}
    assert count["naive"][0] == count["naive"][1] == count["naive"][2]          # constant in K
    trunk = (2 * 16 + 16 + 16 * 16 + 16)
    projection = 2 * 2 * 17 + 2
    assert count["unshared"][1] - count["unshared"][0] == trunk + projection
    assert count["nanoflow"][1] - count["nanoflow"][0] == projection + 3     # + embedding
    assert count["decomp"][2] - count["decomp"][1] == projection


def test_shared_modules_are_one_object_and_embeddings_differ():
    flow = _flow(4, 3, "nanoflow")
    steps = flow.steps
    assert all(s.trunk is steps[0].trunk for s in steps)
    assert len({id(s.projection) for s in steps}) == 3
    assert not torch.equal(steps[0].embedding, steps[1].embedding)


def test_new_flow_is_the_identity():
    x = torch.randn(10, 4)
    for variant in VARIANTS:
        u, log_det = _Layers(_flow(4, 2, variant))(x)          # two reversals: back in order
        torch.testing.assert_close(u, x)
        torch.testing.assert_close(log_det, torch.zeros(10))


@pytest.mark.parametrize("kwargs, match", [
    (dict(share_projection=True), "needs share_trunk"),
    (dict(embed_dim=2), "only has a use with a shared trunk"),
    (dict(share_trunk=True, embed_dim=-1), "embed_dim"),
])
def test_bad_sharing_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nanoflow.coupling_flow(4, 3, 8, **kwargs)
    with pytest.raises(ValueError, match=match):
        nanoflow.parameter_count(4, 3, 8, **kwargs)


def test_bad_input_raises():
    flow = _flow(4, 2, "nanoflow")
    with pytest.raises(ValueError, match=r"must be \(1, N, 4\)"):
        flow.steps[0](torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="dim"):
        nanoflow.coupling_flow(1, 2)
    trunk, projection = nanoflow.Trunk(3, 8), nanoflow.Projection(8, 2)
    with pytest.raises(ValueError, match="the trunk takes 3 inputs"):
        nanoflow.SharedCoupling(4, trunk, projection, torch.zeros(1, 0))
