"""`repro new`: a new notebook from a catalog entry, registered in papers.yaml and the TOC."""
from __future__ import annotations

import re

import nbformat
import yaml

from . import catalog, checkout, contract
from .catalog import Paper


def default_bibkey(paper: Paper) -> str:
    words = re.findall(r"[a-z0-9]+", paper.slug)
    return "".join(words[:3]) + (str(paper.year) if paper.year else "")


def scaffold(paper: Paper, bibkey: str):
    """A new notebook for `paper` with every section of the contract, ready to be filled in."""
    path = contract.notebook_path(paper)
    badge = "../" * path.count("/") + contract.BADGE  # relative to the notebook's folder
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    header = (f"# {paper.title}\n\n"
              f"{paper.authors or 'AUTHORS'} ({paper.year or 'YEAR'}). [Paper]({paper.link}) {{cite}}`{bibkey}`\n\n"
              f"[![Open In Colab]({badge})]({contract.colab_url(path)})\n\n"
              "**The claim.** TODO: what the paper says, in one paragraph of our own words.")
    cells = [
        md(header),
        code(contract.INSTALL_CELL, metadata={"tags": contract.INSTALL_TAGS}),
        code('preset = "smoke"  # "smoke": CPU, under a minute; "full": one GPU, under 30 minutes\n'
             'seed = 0\ndevice = "auto"\n'
             'overrides = {}  # any setting of the preset, e.g. {"steps": 300}; `repro run -p` sets them',
             metadata={"tags": ["parameters"]}),
        code("PRESETS = {\n    \"smoke\": dict(),\n    \"full\": dict(),\n}\n"
             "cfg = repro.setup(preset, seed, device, presets=PRESETS, overrides=overrides)",
             metadata={"tags": [contract.SETUP_TAG]}),
        md("## Experiment\n\nTODO: one sentence on what this section tests."),
        code("# TODO: the experiment; the figure of the cell tagged key-figure (one cell: the one\n"
             "# showing the headline result) is the notebook's thumbnail in the gallery",
             metadata={"tags": [contract.KEY_FIGURE_TAG]}),
        md("## Claims\n\nEach claim is the paper's finding, with where the paper states it."),
        code(f'claims = repro.Claims(cfg, slug="{paper.slug}")\n'
             '# TODO: claims.close(..., kind="paper", source="Sec. 3"), claims.rate(...), claims.less(...)\n'
             "claims.report()", metadata={"tags": list(contract.CLAIMS_TAGS)}),
        md(f"{contract.DIFFERENCES}\n\nTODO: data, scale, model, steps; what going further would take."),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def register(paper: Paper, path: str, catalog_file=None, toc_file=None) -> None:
    """Point the paper's catalog entry at `path` and add the notebook to its theme's TOC part."""
    catalog_file = catalog_file or checkout.root() / catalog.CATALOG
    toc_file = toc_file or checkout.root() / "_toc.yml"
    text = catalog_file.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    rows = yaml.safe_load(text)
    for row in rows:
        if row["id"] == paper.id:
            row["notebook"] = path
    catalog_file.write_text(header + yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, width=100))
    catalog._load.cache_clear()

    toc = yaml.safe_load(toc_file.read_text())
    caption = catalog.THEMES.get(paper.theme, paper.theme)
    part = next((p for p in toc["parts"] if p["caption"] == caption), None)
    if part is None:
        part = {"caption": caption, "chapters": []}
        toc["parts"].insert(len(toc["parts"]) - 1, part)  # before the references part
    entry = {"file": path.removesuffix(".ipynb")}
    if entry not in part["chapters"]:
        part["chapters"].append(entry)
    toc_file.write_text(yaml.safe_dump(toc, sort_keys=False))


def create(paper: Paper, bibkey: str | None = None):
    path = contract.notebook_path(paper)
    target = checkout.root() / path
    if target.exists():
        raise FileExistsError(f"{path} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(scaffold(paper, bibkey or default_bibkey(paper)), target)
    register(paper, path)
    return target
