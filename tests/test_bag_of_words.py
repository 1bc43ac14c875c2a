import pytest
import torch

from repro.optimization import bag_of_words as bow


def test_documents_are_sparse_zipfian_and_labelled():
    # the distinct words of each document, and labels that follow the planted polarities
    data = bow.bag_of_words(600, vocab=500, doc_length=40, seed=0)
    x = data.dense()
    assert x.shape == (600, 500) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x.sum(1), data.present.sum(1))          # distinct words, padding excluded
    frequency = x.mean(0).numpy()
    assert frequency[:10].mean() > 10 * frequency[-100:].mean()  # frequent words first
    assert x.mean() < 0.1                                        # sparse
    assert 0.3 < data.labels.float().mean() < 0.7
    assert (data.present.sum(1) <= 40).all() and (data.present.sum(1) > 10).all()
    rows = [set(r[r < 500].tolist()) for r in data.words]
    assert all(len(r) == n for r, n in zip(rows, data.present.sum(1).int().tolist()))   # no repeats
    again = bow.bag_of_words(600, vocab=500, doc_length=40, seed=0)
    assert torch.equal(again.words, data.words) and torch.equal(again.labels, data.labels)


def test_logistic_bag_is_logistic_regression_on_the_dense_features():
    data = bow.bag_of_words(50, vocab=30, doc_length=10, seed=1)
    model = bow.LogisticBag(30, outputs=2, dropout=0.5).eval()
    dense = data.dense() @ model.weight[:30] + model.bias
    torch.testing.assert_close(model(data.words), dense)
    model.train()
    torch.manual_seed(0)
    noisy = model(data.words)
    assert not torch.allclose(noisy, dense)


def test_padding_gets_no_gradient():
    data = bow.bag_of_words(20, vocab=30, doc_length=10, seed=2)
    model = bow.LogisticBag(30)
    logits = model(data.words)[:, 0]
    torch.nn.functional.binary_cross_entropy_with_logits(logits, data.labels.float()).backward()
    assert torch.all(model.weight.grad[30] == 0)


@pytest.mark.parametrize("kw", [dict(n_docs=0), dict(zipf=-1.0), dict(temperature=0.0)])
def test_invalid_arguments(kw):
    args = dict(n_docs=10, vocab=20) | kw
    with pytest.raises(ValueError):
        bow.bag_of_words(**args)
