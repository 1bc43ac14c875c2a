"""A tiny decoder-only transformer in the style of nanoGPT (karpathy/nanoGPT `model.py`): token and
learned position embeddings, `n_layer` pre-norm blocks x + attn(norm(x)), x + mlp(norm(x)) of causal
self-attention and a 4x-wide GELU MLP, a final norm and a linear read-out to the vocabulary.

The read-out is untied from the token embedding. Several optimizers of the chapter treat a parameter
by its role (Muon orthogonalizes the hidden matrices and leaves embeddings and read-out to
AdamW), and a tied matrix would have two roles at once; with a vocabulary of a few dozen
characters tying would save almost nothing.

Initialization follows GPT-2 as nanoGPT writes it: weights N(0, 0.02^2), biases 0, and the two
projections that write into the residual stream N(0, (0.02 / sqrt(2 n_layer))^2). The logits start
near zero, so the loss at initialization is close to log(vocab_size).

Introduced in: notebooks/optimization/muon.ipynb
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .validation import check_int

INIT_STD = 0.02  # GPT-2's


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t only.
    Introduced in: notebooks/optimization/muon.ipynb"""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model == {d_model} must be a multiple of n_head == {n_head}")
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)  # writes into the residual stream

    def forward(self, x):
        B, T, C = x.shape  # batch, time, d_model
        q, k, v = self.qkv(x).split(C, dim=-1)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """One pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).
    Introduced in: notebooks/optimization/muon.ipynb"""

    def __init__(self, d_model: int, n_head: int, norm: Callable[[int], nn.Module]):
        super().__init__()
        self.norm1 = norm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.norm2 = norm(d_model)
        # the MLP's last layer, like attn.proj, writes into the residual stream
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """A character-level decoder-only transformer: ids (B, T) -> next-token logits
    (B, T, vocab_size), T <= context. Small by default (2 layers, 2 heads, width 64, context 32:
    about 104k parameters for 16 symbols).

    `norm` is a callable d_model -> normalization module (nn.LayerNorm by default), used before
    attention and MLP in every block and once before the read-out: the normalization chapter passes
    its own layers here.
    Introduced in: notebooks/optimization/muon.ipynb
    """

    def __init__(self, vocab_size: int, context: int = 32, n_layer: int = 2, n_head: int = 2,
                 d_model: int = 64, norm: Callable[[int], nn.Module] = nn.LayerNorm):
        super().__init__()
        for name, value in dict(vocab_size=vocab_size, context=context, n_layer=n_layer,
                                n_head=n_head, d_model=d_model).items():
            check_int(name, value)
        if not callable(norm):
            raise TypeError(f"norm == {norm!r}, must be a callable d_model -> module, "
                            "such as nn.LayerNorm")
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, norm) for _ in range(n_layer))
        self.final_norm = norm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self._init_weights(n_layer)

    def _init_weights(self, n_layer: int) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, INIT_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        # the residual stream adds 2 * n_layer writes: scale them so that its variance stays O(1)
        for block in self.blocks:
            for layer in (block.attn.proj, block.mlp[-1]):
                nn.init.normal_(layer.weight, 0.0, INIT_STD / math.sqrt(2 * n_layer))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        B, T = ids.shape
        if T > self.context:
            raise ValueError(f"a sequence of length {T} is longer than the context, {self.context}")
        positions = torch.arange(T, device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(positions)  # (B, T, d_model)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))  # (B, T, vocab_size)


def next_token_loss(model: nn.Module, batch) -> torch.Tensor:
    """The mean cross-entropy of the next-token predictions: batch = (x, y), both (B, T) ids.
    Introduced in: notebooks/optimization/muon.ipynb"""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
