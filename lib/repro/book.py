"""`repro book`: execute the changed notebooks at smoke, then build the website from a staged copy.

The stage (`_build/src`) is the repository's book sources with each notebook replaced by its
fresh smoke execution, plus the pages generated from data: the catalog and the scorecard.
"""
from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import catalog, execute, notebook
from .catalog import ROOT
from .claims import fmt

STAGE = ROOT / "_build" / "src"
SITE = ROOT / "_build" / "site"
MATHJAX = ROOT / "node_modules" / "mathjax" / "es5"
GENERATED = ("book/catalog.md", "book/scorecard.md")


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


def scorecard_page(results: dict) -> str:
    """One row per claim of every executed notebook: the paper's value, ours, and the verdict."""
    lines = ["# Scorecard", "",
             "Every claim of every reproduction, as measured by the smoke run (seed 0, CPU) that "
             "built this site. *Paper* is the paper's own number where it gives one; *ours* is what "
             "the notebook measured; the claims and their sources are explained on each paper's page.", ""]
    total = collections.Counter()
    rows = []
    for paper, res in results.items():
        for c in res.get("claims", []):
            total[c["status"]] += 1
            rows.append(f"| {doc_link(paper, paper.slug)} | {md_escape(c['statement'])} | "
                        f"{md_escape(c['source'])} | {md_escape(fmt(c['paper']))} | "
                        f"{md_escape(fmt(c['measured']))} | {md_escape(c['target'])} | {c['status']} |")
    lines += [", ".join(f"{n} {s}" for s, n in sorted(total.items())) + f" ({len(results)} papers).", "",
              "| paper | claim | source | paper's value | ours | target | result |",
              "| --- | --- | --- | --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


def stage(papers, results: dict, stage_dir: Path = STAGE) -> Path:
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, stage_dir / name)
    shutil.copytree(ROOT / "book", stage_dir / "book")
    for paper in papers:
        target = stage_dir / paper.notebook
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(execute.CACHE / f"{paper.slug}.ipynb", target)
    (stage_dir / "book" / "catalog.md").write_text(catalog_page(catalog.papers()))
    (stage_dir / "book" / "scorecard.md").write_text(scorecard_page(results))
    if MATHJAX.exists():  # served from the site itself, so math renders offline
        shutil.copytree(MATHJAX, stage_dir / "_extra" / "mathjax")
    else:
        raise FileNotFoundError(f"{MATHJAX} is missing: run `npm ci` (the Makefile does)")
    return stage_dir


def build(*, workers=None, force=False, echo=print) -> int:
    """Execute what changed, stage, run `jupyter-book build -W`; 0 when the site was built."""
    papers = catalog.with_notebooks()
    start = time.time()
    outcomes, skipped = execute.execute_smoke(
        papers, workers=workers, force=force,
        on_done=lambda o: echo(f"  executed {o.slug}: exit {o.exit_code} in {o.wall_time_s:.1f} s"))
    for p in skipped:
        echo(f"  up to date {p.slug}: code, lib and parameters unchanged since its last execution")
    failed = [o for o in outcomes if o.exit_code != execute.EXIT_OK]
    for o in failed:
        echo(f"FAILED {o.slug} (exit {o.exit_code}): {o.error}")
    if failed:
        echo(f"{len(failed)} notebook(s) failed; the site was not built")
        return 1
    echo(f"notebooks ready in {time.time() - start:.1f} s")
    results = {p: json.loads((execute.CACHE / f"{p.slug}.json").read_text()) for p in papers}
    src = stage(papers, results)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src),
           "--path-output", str(SITE), "--builder", "html", "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        echo(proc.stdout[-6000:] + proc.stderr[-6000:])
        echo("the book build failed")
        return 1
    echo(f"site: {SITE / '_build' / 'html' / 'index.html'}")
    return 0
