"""`repro check`: the notebooks follow the contract and their stored outputs are fresh, and the
catalog, notebooks and TOC agree."""
from __future__ import annotations

import json
import re

import nbformat
import yaml

from ..core.claims import SWEEPS
from . import catalog, checkout, contract, stamps

TOC = "_toc.yml"
BIB = "book/references.bib"
MIN_SEEDS = 5  # a recorded sweep covers at least this many seeds


def toc_files(toc_file=None) -> list[str]:
    toc = yaml.safe_load((toc_file or checkout.root() / TOC).read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def sweep_problems(root, paper, nb) -> list[str]:
    """What is wrong with the notebook's recorded sweep: missing, too few seeds, or stale (the
    notebook, a module it imports or a numeric package changed after it ran)."""
    path = root / SWEEPS / f"{paper.slug}.json"
    again = f"run `repro sweep {paper.slug} --seeds 0-{MIN_SEEDS - 1} --record`"
    if not path.exists():
        return [f"sweep: none recorded in {SWEEPS}; {again}"]
    record = json.loads(path.read_text())
    found = []
    if len(record["seeds"]) < MIN_SEEDS:
        found.append(f"sweep: {len(record['seeds'])} seed(s) recorded, at least {MIN_SEEDS} needed; {again}")
    changed = stamps.changes(record["stamp"], stamps.current(nb, sweep=False), "the sweep")
    if changed:
        found.append(f"sweep: stale, {'; '.join(changed)} since it ran; {again}")
    elif {c["statement"] for c in record["claims"]} != {c["statement"] for c in contract.stored_claims(nb) or []}:
        found.append(f"sweep: its claims are not the notebook's stored ones; {again}")
    return found


def problems(root=None) -> list[tuple[str, str]]:
    """(where, what) for everything that breaks the contract or the agreement between sources."""
    root = root or checkout.root()
    found = []
    papers = catalog.papers(root / catalog.CATALOG)
    by_notebook = {p.notebook: p for p in papers if p.notebook}
    ids = [p.id for p in papers]
    if len(set(ids)) != len(ids):
        found.append(("data/papers.yaml", "duplicate ids"))
    slugs = [p.slug for p in papers]
    if len(set(slugs)) != len(slugs):
        found.append(("data/papers.yaml", "duplicate slugs"))
    for p in papers:
        if p.status not in catalog.STATUSES:
            found.append((f"paper {p.id}", f"status {p.status!r} is not one of {catalog.STATUSES}"))
        if p.status == "out of scope" and not p.reason:
            found.append((f"paper {p.id}", "out of scope without a reason"))
        if p.theme not in catalog.THEMES:
            found.append((f"paper {p.id}", f"unknown theme {p.theme!r}"))
    on_disk = {path.relative_to(root).as_posix() for path in (root / "notebooks").rglob("*.ipynb")
               if ".ipynb_checkpoints" not in path.parts}
    for path in sorted(on_disk - set(by_notebook)):
        found.append((path, "notebook is not listed in data/papers.yaml"))
    toc = set(toc_files(root / TOC))
    bib = (root / BIB).read_text() if (root / BIB).exists() else ""
    for path, paper in sorted(by_notebook.items()):
        if path not in on_disk:
            found.append((f"paper {paper.id}", f"its notebook {path} does not exist"))
            continue
        if path.removesuffix(".ipynb") not in toc:
            found.append((path, "notebook is not in _toc.yml"))
        expected_dir = f"notebooks/{paper.theme}/"
        if not path.startswith(expected_dir):
            found.append((path, f"notebook should live in {expected_dir}"))
        nb = nbformat.read(root / path, as_version=4)
        found += [(path, what) for what in contract.contract_problems(nb, paper)]
        stale = stamps.staleness(nb)
        if stale:
            found.append((path, f"outputs: stale, {'; '.join(stale)}; run `repro refresh --stale`"))
        found += [(path, what) for what in sweep_problems(root, paper, nb)]
        prose = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for key in re.findall(r"\{cite[:a-z]*\}`([^`]+)`", prose):
            for k in key.split(","):
                if not re.search(r"@\w+\{" + re.escape(k.strip()) + ",", bib):
                    found.append((path, f"citation {k.strip()!r} is not in book/references.bib"))
        supported = contract.status_from_claims(contract.stored_claims(nb))
        if supported and paper.status != supported:
            found.append((path, f"papers.yaml says {paper.status!r}, its claims say {supported!r}"))
    notebook_entries = {f for f in toc if f.startswith("notebooks/")}
    for entry in sorted(notebook_entries - {p.removesuffix(".ipynb") for p in by_notebook}):
        found.append(("_toc.yml", f"{entry} is not a notebook of data/papers.yaml"))
    return found
