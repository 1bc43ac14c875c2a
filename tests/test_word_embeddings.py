import math

import pytest
import torch

from repro.infinite_width_kernels.word_embeddings import (SkipGram, knn_accuracy, topic_batches,
                                                          topic_pairs)


def test_topic_pairs_share_a_topic_as_often_as_the_corpus_says():
    words, contexts = topic_pairs(200_000, 64, 8, 0.3, torch.Generator().manual_seed(0))
    same = (words % 8 == contexts % 8).double().mean().item()
    assert same == pytest.approx(0.3 + 0.7 / 8, abs=0.005)  # topic draws plus chance coincidences
    assert words.bincount(minlength=64).min() > 0.8 * 200_000 / 64  # words are uniform


def test_topic_pairs_reject_a_vocabulary_that_topics_do_not_divide():
    with pytest.raises(ValueError, match="multiple of topics"):
        topic_pairs(10, 30, 8, 0.3, torch.Generator())


def test_topic_batches_are_fresh_and_reproducible():
    a, b = topic_batches(16, 32, 4, 0.5, seed=1), topic_batches(16, 32, 4, 0.5, seed=1)
    first, second = next(a), next(a)
    assert torch.equal(first[0], next(b)[0]) and not torch.equal(first[0], second[0])


@pytest.mark.parametrize("width", [64, 4096])
def test_embeddings_are_order_one_and_logits_scale_as_the_parametrization_says(width):
    torch.manual_seed(0)
    words = torch.arange(32)
    ntk, mup = SkipGram(32, width, "ntk"), SkipGram(32, width, "mup")
    for net in (ntk, mup):
        assert net.embeddings().var().item() == pytest.approx(1.0, rel=0.1)
    with torch.no_grad():
        assert ntk(words).std().item() == pytest.approx(1.0, rel=0.15)                  # Theta(1)
        assert mup(words).std().item() == pytest.approx(width ** -0.5, rel=0.15)        # Theta(n^-1/2)


@pytest.mark.parametrize("parametrization, exponent", [("ntk", -0.5), ("mup", 0.0)])
def test_one_sgd_step_moves_the_embeddings_like_the_theory_says(parametrization, exponent):
    """NTK's embeddings move by Theta(n^-1/2) per coordinate, muP's by Theta(1)."""
    def change(width):
        torch.manual_seed(0)
        net = SkipGram(32, width, parametrization).double()
        before = net.embeddings().detach().clone()
        words, contexts = torch.arange(32), (torch.arange(32) + 1) % 32
        torch.nn.functional.cross_entropy(net(words), contexts).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 1.0 * p.grad
        return (net.embeddings() - before).pow(2).mean().sqrt().item()
    ratio = change(4096) / change(64)
    assert math.log(ratio) / math.log(64) == pytest.approx(exponent, abs=0.1)


def test_knn_accuracy_is_one_on_separated_topics_and_near_chance_on_random_vectors():
    labels = torch.arange(120) % 4
    centres = torch.eye(4) * 10
    clustered = centres[labels] + torch.randn(120, 4, generator=torch.Generator().manual_seed(0))
    assert knn_accuracy(clustered, labels, k=5) == 1.0
    noise = torch.randn(120, 512, generator=torch.Generator().manual_seed(1))
    assert knn_accuracy(noise, labels, k=5) < 0.45  # chance is 0.25


def test_knn_accuracy_rejects_a_k_as_large_as_the_vocabulary():
    with pytest.raises(ValueError, match="k == 10"):
        knn_accuracy(torch.randn(10, 3), torch.arange(10) % 2, k=10)
