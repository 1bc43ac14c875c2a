import json

import pytest

from conftest import ROOT
from repro.harness import catalog

SHARED = ROOT.parent / "shared" / "papers" / "catalog.jsonl"


def test_every_paper_is_there_once():
    papers = catalog.papers()
    assert len({p.id for p in papers}) == len(papers) and len({p.slug for p in papers}) == len(papers)
    assert all(p.status in catalog.STATUSES and p.theme in catalog.THEMES for p in papers)
    assert all(p.reason for p in papers if p.status == "out of scope")


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ is not beside the checkout")
def test_ids_match_the_shared_catalog():
    shared = {json.loads(line)["id"] for line in SHARED.read_text().splitlines()}
    assert shared == {p.id for p in catalog.papers()}


def test_find_by_id_and_slug():
    assert catalog.find(108).slug == "weight-normalization"
    assert catalog.find("108").id == 108
    assert catalog.find("weight-normalization").id == 108


def test_unknown_paper_suggests_close_matches():
    with pytest.raises(catalog.UnknownPaper, match="did you mean: weight-normalization"):
        catalog.find("weight-normalisation")
    with pytest.raises(catalog.UnknownPaper, match="repro list"):
        catalog.find("zzzzzzzzzzzz")


def test_papers_with_notebooks_point_at_files():
    with_nb = catalog.with_notebooks()
    assert {p.id for p in with_nb} >= {14, 46, 108}
    assert all(p.notebook_path.exists() for p in with_nb)
