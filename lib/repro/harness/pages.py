"""The book's pages made from data, as a Sphinx extension that `_config.yml` names, so that
`jupyter-book build .` at the root builds the whole site:

- `book/catalog.md` from `data/papers.yaml`, and `book/scorecard.md` from the claims stored in the
  committed notebooks, written before Sphinx reads the sources, and only when their text changes
  (an unchanged book then re-renders nothing);
- MathJax served from the site itself (the npm package in node_modules), so math renders offline.
"""
from __future__ import annotations

import collections
import shutil
from pathlib import Path

from ..core.claims import KINDS, SWEEPS, fmt, sweep_seeds
from . import catalog, contract

GENERATED = ("book/catalog.md", "book/scorecard.md")
MATHJAX = Path("node_modules/mathjax/es5")  # in the checkout; `npm ci` puts it there
MATHJAX_URL = "mathjax/tex-chtml.js"         # where the site serves it, from the site's root


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def doc_link(paper, text=None) -> str:
    return f"{{doc}}`{md_escape(text or paper.title)} </{paper.notebook.removesuffix('.ipynb')}>`"


def catalog_page(papers) -> str:
    counts = collections.Counter(p.status for p in papers)
    lines = ["# The catalog", "",
             f"All {len(papers)} papers of the collection, grouped by theme. "
             + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ". "
             "A paper's *tier* is our first reading of what can be shown on a CPU: A the key result "
             "at smoke scale, B a weaker form on CPU and the real effect on a GPU, C a theory paper "
             "checked numerically, D out of scope here (the reason is given).", ""]
    by_theme = collections.defaultdict(list)
    for p in papers:
        by_theme[p.theme].append(p)
    for theme, title in catalog.THEMES.items():
        rows = by_theme.get(theme)
        if not rows:
            continue
        lines += [f"## {title}", "", "| id | paper | tier | status | notebook or reason |",
                  "| --- | --- | --- | --- | --- |"]
        for p in rows:
            where = doc_link(p, "notebook") if p.notebook else md_escape(p.reason or "")
            lines.append(f"| {p.id} | [{md_escape(p.title)}]({p.link}) | {p.tier} | {p.status} | {where} |")
        lines.append("")
    return "\n".join(lines)


def scorecard_page(claims_by_paper: dict, seeds_by_paper: dict | None = None) -> str:
    """One row per claim of every notebook, grouped by kind with the sanity checks apart: the
    paper's value, ours, the verdict, and the seeds it held on in the recorded sweep."""
    seeds_by_paper = seeds_by_paper or {}
    lines = ["# Scorecard", "",
             "Every claim of every reproduction, as its committed notebook stores it (the smoke "
             "preset, seed 0, on a CPU). *Paper* is the paper's own value as printed; *ours* is what "
             "the notebook measured; *seeds* says on how many seeds of its recorded sweep the claim "
             "held. A notebook's status counts its `paper` and `theory` claims; the sanity checks of "
             "our own code are listed apart and count for nothing.", ""]
    sections = {"counted": [], "sanity": []}
    totals = {"counted": collections.Counter(), "sanity": collections.Counter()}
    for paper, claims in claims_by_paper.items():
        seeds = seeds_by_paper.get(paper, {})
        for kind in KINDS:
            for c in (c for c in claims or [] if c.get("kind") == kind):
                section = "sanity" if kind == "sanity" else "counted"
                totals[section][c["status"]] += 1
                held = seeds.get(c["statement"])
                sections[section].append(
                    f"| {doc_link(paper, paper.slug)} | {kind} | {md_escape(c['statement'])} | "
                    f"{md_escape(c['source'])} | {md_escape(fmt(c['paper']))} | {md_escape(fmt(c['measured']))} | "
                    f"{md_escape(c['target'])} | {c['status']} | {f'{held[0]} of {held[1]}' if held else ''} |")
    header = ["| paper | kind | claim | source | paper's value | ours | target | result | seeds |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for section, title in (("counted", "Paper and theory claims, and our own findings"),
                           ("sanity", "Sanity checks of our implementation")):
        counts = ", ".join(f"{n} {s}" for s, n in sorted(totals[section].items()))
        lines += [f"## {title}", "", f"{counts} ({len(claims_by_paper)} papers).", "",
                  *header, *sections[section], ""]
    return "\n".join(lines)


def pages(root: Path) -> dict:
    """{relative path: text} of the generated pages, for the checkout at `root`."""
    papers = catalog.papers(root / catalog.CATALOG)
    with_notebooks = [p for p in papers if p.notebook]
    claims = {p: contract.stored_claims(contract.read(root / p.notebook)) for p in with_notebooks}
    seeds = {p: sweep_seeds(root / SWEEPS / f"{p.slug}.json") for p in with_notebooks}
    return {"book/catalog.md": catalog_page(papers), "book/scorecard.md": scorecard_page(claims, seeds)}


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it already holds it (Sphinx rebuilds a page whose file changed)."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def _generate(app) -> None:
    root = Path(app.srcdir)
    for name, text in pages(root).items():
        write_if_changed(root / name, text)


def _serve_mathjax(app, exception) -> None:
    source = Path(app.srcdir) / MATHJAX
    target = Path(app.outdir) / "mathjax"
    if exception is None and app.builder.format == "html" and source.exists() \
            and not (target / "tex-chtml.js").exists():
        shutil.copytree(source, target, dirs_exist_ok=True)


def _use_local_mathjax(app, config) -> None:
    # pages sit at different depths; mathjax_path is relative to _static/ (one level down the root)
    if (Path(app.srcdir) / MATHJAX).exists():
        config.mathjax_path = f"../{MATHJAX_URL}"


def setup(app):
    app.connect("config-inited", _use_local_mathjax)
    app.connect("builder-inited", _generate)
    app.connect("build-finished", _serve_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
