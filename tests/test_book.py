from repro import book, catalog


def test_catalog_page_lists_every_paper_by_theme():
    page = book.catalog_page(catalog.papers())
    rows = [line for line in page.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 298
    assert "## Normalizing flows" in page and "{doc}`notebook </notebooks/normalization/weight-normalization>`" in page


def test_scorecard_rows():
    paper = catalog.find(108)
    results = {paper: {"claims": [{"statement": "a | b", "source": "Sec. 2", "paper": None,
                                   "measured": 0.123456, "target": "< 1", "status": "holds"}]}}
    page = book.scorecard_page(results)
    assert "a \\| b" in page and "0.1235" in page and "1 holds (1 papers)" in page
