"""The book's pages made from data, as a Sphinx extension that `_config.yml` names, so that
`jupyter-book build .` at the root builds the whole site:

- written before Sphinx reads the sources, and only when their text changes (an unchanged book
  then re-renders nothing): `book/catalog.md` from `data/papers.yaml`; `book/gallery.md`, the
  landing page's cards (with a thumbnail of each notebook's key figure in `book/thumbnails/`);
  `book/scorecard.md`, the results explorer; `book/statistics.md`, the execution statistics;
- a summary box at the top of every paper page (status, findings held over seeds, smoke time,
  device, date, links), added to the page as it is read;
- files served beside the pages: each notebook (`<slug>.ipynb` beside its page), its results
  (`results/<slug>.json`), the whole scorecard (`scorecard.csv`, `scorecard.json`), and MathJax and
  Tabulator from the npm packages in node_modules, so that math and the explorer work offline.
"""
from __future__ import annotations

import collections
import html
import io
import json
import shutil
import statistics
from pathlib import Path

import pandas as pd

from ..core.claims import KINDS, fmt
from . import catalog, collection, contract

GENERATED = ("book/catalog.md", "book/gallery.md", "book/scorecard.md", "book/statistics.md")
THUMBNAILS = Path("book/thumbnails")   # generated with the pages; the gallery's images
THUMBNAIL_WIDTH = 480                  # pixels: a card is at most ~400 px wide at 1280 px
ASSETS = {                             # node_modules folder -> where the site serves it
    Path("node_modules/mathjax/es5"): "mathjax",
    Path("node_modules/tabulator-tables/dist"): "_static/tabulator",
}
MATHJAX_URL = "mathjax/tex-chtml.js"   # from the site's root
SCORECARD_COLUMNS = ["paper", "title", "theme", "status", "kind", "statement", "source",
                     "paper_value", "measured", "target", "result", "seeds_held", "seeds_run"]
BADGES = {"reproduced": "success", "partly reproduced": "warning", "not reproduced": "danger",
          "planned": "muted", "out of scope": "light"}  # sphinx-design's badge colours


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def doc_link(paper, text=None) -> str:
    return f"{{doc}}`{md_escape(text or paper.title)} </{docname(paper)}>`"


def docname(paper) -> str:
    return paper.notebook.removesuffix(".ipynb")


def seconds(value) -> str:
    return "" if value is None else f"{value:.1f} s"


# --- the catalog --------------------------------------------------------------------------------
def catalog_page(papers) -> str:
    counts = collections.Counter(p.status for p in papers)
    lines = ["# The catalog", "",
             f"All {len(papers)} papers of the collection, grouped by theme. "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ". "
             "A paper's *tier* is our first reading of what can be shown on a CPU: A the key result "
             "at smoke scale, B a weaker form on CPU and the real effect on a GPU, C a theory paper "
             "checked numerically, D out of scope here (the reason is given).", ""]
    for theme, title, rows in by_theme(papers):
        lines += [f"## {title}", "", "| id | paper | tier | status | notebook or reason |",
                  "| --- | --- | --- | --- | --- |"]
        for p in rows:
            where = doc_link(p, "notebook") if p.notebook else md_escape(p.reason or "")
            lines.append(f"| {p.id} | [{md_escape(p.title)}]({p.link}) | {p.tier} | {p.status} "
                         f"| {where} |")
        lines.append("")
    return "\n".join(lines)


def by_theme(items, paper=lambda item: item):
    """(theme, its title, its items) for every theme that has items, in the catalog's order."""
    groups = collections.defaultdict(list)
    for item in items:
        groups[paper(item).theme].append(item)
    return [(theme, title, groups[theme]) for theme, title in catalog.THEMES.items() if theme in groups]


