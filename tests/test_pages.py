import nbformat

from conftest import ROOT
from repro.harness import catalog, contract, pages


def test_catalog_page_lists_every_paper_by_theme():
    papers = catalog.papers()
    page = pages.catalog_page(papers)
    rows = [line for line in page.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(papers)
    assert "## Normalizing flows" in page
    assert "{doc}`notebook </notebooks/normalization/weight-normalization>`" in page


def test_scorecard_rows_by_kind_with_seeds_and_sanity_apart():
    paper = catalog.find(108)
    claims = {paper: [
        {"statement": "a | b", "kind": "paper", "source": "Sec. 2", "paper": "0.12", "measured": 0.123456,
         "target": "< 1", "status": "holds"},
        {"statement": "an identity", "kind": "sanity", "source": "Eq. 4", "paper": None, "measured": 0.0,
         "target": "< 1e-10", "status": "holds"},
        {"statement": "a guess", "kind": "theory", "source": "Sec. 3", "paper": None, "measured": 2.0,
         "target": "< 1", "status": "not reproduced"}]}
    page = pages.scorecard_page(claims, {paper: {"a | b": (4, 5)}})
    counted, sanity = page.split("## Sanity checks of our implementation")
    assert "a \\| b" in counted and "| paper |" in counted and "0.123456" in counted and "| 4 of 5 |" in counted
    assert "1 holds, 1 not reproduced (1 papers)" in counted
    assert "an identity" in sanity and "an identity" not in counted and "1 holds (1 papers)" in sanity


def test_the_scorecard_reads_the_committed_claims():
    page = pages.pages(ROOT)["book/scorecard.md"]
    for paper in catalog.with_notebooks():
        stored = contract.stored_claims(nbformat.read(paper.notebook_path, as_version=4))
        assert all(c["statement"].replace("|", "\\|") in page for c in stored)


def test_generated_pages_are_written_only_when_they_change(tmp_path):
    path = tmp_path / "page.md"
    assert pages.write_if_changed(path, "a") and not pages.write_if_changed(path, "a")
    assert pages.write_if_changed(path, "b") and path.read_text() == "b"
