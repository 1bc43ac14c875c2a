"""The notebook contract: the skeleton every notebook follows, read without executing it.

In order: a header (title, authors, year, paper link, Colab badge, citation, "The claim"), the
install cell (exactly INSTALL_CELL), a code cell tagged `parameters` (literals only), a
`repro.setup(...)` cell that reads the `PRESETS` table and passes the overrides on, the
experiment, one claims cell tagged `claims` and `nbval-check-output`, and a section
"What differs from the paper". No line of code is longer than MAX_LINE characters, the setup
cell is tagged `hide-input`, and exactly one code cell, tagged `key-figure`, shows the figure
the gallery uses as the notebook's thumbnail.
"""
from __future__ import annotations

import ast
import operator
from pathlib import Path

import nbformat

from ..core.claims import COUNTED, KINDS, METADATA_KEY
from .catalog import Paper

REPOSITORY = "reprobook/reprobook"
COLAB = "https://colab.research.google.com/github/{repo}/blob/main/{path}"
# What the install cell installs when `import repro` fails: the one place this default is written.
PIP_SPEC = f"reprobook @ git+https://github.com/{REPOSITORY}"
INSTALL_CELL = f'''\
# Colab or a fresh environment: install the library when it is missing (REPRO_PIP_SPEC can name
# another source, such as a local clone).
try:
    import repro
except ImportError:
    import importlib, os, subprocess, sys
    spec = os.environ.get("REPRO_PIP_SPEC",
                          "{PIP_SPEC}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", spec], check=True)
    importlib.invalidate_caches()
    import repro'''
INSTALL_TAGS = ["remove-cell"]  # the site does not show it: it does nothing there
BADGE = "book/images/colab-badge.svg"  # served with the site, so the badge shows offline too
REQUIRED_PARAMETERS = {"preset": "smoke", "seed": 0, "device": "auto", "overrides": {}}
CLAIMS_TAGS = ("claims", "nbval-check-output")
MAX_LINE = 100  # characters in a line of code, so that the site never scrolls sideways
SETUP_TAG = "hide-input"  # the configuration cell (PRESETS, repro.setup) shows folded
KEY_FIGURE_TAG = "key-figure"  # the one cell whose figure is the gallery's thumbnail
DIFFERENCES = "## What differs from the paper"
MIN_COUNTED = 3  # paper and theory claims a notebook must have


def colab_url(path: str) -> str:
    return COLAB.format(repo=REPOSITORY, path=path)


def notebook_path(paper: Paper) -> str:
    return f"notebooks/{paper.theme}/{paper.slug}.ipynb"


def read(path):
    """A notebook, read without validating it against nbformat's schema, which costs more than
    everything else the book does with it (`repro check` reads with validation)."""
    return nbformat.v4.reads(Path(path).read_text())


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


# --- parameters and presets -------------------------------------------------------------------
def parameters_cell(nb):
    cells = [c for c in code_cells(nb) if "parameters" in c.metadata.get("tags", [])]
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


ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.Pow: operator.pow}


def _literal(node):
    """A literal, where dict(key=value, ...) and arithmetic on numbers (1 / 8) count as ones."""
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        left, right = _literal(node.left), _literal(node.right)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            raise ValueError("arithmetic on something other than numbers")
        return ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
            and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)


def presets(nb) -> dict:
    """The notebook's `PRESETS = {...}` table, read without executing it ({} when it has none)."""
    for cell in code_cells(nb):
        if "PRESETS" not in cell.source:
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PRESETS"
                                                    for t in node.targets):
                try:
                    return _literal(node.value)
                except ValueError:
                    raise ValueError("PRESETS must be written with literals only (numbers and arithmetic on "
                                     "them, strings, lists, dicts) so that overrides can be checked "
                                     "before a run") from None
    return {}


def passes_overrides(nb) -> bool:
    """Whether a cell calls repro.setup(..., overrides=overrides)."""
    for cell in code_cells(nb):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "setup" and any(
                        kw.arg == "overrides" and isinstance(kw.value, ast.Name) and kw.value.id == "overrides"
                        for kw in node.keywords):
                return True
    return False


# --- the stored claims ------------------------------------------------------------------------
def claims_cell(nb):
    cells = [c for c in code_cells(nb) if "claims" in c.metadata.get("tags", [])]
    return cells[0] if len(cells) == 1 else None


def claims_slug(nb) -> str | None:
    """The slug the claims cell gives repro.Claims(cfg, slug=...), whose recorded sweep it shows."""
    cell = claims_cell(nb)
    for node in ast.walk(ast.parse(cell.source)) if cell else ():
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "Claims":
            for kw in node.keywords:
                if kw.arg == "slug" and isinstance(kw.value, ast.Constant):
                    return kw.value.value
    return None


def stored_claims(nb) -> list[dict] | None:
    """The claims of the stored outputs (from the claims table's metadata), or None."""
    cell = claims_cell(nb)
    for out in (cell.get("outputs", []) if cell else []):
        if METADATA_KEY in out.get("metadata", {}):
            return out["metadata"][METADATA_KEY]
    return None


def status_from_claims(claims: list[dict] | None) -> str | None:
    """The catalog status that a run's `paper` and `theory` claims support: reproduced when every
    one holds as expected, not reproduced when none does (or one expected to hold fails), partly
    reproduced in between. A claim recorded as not reproducing here counts as such even on a seed
    where it happened to hold; an inconclusive one does not count as reproduced."""
    counted = [c for c in claims or [] if c.get("kind") in COUNTED]
    if not counted:
        return None
    if any(c["expected"] and c["verdict"] == "fails" for c in counted):
        return "not reproduced"
    held = [c for c in counted if c["expected"] and c["verdict"] == "holds"]
    if len(held) == len(counted):
        return "reproduced"
    return "partly reproduced" if held else "not reproduced"