# --- the gallery (the landing page's cards) -------------------------------------------------------
def gallery_page(papers, entries) -> str:
    """The landing page's gallery: the collection's counts, then one card per reproduction by
    theme, with its key figure, status, findings held over seeds and smoke time."""
    counts = collections.Counter(p.status for p in papers)
    lines = ["::::{grid} 2 3 5 5", ":gutter: 2", ":class-container: repro-counts", ""]
    for status in catalog.STATUSES:
        lines += [":::{grid-item-card}", f":class-card: repro-count status-{BADGES[status]}", "",
                  f"**{counts[status]}**<br>{status}", ":::", ""]
    lines += ["::::", ""]
    for theme, title, rows in by_theme(entries, paper=lambda e: e.paper):
        # a rubric, not a heading: an included file's headings would have to start at H1
        lines += [f"```{{rubric}} {title}", "```", "", "::::{grid} 1 2 3 3", ":gutter: 3", ""]
        for e in rows:
            image = [f":img-top: thumbnails/{e.paper.slug}.png",
                     f":img-alt: key figure of {e.paper.slug}"] if e.key_figure else []
            lines += [f":::{{grid-item-card}} {e.paper.title}", *image,
                      f":link: /{docname(e.paper)}", ":link-type: doc",
                      ":class-card: repro-card", "",
                      f"{{bdg-{BADGES[e.paper.status]}}}`{e.paper.status}` {e.findings_text()}"
                      + (f" · smoke {seconds(e.stamp.get('smoke_seconds'))}"
                         if e.stamp.get("smoke_seconds") else ""),
                      ":::", ""]
        lines += ["::::", ""]
    return "\n".join(lines)


