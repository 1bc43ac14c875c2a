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


def test_scorecard_rows():
    paper = catalog.find(108)
    claims = {paper: [{"statement": "a | b", "source": "Sec. 2", "paper": None, "measured": 0.123456,
                       "target": "< 1", "status": "holds"}]}
    page = pages.scorecard_page(claims)
    assert "a \\| b" in page and "0.1235" in page and "1 holds (1 papers)" in page


def test_the_scorecard_reads_the_committed_claims():
    page = pages.pages(ROOT)["book/scorecard.md"]
    for paper in catalog.with_notebooks():
        stored = contract.stored_claims(nbformat.read(paper.notebook_path, as_version=4))
        assert all(c["statement"].replace("|", "\\|") in page for c in stored)


def test_generated_pages_are_written_only_when_they_change(tmp_path):
    path = tmp_path / "page.md"
    assert pages.write_if_changed(path, "a") and not pages.write_if_changed(path, "a")
    assert pages.write_if_changed(path, "b") and path.read_text() == "b"
