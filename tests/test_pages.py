import csv
import io
import json

import nbformat

from conftest import ROOT
from repro.harness import catalog, collection, contract, pages


def test_catalog_page_lists_every_paper_by_theme():
    papers = catalog.papers()
    page = pages.catalog_page(papers)
    rows = [line for line in page.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(papers)
    assert "## Normalizing flows" in page
    assert "{doc}`notebook </notebooks/normalization/weight-normalization>`" in page


def an_entry(**kw):
    paper = catalog.find(108)
    claims = [
        {"statement": "a | b", "kind": "paper", "source": "Sec. 2", "paper": "0.12",
         "measured": 0.123456, "target": "< 1", "status": "holds"},
        {"statement": "an identity", "kind": "sanity", "source": "Eq. 4", "paper": None,
         "measured": 0.0, "target": "< 1e-10", "status": "holds"},
        {"statement": "a guess", "kind": "theory", "source": "Sec. 3", "paper": None,
         "measured": 2.0, "target": "< 1", "status": "not reproduced"}]
    sweep = {"seeds": [0, 1, 2, 3, 4], "claims": [
        {"statement": "a | b", "kind": "paper", "expected": True, "verdicts": {},
         "held": [0, 1, 2, 4]},
        {"statement": "an identity", "kind": "sanity", "expected": True, "verdicts": {},
         "held": [0, 1, 2, 3, 4]},
        {"statement": "a guess", "kind": "theory", "expected": False, "verdicts": {}, "held": []}]}
    stamp = {"smoke_seconds": 12.34, "peak_memory_mb": 480.2, "device": "cpu (x86_64, 2 cores)",
             "executed_at": "2026-11-30T17:00:00Z", "preset": "smoke", "seed": 0}
    return collection.Entry(**{"paper": paper, "claims": claims, "sweep": sweep, "stamp": stamp,
                               **kw})


def test_findings_count_paper_and_theory_claims_that_held_on_every_seed():
    entry = an_entry()
    assert entry.findings == (0, 2, 5)
    assert entry.findings_text() == "0 of 2 findings hold on 5 seeds"
    entry.sweep["claims"][0]["held"].append(3)
    assert entry.findings == (1, 2, 5)
    assert an_entry(sweep=None).findings_text() == "1 of 2 findings hold on seed 0"


def test_scorecard_rows_and_files_carry_every_claim_with_its_seeds():
    rows = pages.scorecard_rows([an_entry()])
    assert [r["kind"] for r in rows] == ["paper", "theory", "sanity"]
    assert rows[0]["measured"] == "0.123456"
    assert (rows[0]["seeds_held"], rows[0]["seeds_run"]) == (4, 5)
    files = pages.scorecard_files([an_entry()])
    table = list(csv.reader(io.StringIO(files["scorecard.csv"].decode())))
    assert table[0] == pages.SCORECARD_COLUMNS and len(table) == 4 and table[1][5] == "a | b"
    assert len(json.loads(files["scorecard.json"])) == 3


def test_the_explorer_page_embeds_the_rows_and_its_filters():
    page = pages.scorecard_page([an_entry()])
    rows = json.loads(page.split('type="application/json">')[1].split("</script>")[0])
    assert len(rows) == 3 and rows[0]["url"].endswith(".html")
    for name in ("theme", "kind", "result"):
        assert f'id="filter-{name}"' in page
    assert "1 holds, 1 not reproduced" in page and "tabulator.min.js" in page


def test_the_gallery_has_the_counts_and_a_card_per_reproduction():
    papers = catalog.papers()
    entry = an_entry(key_figure=b"png")
    page = pages.gallery_page(papers, [entry])
    for status in catalog.STATUSES:
        assert f"**{sum(p.status == status for p in papers)}**<br>{status}" in page
    assert page.count("{grid-item-card} " + entry.paper.title) == 1
    assert f"thumbnails/{entry.paper.slug}.png" in page
    assert "0 of 2 findings hold on 5 seeds" in page and "smoke 12.3 s" in page
    assert "thumbnails/" not in pages.gallery_page(papers, [an_entry()])  # no figure, no image


def test_the_summary_box_and_the_results_file():
    entry = an_entry()
    box = pages.summary_box(entry, depth=2)
    for text in (entry.paper.status, "0 of 2 findings hold on 5 seeds", "smoke run 12.3 s",
                 "cpu (x86_64, 2 cores)", "480 MB", "executed 2026-11-30",
                 "colab.research.google.com", f'href="{entry.paper.slug}.ipynb"',
                 f'href="../../results/{entry.paper.slug}.json"'):
        assert text in box, text
    assert "(stale)" in pages.summary_box(an_entry(stale=["its code cells changed"]), depth=2)
    record = json.loads(pages.results_json(entry))
    assert record["findings"] == {"held_on_every_seed": 0, "counted": 2, "seeds": 5}
    assert record["outputs"]["fresh"] and len(record["claims"]) == 3


def test_the_statistics_page_has_a_row_per_reproduction():
    page = pages.statistics_page([an_entry(), an_entry(stale=["lib/repro/core/stats.py changed"])])
    rows = [line for line in page.splitlines() if line.startswith("| {doc}")]
    assert len(rows) == 2 and "12.3 s" in rows[0] and "480 MB" in rows[0] and "fresh" in rows[0]
    assert "stale: lib/repro/core/stats.py changed" in rows[1]
    assert "median 12.3 s" in page
    stopped = {"exit_code": 3, "error": "DeadKernelError: Kernel died\nmore", "provenance": {},
               "timing": {"wall_time_s": 1962.5, "kernel_cpu_s": 1805}}
    page = pages.statistics_page([an_entry(full_run=stopped)])
    assert "stopped (DeadKernelError), 1962.5 s (1805 s CPU)" in page


def test_the_committed_full_runs_reach_the_statistics_page():
    page = pages.statistics_page(collection.entries(ROOT))
    assert "every claim expected to hold held, " in page  # DeepONet's and others' full runs


def test_thumbnails_are_scaled_to_the_gallery_width(tmp_path):
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 600), "white").save(buffer, format="PNG")
    pages.write_thumbnails([an_entry(key_figure=buffer.getvalue()), an_entry()], tmp_path)
    (thumbnail,) = tmp_path.iterdir()
    assert Image.open(thumbnail).size == (pages.THUMBNAIL_WIDTH, pages.THUMBNAIL_WIDTH // 2)


def test_the_scorecard_reads_the_committed_claims():
    rows = pages.scorecard_rows(collection.entries(ROOT))
    for paper in catalog.with_notebooks():
        stored = contract.stored_claims(nbformat.read(paper.notebook_path, as_version=4)) or []
        assert len([r for r in rows if r["paper"] == paper.slug]) == len(stored)


def test_generated_pages_are_written_only_when_they_change(tmp_path):
    path = tmp_path / "page.md"
    assert pages.write_if_changed(path, "a") and not pages.write_if_changed(path, "a")
    assert pages.write_if_changed(path, "b") and path.read_text() == "b"
