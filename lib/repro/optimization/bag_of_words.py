"""A synthetic stand-in for bag-of-words text classification (IMDB reviews as the Adam paper uses them,
Sec. 6.1): sparse binary features over a vocabulary whose word frequencies follow Zipf's law, and
labels from a planted linear model, so that rare words carry part of the signal. Nothing downloads.

A document is `doc_length` tokens drawn i.i.d. with P(word of rank r) proportional to r^(-zipf);
its features are which words occur (binary, as in Wang & Manning's bag of words). Every word has a
polarity w_r ~ N(0, 1); a document's score is the sum of the polarities of its words, standardized,
and its label is 1 with probability sigmoid(score / temperature).

The documents are stored sparsely: `words` holds each document's distinct words, padded with the
index `vocab` (the padding carries weight 0). `LogisticBag` is logistic regression on these
features, with the paper's dropout noise on the features during training.

Introduced in: notebooks/optimization/adam.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.validation import check_int, check_positive


@dataclass
class BagOfWords:
    """Documents as padded lists of distinct word indices (padding: the index `vocab`), labels 0/1.
    Introduced in: notebooks/optimization/adam.ipynb"""

    words: torch.Tensor    # (documents, longest document) long
    labels: torch.Tensor   # (documents,) long
    vocab: int

    @property
    def present(self) -> torch.Tensor:
        """1 for a word of the document, 0 for padding: (documents, longest document) float."""
        return (self.words < self.vocab).float()

    def dense(self) -> torch.Tensor:
        """The binary (documents, vocab) feature matrix."""
        x = torch.zeros(len(self.words), self.vocab + 1, device=self.words.device)
        x.scatter_(1, self.words, 1.0)
        return x[:, :self.vocab]

    def to(self, device) -> "BagOfWords":
        return BagOfWords(self.words.to(device), self.labels.to(device), self.vocab)


def bag_of_words(n_docs: int, vocab: int, doc_length: int = 100, zipf: float = 1.0,
                 temperature: float = 0.25, seed: int = 0) -> BagOfWords:
    """`n_docs` synthetic documents over `vocab` words (see the module's docstring).
    Introduced in: notebooks/optimization/adam.ipynb"""
    for name, value in [("n_docs", n_docs), ("vocab", vocab), ("doc_length", doc_length)]:
        check_int(name, value)
    check_positive("zipf", zipf)
    check_positive("temperature", temperature)
    rng = np.random.default_rng(seed)
    p = np.arange(1, vocab + 1, dtype=float) ** -zipf
    tokens = np.sort(rng.choice(vocab, size=(n_docs, doc_length), p=p / p.sum()), axis=1)
    # each document's distinct words, packed to the left of a row padded with `vocab`
    new = np.ones(tokens.shape, dtype=bool)
    new[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    slot = np.cumsum(new, axis=1) - 1
    words = np.full((n_docs, slot.max() + 1), vocab, dtype=np.int64)
    words[np.nonzero(new)[0], slot[new]] = tokens[new]
    polarity = rng.standard_normal(vocab)
    score = np.append(polarity, 0.0)[words].sum(1)
    score = (score - score.mean()) / score.std()
    labels = rng.random(n_docs) < 1 / (1 + np.exp(-score / temperature))
    return BagOfWords(torch.from_numpy(words), torch.from_numpy(labels.astype(np.int64)), vocab)


class LogisticBag(nn.Module):
    """Logistic regression on the binary bag-of-words features of padded word lists: one logit
    (`outputs=1`, for two classes) or one per class, with dropout noise of rate `dropout` on the
    features while training (each present word dropped with that probability, the others scaled by
    1 / (1 - dropout)).
    Introduced in: notebooks/optimization/adam.ipynb"""

    def __init__(self, vocab: int, outputs: int = 1, dropout: float = 0.0):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout == {dropout}, must be in [0, 1)")
        self.vocab, self.dropout = vocab, dropout
        self.weight = nn.Parameter(torch.zeros(vocab + 1, outputs))  # the last row: padding
        self.bias = nn.Parameter(torch.zeros(outputs))
        nn.init.normal_(self.weight, 0.0, 0.01)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        present = (words < self.vocab).to(self.weight.dtype)
        if self.training and self.dropout:   # (uniform noise: cheaper than a Bernoulli draw on a CPU)
            keep = torch.rand(present.shape, device=present.device) >= self.dropout
            present = present * keep / (1 - self.dropout)
        return (self.weight[words] * present[..., None]).sum(-2) + self.bias
