"""The notebook contract: scaffold a notebook, stamp what produced its outputs, check the skeleton.

Every notebook has, in order: a header (title, authors, year, paper link, Colab badge, citation,
"The claim"), a code cell tagged `parameters` (literals only), a `repro.setup(...)` cell, the
experiment, one claims cell tagged `claims` (its output is what nbval compares), and a section
"What differs from the paper". Outputs are committed, stamped with the hashes of the code and of
`lib` that produced them.
"""
from __future__ import annotations

import ast
import hashlib
import time
from pathlib import Path

import nbformat

from . import __version__
from .catalog import ROOT, THEMES, Paper

LIB = ROOT / "lib" / "repro"
REPOSITORY = "reprobook/reprobook"
COLAB = "https://colab.research.google.com/github/{repo}/blob/main/{path}"
REQUIRED_PARAMETERS = {"preset": "smoke", "seed": 0, "device": "auto"}
CLAIMS_TAGS = ("claims", "nbval-check-output")
DIFFERENCES = "## What differs from the paper"


# --- hashing and stamps -----------------------------------------------------------------------
def code_hash(nb) -> str:
    """Hash of the code cells' sources: what a reader could change to change the outputs."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode() + b"\0")
    return h.hexdigest()[:16]


def lib_hash(lib: Path = LIB) -> str:
    """Hash of every source file of `lib/repro`: a change there can change any result."""
    h = hashlib.sha256()
    for path in sorted(lib.rglob("*.py")):
        h.update(path.relative_to(lib).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def stamp(nb, *, preset="smoke", seed=0) -> dict:
    """Record in the notebook's metadata what produced its outputs."""
    record = {"code_hash": code_hash(nb), "lib_hash": lib_hash(), "lib_version": __version__,
              "preset": preset, "seed": seed, "executed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    nb.metadata["repro"] = record
    return record


def staleness(nb) -> str | None:
    """Why the stored outputs do not come from the current code and lib, or None when fresh."""
    record = nb.metadata.get("repro")
    if not record:
        return "no stamp: outputs were not produced by `repro refresh`"
    if record.get("code_hash") != code_hash(nb):
        return "its code changed after its outputs were produced"
    if record.get("lib_hash") != lib_hash():
        return "lib/repro changed after its outputs were produced"
    return None


# --- scaffold ---------------------------------------------------------------------------------
def colab_url(path: str) -> str:
    return COLAB.format(repo=REPOSITORY, path=path)


def notebook_path(paper: Paper) -> str:
    return f"notebooks/{paper.theme}/{paper.slug}.ipynb"


def scaffold(paper: Paper, bibkey: str):
    """A new notebook for `paper` with every section of the contract, ready to be filled in."""
    path = notebook_path(paper)
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    header = (f"# {paper.title}\n\n"
              f"{paper.authors or 'AUTHORS'} ({paper.year or 'YEAR'}). [Paper]({paper.link}) {{cite}}`{bibkey}`\n\n"
              f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(path)})\n\n"
              "**The claim.** TODO: what the paper says, in one paragraph of our own words.")
    cells = [
        md(header),
        code('preset = "smoke"  # "smoke": CPU, under a minute; "full": one GPU, under 30 minutes\n'
             'seed = 0\ndevice = "auto"', metadata={"tags": ["parameters"]}),
        code("import repro\n\nPRESETS = {\n    \"smoke\": dict(),\n    \"full\": dict(),\n}\n"
             "cfg = repro.setup(preset, seed, device, presets=PRESETS)"),
        md("## Experiment\n\nTODO: one sentence on what this section tests."),
        code("# TODO: the experiment"),
        md("## Claims\n\nEach claim is the paper's finding, with where the paper states it."),
        code("claims = repro.Claims(cfg)\n# TODO: claims.close(...), claims.less(...), ...\nclaims.report()",
             metadata={"tags": list(CLAIMS_TAGS)}),
        md(f"{DIFFERENCES}\n\nTODO: data, scale, model, steps; what going further would take."),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# --- the contract -----------------------------------------------------------------------------
def parameters_cell(nb):
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected exactly one code cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def parameters(nb) -> dict:
    """The parameters cell's names and default values; it must hold literal assignments only."""
    values = {}
    for node in ast.parse(parameters_cell(nb).source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"parameters cell line {node.lineno}: only `name = literal` is allowed")
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"parameters cell line {node.lineno}: {node.targets[0].id} is not a literal")
    return values


