"""`repro new`: a new notebook from a catalog entry, registered in papers.yaml and the TOC."""
from __future__ import annotations

import re

import nbformat
import yaml

from . import catalog, notebook
from .catalog import ROOT, Paper

TOC = ROOT / "_toc.yml"


def default_bibkey(paper: Paper) -> str:
    words = re.findall(r"[a-z0-9]+", paper.slug)
    return "".join(words[:3]) + (str(paper.year) if paper.year else "")


def register(paper: Paper, path: str, catalog_file=catalog.CATALOG, toc_file=TOC) -> None:
    """Point the paper's catalog entry at `path` and add the notebook to its theme's TOC part."""
    text = catalog_file.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    rows = yaml.safe_load(text)
    for row in rows:
        if row["id"] == paper.id:
            row["notebook"] = path
    catalog_file.write_text(header + yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, width=100))
    catalog._load.cache_clear()

    toc = yaml.safe_load(toc_file.read_text())
    caption = notebook.theme_title(paper.theme)
    part = next((p for p in toc["parts"] if p["caption"] == caption), None)
    if part is None:
        part = {"caption": caption, "chapters": []}
        toc["parts"].insert(len(toc["parts"]) - 1, part)  # before the references part
    entry = {"file": path.removesuffix(".ipynb")}
    if entry not in part["chapters"]:
        part["chapters"].append(entry)
    toc_file.write_text(yaml.safe_dump(toc, sort_keys=False))


def create(paper: Paper, bibkey: str | None = None):
    path = notebook.notebook_path(paper)
    target = ROOT / path
    if target.exists():
        raise FileExistsError(f"{path} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook.scaffold(paper, bibkey or default_bibkey(paper)), target)
    register(paper, path)
    return target