def write_thumbnails(entries, folder: Path) -> None:
    """Each key figure, scaled to THUMBNAIL_WIDTH, as folder/<slug>.png (rewritten on change)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for e in entries:
        if e.key_figure is None:
            continue
        image = Image.open(io.BytesIO(e.key_figure))
        if image.width > THUMBNAIL_WIDTH:
            size = (THUMBNAIL_WIDTH, round(image.height * THUMBNAIL_WIDTH / image.width))
            image = image.resize(size, Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        write_if_changed(folder / f"{e.paper.slug}.png", buffer.getvalue())


# --- the results explorer --------------------------------------------------------------------------
def scorecard_rows(entries) -> list[dict]:
    """One row per claim of every reproduction: what the explorer shows and the downloads hold."""
    rows = []
    for e in entries:
        held = {c["statement"]: len(c["held"]) for c in (e.sweep or {}).get("claims", [])}
        for kind in KINDS:
            for c in (c for c in e.claims if c.get("kind") == kind):
                rows.append({
                    "paper": e.paper.slug, "title": e.paper.title,
                    "theme": catalog.THEMES[e.paper.theme], "status": e.paper.status,
                    "kind": kind, "statement": c["statement"], "source": c["source"],
                    "paper_value": fmt(c["paper"]), "measured": fmt(c["measured"]),
                    "target": c["target"], "result": c["status"],
                    "seeds_held": held.get(c["statement"]) if e.sweep else None,
                    "seeds_run": e.seeds or None})
    return rows


def scorecard_page(entries) -> str:
    rows = scorecard_rows(entries)
    counted = [r for r in rows if r["kind"] != "sanity"]
    results = collections.Counter(r["result"] for r in counted)
    urls = {e.paper.slug: f"../{docname(e.paper)}.html" for e in entries}
    data = json.dumps([{**r, "url": urls[r["paper"]]} for r in rows]).replace("</", "<\\/")
    options = {name: sorted({r[name] for r in rows}, key=str) for name in ("theme", "kind", "result")}
    selects = "\n".join(
        f'<label>{label} <select id="filter-{name}"><option value="">all</option>'
        + "".join(f'<option>{html.escape(v)}</option>' for v in options[name]) + "</select></label>"
        for name, label in (("theme", "Theme"), ("kind", "Kind"), ("result", "Result")))
    return "\n".join([
        "# Results explorer", "",
        "Every claim of every reproduction, as its committed notebook stores it (the smoke preset, "
        "seed 0, on a CPU), one section per paper. *Paper* is the paper's own value as printed; "
        "*ours* is what the notebook measured; *seeds* says on how many seeds of its recorded sweep "
        "the claim held. A notebook's status counts its `paper` and `theory` claims; `ours` are "
        "findings beyond the paper, and `sanity` checks of our own code count for nothing.", "",
        f"{len(entries)} reproductions, {len(rows)} claims; of the {len(counted)} that are not "
        "sanity checks: " + ", ".join(f"{n} {s}" for s, n in sorted(results.items())) + ".", "",
        "```{raw} html",
        '<p class="repro-downloads">The whole scorecard: <a href="../scorecard.csv" download>CSV</a>'
        ' · <a href="../scorecard.json" download>JSON</a></p>',
        f'<div class="repro-filters">\n{selects}\n<span id="explorer-count"></span></div>',
        '<div id="repro-explorer"></div>',
        '<noscript>The explorer needs JavaScript; the CSV and JSON above hold the same rows.'
        '</noscript>',
        f'<script id="repro-scorecard" type="application/json">{data}</script>',
        '<link rel="stylesheet" href="../_static/tabulator/css/tabulator_simple.min.css">',
        '<script src="../_static/tabulator/js/tabulator.min.js"></script>',
        '<script src="../_static/explorer.js"></script>',
        "```", ""])


def scorecard_files(entries) -> dict[str, bytes]:
    """The scorecard as CSV and as JSON: {file name: contents}."""
    rows = scorecard_rows(entries)
    table = pd.DataFrame(rows, columns=SCORECARD_COLUMNS)
    return {"scorecard.csv": table.to_csv(index=False).encode(),
            "scorecard.json": (json.dumps(rows, indent=1) + "\n").encode()}


# --- execution statistics ----------------------------------------------------------------------------
def statistics_page(entries) -> str:
    times = [e.stamp["smoke_seconds"] for e in entries if e.stamp.get("smoke_seconds")]
    lines = ["# Execution statistics", "",
             "How long each notebook's `smoke` run took when its stored outputs were made, the peak "
             "memory of its kernel, the device, and when; *fresh* says whether the outputs still "
             "follow from the notebook, the library modules it imports and the numeric packages "
             "(`repro check`), *stale* names what changed. A `full` run appears where one was "
             "recorded (`repro run PAPER --preset full --record`, kept in `data/full/`).", ""]
    if times:
        lines += [f"{len(times)} notebooks; smoke time median {statistics.median(times):.1f} s, "
                  f"longest {max(times):.1f} s, all together {sum(times) / 60:.1f} minutes.", ""]
    lines += ["| paper | smoke | peak memory | device | executed | outputs | full run |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        memory = e.stamp.get("peak_memory_mb")
        lines.append(" | ".join([
            f"| {doc_link(e.paper, e.paper.slug)}", seconds(e.stamp.get("smoke_seconds")),
            f"{memory:.0f} MB" if memory else "", md_escape(e.stamp.get("device") or ""),
            str(e.stamp.get("executed_at", ""))[:10],
            "fresh" if not e.stale else md_escape("stale: " + "; ".join(e.stale)),
            md_escape(full_run_text(e.full_run)) + " |"]))
    return "\n".join(lines) + "\n"


def full_run_text(run: dict | None) -> str:
    """A recorded full run in a few words: how it ended, how long it took, where and when."""
    if not run:
        return ""
    timing = run["timing"]
    error = str(run.get("error") or "an error").split(":")[0]  # the exception's name
    ended = {0: "every claim expected to hold held", 1: "a claim failed"}.get(
        run.get("exit_code"), f"stopped ({error})")
    cpu = timing.get("kernel_cpu_s")
    when = str(timing.get("notebook", {}).get("finished_at") or "")[:10]
    return ", ".join(part for part in (
        ended, seconds(timing.get("wall_time_s")) + (f" ({cpu} s CPU)" if cpu else ""),
        run.get("provenance", {}).get("device") or "", when) if part)


# --- the summary box of a paper page ---------------------------------------------------------------
def summary_box(e, depth: int) -> str:
    """The box at the top of a paper page, as HTML; `depth` is how many folders down the page is."""
    root = "../" * depth
    stamp = e.stamp
    facts = [f'<span class="repro-badge status-{BADGES[e.paper.status]}">'
             f"{html.escape(e.paper.status)}</span>",
             f'<span class="repro-findings">{html.escape(e.findings_text())}</span>']
    if stamp.get("smoke_seconds"):
        memory = (f", {stamp['peak_memory_mb']:.0f} MB" if stamp.get("peak_memory_mb") else "")
        facts.append(f"<span>smoke run {seconds(stamp['smoke_seconds'])}"
                     f"{html.escape(' on ' + stamp['device']) if stamp.get('device') else ''}"
                     f"{memory}</span>")
    if stamp.get("executed_at"):
        facts.append(f"<span>executed {html.escape(stamp['executed_at'][:10])}"
                     f"{'' if not e.stale else ' (stale)'}</span>")
    links = [f'<a href="{contract.colab_url(e.paper.notebook)}">Open in Colab</a>',
             f'<a href="{e.paper.slug}.ipynb" download>notebook</a>',
             f'<a href="{root}results/{e.paper.slug}.json">results JSON</a>']
    return ('<div class="repro-summary">' + " ".join(facts)
            + '<span class="repro-links">' + " · ".join(links) + "</span></div>")


def results_json(e) -> bytes:
    """What results/<slug>.json holds: the paper, its stored claims, the sweep's per-claim seeds,
    and how its outputs were made."""
    return (json.dumps({
        "paper": {"id": e.paper.id, "slug": e.paper.slug, "title": e.paper.title,
                  "theme": e.paper.theme, "status": e.paper.status, "link": e.paper.link},
        "findings": dict(zip(("held_on_every_seed", "counted", "seeds"), e.findings)),
        "claims": e.claims,
        "sweep": None if not e.sweep else {
            "seeds": e.sweep["seeds"],
            "claims": [{k: c[k] for k in ("statement", "kind", "expected", "verdicts", "held")}
                       for c in e.sweep["claims"]]},
        "outputs": {k: e.stamp.get(k) for k in ("preset", "seed", "smoke_seconds",
                                                "peak_memory_mb", "device", "executed_at")}
        | {"fresh": not e.stale, "stale_because": e.stale},
        "full_run": e.full_run}, indent=1, default=str) + "\n").encode()


# --- Sphinx ---------------------------------------------------------------------------------------
def pages(root: Path, entries=None) -> dict:
    """{relative path: text} of the generated pages, for the checkout at `root`."""
    papers = catalog.papers(root / catalog.CATALOG)
    entries = collection.entries(root) if entries is None else entries
    return {"book/catalog.md": catalog_page(papers), "book/gallery.md": gallery_page(papers, entries),
            "book/scorecard.md": scorecard_page(entries),
            "book/statistics.md": statistics_page(entries)}


def write_if_changed(path: Path, content: str | bytes) -> bool:
    """Write `content` to `path` unless it already holds it (Sphinx rebuilds a page whose file
    changed)."""
    data = content.encode() if isinstance(content, str) else content
    if path.exists() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True


def _generate(app) -> None:
    root = Path(app.srcdir)
    app.repro_entries = {docname(e.paper): e for e in collection.entries(root)}
    entries = list(app.repro_entries.values())
    for name, text in pages(root, entries).items():
        write_if_changed(root / name, text)
    write_thumbnails(entries, root / THUMBNAILS)


def _notebook_pages(app, env, added, changed, removed):
    # the summary box reads data/ and the stamps, which can change while a notebook does not
    return [name for name in app.repro_entries if name not in added | changed]


def _add_summary_box(app, doctree) -> None:
    from docutils import nodes

    e = app.repro_entries.get(app.env.docname)
    section = doctree.next_node(nodes.section)
    if e is None or section is None:
        return
    title = section.next_node(nodes.title)
    box = nodes.raw("", summary_box(e, app.env.docname.count("/")), format="html")
    section.insert(section.index(title) + 1, box)


def _write_files(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    root, out = Path(app.srcdir), Path(app.outdir)
    entries = list(app.repro_entries.values())
    (out / "results").mkdir(exist_ok=True)
    for e in entries:
        write_if_changed(out / "results" / f"{e.paper.slug}.json", results_json(e))
        shutil.copyfile(root / e.paper.notebook, out / e.paper.notebook)
    for name, data in scorecard_files(entries).items():
        write_if_changed(out / name, data)
    for source, target in ASSETS.items():
        if (root / source).exists() and not (out / target).exists():
            shutil.copytree(root / source, out / target)


def _use_local_mathjax(app, config) -> None:
    # pages sit at different depths; mathjax_path is relative to _static/ (one level down the root)
    if (Path(app.srcdir) / "node_modules/mathjax").exists():
        config.mathjax_path = f"../{MATHJAX_URL}"


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    app.connect("builder-inited", _generate)
    app.connect("env-get-outdated", _notebook_pages)
    app.connect("doctree-read", _add_summary_box)
    app.connect("build-finished", _write_files)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
