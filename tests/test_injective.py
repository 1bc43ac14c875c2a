"""Free-form injective flows: the Hutchinson surrogate's gradient against the exact gradient of the
log-determinant, the exact manifold NLL against closed forms, and argument checks."""
import math

import pytest
import torch

from repro.core.models import MLP
from repro.normalizing_flows import injective

pytestmark = pytest.mark.usefixtures("float64")  # every test in float64


def _encoder_half_log_det(encoder, x):
    """1/2 log det(f'(x) f'(x)^T) per row, from the full encoder Jacobian (autograd)."""
    jac = torch.stack([torch.autograd.functional.jacobian(encoder, xi[None],
                                                          create_graph=True)[0, :, 0]
                       for xi in x])  # (B, d, D)
    return 0.5 * torch.linalg.slogdet(jac @ jac.transpose(1, 2))[1]


def _pinv_decoder(encoder, x):
    """A decoder whose Jacobian at z = f(x) is the pseudo-inverse of f'(x), row by row:
    g(z') = x + f'(x)^+ (z' - f(x)), built from detached values."""
    with torch.no_grad():
        jac = torch.stack([torch.autograd.functional.jacobian(encoder, xi[None])[0, :, 0]
                           for xi in x])  # (B, d, D)
        pinv = torch.linalg.pinv(jac)      # (B, D, d)
        z0 = encoder(x)

    def decoder(z):
        return x + torch.einsum("bDd,bd->bD", pinv, z - z0)
    return decoder


def _grads(value, params, retain=False):
    grads = torch.autograd.grad(value, params, allow_unused=True, retain_graph=retain)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params)])


@pytest.mark.parametrize("nonlinear", [False, True])
def test_full_trace_surrogate_gradient_is_exact(nonlinear):
    # k = d probes with orthonormal columns give the exact trace, so the surrogate's gradient must
    # equal the gradient of 1/2 log det(f' f'^T) when g' is the pseudo-inverse of f'
    torch.manual_seed(0)
    encoder = (MLP(3, 2, width=16, depth=2, activation="tanh") if nonlinear
               else torch.nn.Linear(3, 2))
    x = torch.randn(5, 3)
    decoder = _pinv_decoder(encoder, x)
    params = list(encoder.parameters())
    s, _, _ = injective.volume_surrogate(x.clone(), encoder, decoder, k=2)
    exact = _encoder_half_log_det(encoder, x)
    torch.testing.assert_close(_grads(s.sum(), params), _grads(exact.sum(), params),
                               rtol=1e-9, atol=1e-10)


def test_single_probe_surrogate_gradient_is_unbiased():
    # one probe per point: the mean gradient over many draws converges to the exact gradient
    torch.manual_seed(1)
    encoder = MLP(3, 2, width=8, depth=1, activation="tanh")
    x = torch.randn(1, 3).expand(4000, 3).clone()   # one point, 4000 independent probes
    decoder = _pinv_decoder(encoder, x[:1])
    params = list(encoder.parameters())
    gen = torch.Generator().manual_seed(0)
    s, _, _ = injective.volume_surrogate(x, encoder, lambda z: decoder(z).expand(len(z), 3),
                                         k=1, generator=gen)
    per_probe = torch.stack([_grads(si, params, retain=True) for si in s[:400]])  # (400, P)
    exact = _grads(_encoder_half_log_det(encoder, x[:1]).sum(), params)
    mean, se = per_probe.mean(0), per_probe.std(0) / math.sqrt(len(per_probe))
    assert ((mean - exact).abs() <= 5 * se + 1e-8).all()
    assert (per_probe.std(0) > 1e-6).any()  # the single probe is noisy: the test can fail


