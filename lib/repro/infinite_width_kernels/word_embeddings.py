"""A Word2Vec-like stand-in for Yang & Hu (2021): skip-gram word embeddings in the NTK and muP
abc-parametrizations, trained on a synthetic corpus whose words belong to hidden topics.

The model is the paper's Word2Vec architecture reduced to its core: a one-hot word goes through an
embedding layer (the input layer, n = width coordinates) and a readout layer that scores every
context word, with no nonlinearity,

    logits(w) = (n^(-a_1) e_w) (n^(-a_2) U)^T,    e ~ N(0, n^(-2 b_1)),  U ~ N(0, n^(-2 b_2)),

with (a, b) the input and output exponents of `PARAMETRIZATIONS` (one-hot inputs: no 1/sqrt(d_in)).
Embeddings are judged by how well they place words of one topic together: the leave-one-out
k-nearest-neighbour accuracy of the topic under cosine similarity. Random embeddings score chance,
1/topics, since a one-hot input carries no information about its topic.

Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from ..core.validation import check_choice
from .abc_parametrization import PARAMETRIZATIONS


def topic_pairs(n: int, vocab: int, topics: int, p_topic: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n (word, context) pairs of a corpus in which word w has topic w % topics: the word is uniform
    over the vocabulary; with probability p_topic its context is a uniform word of the same topic,
    otherwise a uniform word of the whole vocabulary.
    Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
    """
    if vocab % topics or topics < 2:
        raise ValueError(f"vocab == {vocab} must be a multiple of topics == {topics} >= 2")
    if not 0 <= p_topic <= 1:
        raise ValueError(f"p_topic == {p_topic}, must be in [0, 1]")
    words = torch.randint(vocab, (n,), generator=generator)
    same_topic = torch.randint(vocab // topics, (n,), generator=generator) * topics + words % topics
    anywhere = torch.randint(vocab, (n,), generator=generator)
    use_topic = torch.rand(n, generator=generator) < p_topic
    return words, torch.where(use_topic, same_topic, anywhere)


def topic_batches(batch_size: int, vocab: int, topics: int, p_topic: float,
                  seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of fresh (words, contexts) batches of `topic_pairs`, one per SGD step."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield topic_pairs(batch_size, vocab, topics, p_topic, generator)


class SkipGram(nn.Module):
    """Skip-gram embeddings of `vocab` words in `width` dimensions in an abc-parametrization (the
    input and output exponents of `PARAMETRIZATIONS`); forward(words) gives context logits (B, vocab).
    Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
    """

    def __init__(self, vocab: int, width: int, parametrization: str = "mup"):
        super().__init__()
        check_choice("parametrization", parametrization, tuple(PARAMETRIZATIONS))
        if min(vocab, width) < 1:
            raise ValueError(f"vocab and width must be >= 1, got {vocab} and {width}")
        (a_in, b_in), _, (a_out, b_out) = PARAMETRIZATIONS[parametrization]
        n = float(width)
        self.parametrization, self.width = parametrization, width
        self.embed_multiplier, self.readout_multiplier = n ** -a_in, n ** -a_out
        self.embed = nn.Parameter(torch.randn(vocab, width) * n ** -b_in)      # (V, n)
        self.readout = nn.Parameter(torch.randn(vocab, width) * n ** -b_out)   # (V, n)

    def embeddings(self) -> torch.Tensor:
        """The word vectors the network uses, n^(-a_1) e: (vocab, width)."""
        return self.embed_multiplier * self.embed

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        hidden = self.embed_multiplier * self.embed[words]              # (B, n)
        return hidden @ (self.readout_multiplier * self.readout).T     # (B, V)


def knn_accuracy(embeddings: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Leave-one-out accuracy of predicting each row's label by a majority vote of its k nearest
    other rows under cosine similarity (ties go to the smallest label).
    Introduced in: notebooks/infinite-width-kernels/feature-learning-in-infinite-width-neural-networks.ipynb
    """
    if embeddings.ndim != 2 or len(labels) != len(embeddings):
        raise ValueError(f"need a (words, width) matrix and one label per word, got "
                         f"{tuple(embeddings.shape)} and {len(labels)} labels")
    if not 1 <= k < len(embeddings):
        raise ValueError(f"k == {k}, must be in [1, {len(embeddings) - 1}]")
    unit = torch.nn.functional.normalize(embeddings.double(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)  # a word is not its own neighbour
    neighbours = similarity.topk(k, dim=1).indices                       # (V, k)
    classes = int(labels.max()) + 1
    votes = torch.nn.functional.one_hot(labels[neighbours].long(), classes).sum(1)  # (V, classes)
    return (votes.argmax(1) == labels).double().mean().item()