def contract_problems(nb, paper: Paper | None = None) -> list[str]:
    """Everything in `nb` that breaks the notebook contract (an empty list when it follows it)."""
    problems = []
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.startswith("# "):
        problems.append("header: the first cell must be markdown starting with '# <title>'")
    else:
        head = cells[0].source
        for needle, what in [("colab.research.google.com", "a Colab badge"), ("{cite}", "a citation"),
                             ("**The claim.**", "'**The claim.**' paragraph")]:
            if needle not in head:
                problems.append(f"header: missing {what}")
        if paper is not None and paper.link and paper.link not in head:
            problems.append(f"header: missing the paper's link {paper.link}")
        if "TODO" in head:
            problems.append("header: still has TODO")
    try:
        params = parameters(nb)
        index = cells.index(parameters_cell(nb))
        for name, default in REQUIRED_PARAMETERS.items():
            if params.get(name) != default:
                problems.append(f"parameters: {name} must default to {default!r}")
    except ValueError as err:
        problems.append(f"parameters: {err}")
        index = 0
    setup_at = [i for i, c in enumerate(cells) if c.cell_type == "code" and "repro.setup(" in c.source]
    if not setup_at or setup_at[0] <= index:
        problems.append("setup: no `repro.setup(...)` cell after the parameters cell")
    claims = [c for c in cells if c.cell_type == "code" and "claims" in c.metadata.get("tags", [])]
    if len(claims) != 1:
        problems.append(f"claims: expected one code cell tagged 'claims', found {len(claims)}")
    else:
        cell = claims[0]
        if ".report()" not in cell.source:
            problems.append("claims: the claims cell must call .report()")
        if "nbval-check-output" not in cell.metadata.get("tags", []):
            problems.append("claims: the claims cell must be tagged 'nbval-check-output'")
        if not cell.get("outputs"):
            problems.append("outputs: the claims cell has no stored output")
    if not any(c.cell_type == "markdown" and c.source.startswith(DIFFERENCES) for c in cells):
        problems.append(f"differences: no markdown cell starting with '{DIFFERENCES}'")
    elif any(c.cell_type == "markdown" and c.source.startswith(DIFFERENCES) and "TODO" in c.source
             for c in cells):
        problems.append("differences: still has TODO")
    unexecuted = [i for i, c in enumerate(cells) if c.cell_type == "code" and c.execution_count is None]
    if unexecuted:
        problems.append(f"outputs: code cells {unexecuted} have no stored execution")
    stale = staleness(nb)
    if stale:
        problems.append(f"outputs: stale, {stale}; run `repro refresh {paper.slug if paper else 'PAPER'}`")
    return problems


def claims_output_text(nb) -> str:
    """The plain text of the stored claims table."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "claims" in cell.metadata.get("tags", []):
            parts = []
            for out in cell.get("outputs", []):
                parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
            return "\n".join(parts)
    return ""


def status_from_claims(text: str) -> str | None:
    """The catalog status that a stored claims table supports."""
    if not text:
        return None
    if "FAILS" in text:
        return "not reproduced"
    # a claim recorded as not reproducing here counts as such even on a seed where it happened to hold
    held = text.count("holds") > text.count("holds (unexpectedly)")
    if "not reproduced" in text or "holds (unexpectedly)" in text:
        return "partly reproduced" if held else "not reproduced"
    return "reproduced"


def theme_title(theme: str) -> str:
    return THEMES.get(theme, theme)