def test_wrong_sign_or_missing_stop_gradient_would_fail():
    # the surrogate's gradient is not the gradient of 1/2 log det(f'f'^T) for a decoder whose
    # Jacobian is not the pseudo-inverse: the identity depends on g' = f'^+
    torch.manual_seed(2)
    encoder = MLP(3, 2, width=16, depth=2, activation="tanh")
    x = torch.randn(5, 3)
    params = list(encoder.parameters())
    wrong = _pinv_decoder(encoder, x)
    s, _, _ = injective.volume_surrogate(x.clone(), encoder, lambda z: 2.0 * wrong(z), k=2)
    exact = _encoder_half_log_det(encoder, x)
    assert not torch.allclose(_grads(s.sum(), params), _grads(exact.sum(), params))


def test_hutchinson_vectors_have_identity_second_moment():
    z = torch.zeros(20000, 3)
    v = injective.hutchinson_vectors(z, k=1, generator=torch.Generator().manual_seed(0))[..., 0]
    second = v.T @ v / len(v)
    torch.testing.assert_close(second, torch.eye(3), atol=0.05, rtol=0)
    full = injective.hutchinson_vectors(z[:4], k=3)
    torch.testing.assert_close(full @ full.transpose(1, 2), 3 * torch.eye(3).expand(4, 3, 3))


def test_decoder_half_log_det_closed_forms():
    # linear decoder g(z) = A z: 1/2 log det(A^T A); a curve (z, sin z): log sqrt(1 + cos^2 z)
    torch.manual_seed(3)
    a = torch.randn(3, 2)
    z = torch.randn(6, 2)
    torch.testing.assert_close(injective.decoder_half_log_det(lambda u: u @ a.T, z),
                               0.5 * torch.logdet(a.T @ a).expand(6))
    t = torch.randn(6, 1)
    curve = lambda u: torch.cat([u, torch.sin(u)], -1)  # noqa: E731
    torch.testing.assert_close(injective.decoder_half_log_det(curve, t),
                               0.5 * torch.log1p(torch.cos(t[:, 0]) ** 2))


def test_manifold_nll_of_an_exact_linear_pair():
    # g(z) = a z (a unit 2-vector times s), f(x) = a.x / s: density N(z) / s along the line
    a = torch.tensor([0.6, 0.8])
    s = 2.5
    encoder = lambda x: (x @ a / s)[:, None]  # noqa: E731
    decoder = lambda z: s * z * a  # noqa: E731
    z = torch.randn(7, 1)
    x = decoder(z)
    expected = 0.5 * z[:, 0] ** 2 + 0.5 * math.log(2 * math.pi) + math.log(s)
    torch.testing.assert_close(injective.manifold_nll(x, encoder, decoder), expected)


def test_losses_are_finite_and_differentiable():
    torch.manual_seed(4)
    flow = injective.InjectiveFlow(MLP(2, 1, width=8), MLP(1, 2, width=8), latent_dim=1)
    x = torch.randn(16, 2)
    for loss in (injective.fif_loss(x, flow.encoder, flow.decoder, 10.0),
                 injective.naive_loss(x, flow.encoder, flow.decoder, 10.0),
                 injective.reconstruction_loss(x, flow.encoder, flow.decoder)):
        assert torch.isfinite(loss)
        grads = torch.autograd.grad(loss, list(flow.parameters()), allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert flow.sample(5).shape == (5, 2)
    assert flow.log_prob(x).shape == (16,)


def test_bad_input_raises():
    flow = injective.InjectiveFlow(MLP(2, 1, width=8), MLP(1, 2, width=8), latent_dim=1)
    with pytest.raises(ValueError, match="beta"):
        injective.fif_loss(torch.randn(4, 2), flow.encoder, flow.decoder, beta=0.0)
    with pytest.raises(ValueError, match="k == 2"):
        injective.hutchinson_vectors(torch.randn(4, 1), k=2)
    with pytest.raises(ValueError, match="shape"):
        injective.manifold_nll(torch.randn(4), flow.encoder, flow.decoder)
    with pytest.raises(ValueError, match="latent_dim"):
        injective.InjectiveFlow(MLP(2, 1), MLP(1, 2), latent_dim=0)