# --- the contract -----------------------------------------------------------------------------
def _header_problems(cells, paper) -> list[str]:
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.startswith("# "):
        return ["header: the first cell must be markdown starting with '# <title>'"]
    head, problems = cells[0].source, []
    for needle, what in [("colab.research.google.com", "a Colab badge"), (BADGE, f"the badge image {BADGE}"),
                         ("{cite}", "a citation"), ("**The claim.**", "'**The claim.**' paragraph")]:
        if needle not in head:
            problems.append(f"header: missing {what}")
    if paper is not None and paper.link and paper.link not in head:
        problems.append(f"header: missing the paper's link {paper.link}")
    if "TODO" in head:
        problems.append("header: still has TODO")
    return problems


def _claims_problems(nb, paper=None) -> list[str]:
    cells = [c for c in code_cells(nb) if "claims" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        return [f"claims: expected one code cell tagged 'claims', found {len(cells)}"]
    cell, problems = cells[0], []
    if ".report()" not in cell.source:
        problems.append("claims: the claims cell must call .report()")
    if "nbval-check-output" not in cell.metadata.get("tags", []):
        problems.append("claims: the claims cell must be tagged 'nbval-check-output'")
    if paper is not None and claims_slug(nb) != paper.slug:
        problems.append(f"claims: the claims cell must make repro.Claims(cfg, slug={paper.slug!r}), "
                        "so that its table shows the recorded seeds")
    claims = stored_claims(nb)
    if claims is None:
        problems.append("outputs: the claims cell has no stored claims table")
        return problems
    unkinded = [c["statement"] for c in claims if c.get("kind") not in KINDS]
    if unkinded:
        problems.append(f"claims: without a kind ({', '.join(KINDS)}): {'; '.join(unkinded)}")
    counted = [c for c in claims if c.get("kind") in COUNTED]
    if len(counted) < MIN_COUNTED:
        problems.append(f"claims: {len(counted)} paper or theory claim(s); a notebook needs at least "
                        f"{MIN_COUNTED}")
    return problems


def _layout_problems(nb, setup_at) -> list[str]:
    """Long lines, the configuration cell that must fold, and the key figure."""
    problems = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        for n, line in enumerate(c.source.splitlines(), 1):
            if len(line) > MAX_LINE:
                problems.append(f"layout: cell {i} line {n} is {len(line)} characters long, more than "
                                f"{MAX_LINE}")
    if setup_at is not None and SETUP_TAG not in nb.cells[setup_at].metadata.get("tags", []):
        problems.append(f"layout: the setup cell (cell {setup_at}, PRESETS and repro.setup) must be "
                        f"tagged '{SETUP_TAG}' so that it shows folded")
    key = [i for i, c in enumerate(nb.cells)
           if c.cell_type == "code" and KEY_FIGURE_TAG in c.metadata.get("tags", [])]
    if len(key) != 1:
        problems.append(f"key figure: expected one code cell tagged '{KEY_FIGURE_TAG}' (the gallery's "
                        f"thumbnail), found {len(key)}")
    elif nb.cells[key[0]].execution_count is not None and not any(
            "image/png" in out.get("data", {}) for out in nb.cells[key[0]].get("outputs", [])):
        problems.append(f"key figure: cell {key[0]}, tagged '{KEY_FIGURE_TAG}', has no stored image/png "
                        "output")
    return problems


def contract_problems(nb, paper: Paper | None = None) -> list[str]:
    """Everything in `nb` that breaks the notebook contract (an empty list when it follows it)."""
    cells = nb.cells
    problems = _header_problems(cells, paper)
    code = code_cells(nb)
    if not code or code[0].source != INSTALL_CELL or code[0].metadata.get("tags") != INSTALL_TAGS:
        problems.append("install: the first code cell must be the install cell, exactly as "
                        "repro.harness.contract.INSTALL_CELL, tagged remove-cell (`repro new` writes it)")
    try:
        params = parameters(nb)
        for name, default in REQUIRED_PARAMETERS.items():
            if params.get(name) != default:
                problems.append(f"parameters: {name} must default to {default!r}")
        index = cells.index(parameters_cell(nb))
    except (ValueError, SyntaxError) as err:
        problems.append(f"parameters: {err}")
        index = 0
    setup_at = [i for i, c in enumerate(cells) if c.cell_type == "code" and "repro.setup(" in c.source]
    if not setup_at or setup_at[0] <= index:
        problems.append("setup: no `repro.setup(...)` cell after the parameters cell")
    elif not passes_overrides(nb):
        problems.append("setup: repro.setup(...) must be given overrides=overrides")
    try:
        presets(nb)
    except (ValueError, SyntaxError) as err:
        problems.append(f"presets: {err}")
    problems += _claims_problems(nb, paper)
    differences = [c for c in cells if c.cell_type == "markdown" and c.source.startswith(DIFFERENCES)]
    if not differences:
        problems.append(f"differences: no markdown cell starting with '{DIFFERENCES}'")
    elif any("TODO" in c.source for c in differences):
        problems.append("differences: still has TODO")
    problems += _layout_problems(nb, setup_at[0] if setup_at else None)
    unexecuted = [i for i, c in enumerate(cells) if c.cell_type == "code" and c.execution_count is None]
    if unexecuted:
        problems.append(f"outputs: code cells {unexecuted} have no stored execution")
    return problems
