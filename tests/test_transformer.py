import math

import pytest
import torch
from torch import nn

from repro.core.transformer import TinyTransformer, next_token_loss

V = 16


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyTransformer(V, **kw).double()


def _ids(B=4, T=32, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_logits_have_one_row_per_position_and_symbol():
    model = _model()
    assert model(_ids(3, 32)).shape == (3, 32, V)
    assert model(_ids(2, 5)).shape == (2, 5, V)  # shorter than the context is fine


def test_a_later_token_does_not_change_earlier_logits():
    model = _model()
    ids = _ids(2, 32)
    changed = ids.clone()
    changed[:, 20] = (changed[:, 20] + 1) % V
    before, after = model(ids), model(changed)
    torch.testing.assert_close(before[:, :20], after[:, :20], rtol=0, atol=1e-13)
    assert (before[:, 20:] - after[:, 20:]).abs().max() > 1e-6  # and it does change the rest


def test_the_loss_at_initialization_is_about_log_vocab():
    losses = [next_token_loss(_model(seed), (_ids(8, 32, seed), _ids(8, 32, seed + 10))).item()
              for seed in range(3)]
    # small logits at init: the loss exceeds log V by about their variance / 2, here < 0.02
    assert all(abs(loss - math.log(V)) < 0.05 for loss in losses), losses


def test_it_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = TinyTransformer(V, context=8)
    batch = (_ids(4, 8, 2), _ids(4, 8, 3))  # random targets: memorization only
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        loss = next_token_loss(model, batch)
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * math.log(V)


def test_a_custom_norm_callable_is_used_everywhere():
    built = []

    class Recording(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.scale = nn.Parameter(torch.full((d,), 2.0))
            self.calls = 0
            built.append(self)

        def forward(self, x):
            self.calls += 1
            return self.scale * x

    model = TinyTransformer(V, n_layer=3, norm=Recording)
    model(_ids(2, 8))
    assert len(built) == 2 * 3 + 1 and all(m.calls == 1 for m in built)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in TinyTransformer(V, n_layer=3).modules()) == 7


def test_it_matches_attention_written_out():
    # sdpa with is_causal=True against the causal softmax written by hand, through the whole model
    model = _model(n_layer=1, n_head=2, d_model=8, context=6)
    ids = _ids(2, 6)
    attn, x = model.blocks[0].attn, model.blocks[0].norm1(
        model.token_embedding(ids) + model.position_embedding(torch.arange(6)))
    q, k, v = attn.qkv(x).split(8, dim=-1)
    heads = [slice(0, 4), slice(4, 8)]
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    outs = []
    for h in heads:
        scores = (q[..., h] @ k[..., h].transpose(-1, -2) / 2.0).masked_fill(~mask, -math.inf)
        outs.append(scores.softmax(-1) @ v[..., h])
    torch.testing.assert_close(attn(x), attn.proj(torch.cat(outs, -1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw, match", [
    (dict(n_head=3), "multiple of n_head"),
    (dict(context=0), "context == 0"),
    (dict(norm="layer"), "callable"),
])
def test_bad_arguments_raise(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TinyTransformer(V, **kw)


def test_a_sequence_longer_than_the_context_raises():
    with pytest.raises(ValueError, match="longer than the context"):
        _model(context=8)(_ids(1, 9))
