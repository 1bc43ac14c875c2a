import copy

import nbformat
import pytest

from conftest import FIXTURE, ROOT
from repro.core.claims import METADATA_KEY
from repro.harness import catalog, contract, scaffold


def executed(nb, claims=None):
    """`nb` with an execution count on every code cell, a figure in the key-figure cell and a stored
    claims table."""
    for i, cell in enumerate(contract.code_cells(nb)):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", text="ok\n")]
        if contract.KEY_FIGURE_TAG in cell.metadata.get("tags", []):
            cell.outputs.append(nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"}))
    claims = claims or [{"statement": s, "kind": "paper", "expected": True, "verdict": "holds"} for s in "abc"]
    contract.claims_cell(nb).outputs = [nbformat.v4.new_output(
        "display_data", data={"text/plain": "table"}, metadata={METADATA_KEY: claims})]
    return nb


@pytest.fixture
def tiny():
    return executed(nbformat.read(ROOT / FIXTURE, as_version=4))


def test_fixture_follows_the_contract(tiny):
    assert contract.contract_problems(tiny) == []


def test_scaffold_has_every_section_but_its_todos():
    paper = catalog.find(108)
    nb = executed(scaffold.scaffold(paper, "salimans2016"))
    problems = contract.contract_problems(nb, paper)
    assert problems == ["header: still has TODO", "differences: still has TODO"]
    other = catalog.find(87)
    assert any(f"slug={other.slug!r}" in p for p in contract.contract_problems(nb, other))
    assert f"](../../{contract.BADGE})" in nb.cells[0].source


def cell(nb, tag=None, index=None):
    code = contract.code_cells(nb)
    return code[index] if tag is None else next(c for c in code if tag in c.metadata.get("tags", []))


@pytest.mark.parametrize("edit, problem", [
    (lambda nb: nb.cells.pop(0), "header"),
    (lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace("**The claim.**", "")), "The claim"),
    (lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace(contract.BADGE, "x.svg")), "badge image"),
    (lambda nb: setattr(cell(nb, index=0), "source", "import repro"), "install cell"),
    (lambda nb: cell(nb, index=0).metadata.update(tags=[]), "tagged remove-cell"),
    (lambda nb: setattr(cell(nb, "parameters"), "source", "preset = 'smoke'\nseed = 0\ndevice = get()"),
     "not a literal"),
    (lambda nb: setattr(cell(nb, "parameters"), "source",
                        "preset = 'full'\nseed = 0\ndevice = 'auto'\noverrides = {}"), "preset must default"),
    (lambda nb: setattr(cell(nb, "parameters"), "source", "preset = 'smoke'\nseed = 0\ndevice = 'auto'"),
     "overrides must default to {}"),
    (lambda nb: cell(nb, "parameters").metadata.update(tags=[]), "exactly one code cell tagged 'parameters'"),
    (lambda nb: setattr(cell(nb, index=2), "source", cell(nb, index=2).source.replace(
        ", overrides=overrides", "")), "must be given overrides=overrides"),
    (lambda nb: setattr(cell(nb, index=2), "source", cell(nb, index=2).source.replace(
        "draws=2", "draws=len('ab')")), "PRESETS must be written with literals"),
    (lambda nb: cell(nb, "claims").metadata.update(tags=["claims"]), "nbval-check-output"),
    (lambda nb: setattr(cell(nb, "claims"), "outputs", []), "no stored claims table"),
    (lambda nb: executed(nb, claims_of(("paper", True, "holds"), ("sanity", True, "holds"))),
     "1 paper or theory claim(s); a notebook needs at least 3"),
    (lambda nb: executed(nb, [{"statement": "x", "expected": True, "verdict": "holds"}]), "without a kind"),
    (lambda nb: nb.cells.pop(), "differences"),
    (lambda nb: setattr(cell(nb, index=3), "execution_count", None), "no stored execution"),
    (lambda nb: setattr(cell(nb, index=3), "source", "x = [" + "1, " * 40 + "]"),
     "cell 4 line 1 is 126 characters long, more than 100"),
    (lambda nb: setattr(cell(nb, "claims"), "source", cell(nb, "claims").source.replace(
        '"definition"', '"a definition, quoted at such length that its line runs past the limit of '
                        'a hundred characters"')),
     "characters long"),
    (lambda nb: setattr(cell(nb, index=0), "source", cell(nb, index=0).source.replace(
        '\n                          "', ' "')), "install cell"),
    (lambda nb: cell(nb, index=2).metadata.update(tags=[]), "the setup cell (cell 3, PRESETS and repro.setup) "
     "must be tagged 'hide-input'"),
    (lambda nb: cell(nb, "key-figure").metadata.update(tags=[]), "expected one code cell tagged 'key-figure'"),
    (lambda nb: cell(nb, index=2).metadata.update(tags=["hide-input", "key-figure"]),
     "tagged 'key-figure' (the gallery's thumbnail), found 2"),
    (lambda nb: cell(nb, "key-figure").outputs.pop(), "cell 4, tagged 'key-figure', has no stored image/png"),
])
def test_contract_problems_are_found(tiny, edit, problem):
    nb = copy.deepcopy(tiny)
    edit(nb)
    problems = contract.contract_problems(nb)
    assert any(problem in p for p in problems), problems


def test_layout_rules_hold_at_their_limits(tiny):
    """A line of exactly 100 characters, a hidden setup cell with more tags, and an unexecuted
    key-figure cell (flagged as unexecuted, not for its missing image) pass the layout rules."""
    cell(tiny, index=3).source = "x = [" + "1, " * 31 + "1]"
    assert len(cell(tiny, index=3).source) == contract.MAX_LINE
    cell(tiny, index=2).metadata["tags"] = ["remove-output", "hide-input"]
    assert contract.contract_problems(tiny) == []
    unexecuted = copy.deepcopy(tiny)
    key = cell(unexecuted, "key-figure")
    key.execution_count, key.outputs = None, []
    assert [p for p in contract.contract_problems(unexecuted)] == [
        "outputs: code cells [4] have no stored execution"]


def test_notebooks_keep_their_lines_within_the_limit():
    """The install cell, too, and every line `repro new` writes."""
    assert max(len(line) for line in contract.INSTALL_CELL.splitlines()) <= contract.MAX_LINE
    nb = scaffold.scaffold(catalog.find(108), "salimans2016")
    assert all(len(line) <= contract.MAX_LINE for c in contract.code_cells(nb) for line in c.source.splitlines())


def test_parameters_and_presets(tiny):
    assert contract.parameters(tiny) == {"preset": "smoke", "seed": 0, "device": "auto", "overrides": {},
                                         "fail_claim": False, "crash": False, "scale": 1.0}
    assert contract.presets(tiny) == {"smoke": {"draws": 2, "label": "small"},
                                      "full": {"draws": 3, "label": "large"}}
    cell(tiny, "parameters").source = "x, y = 1, 2"
    with pytest.raises(ValueError, match="only `name = literal`"):
        contract.parameters(tiny)


def test_presets_reads_nested_literals():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'PRESETS = {"smoke": dict(steps={"mlp": 600}, lrs=[0.01, 0.1], n=100_000, eps=-1e-3, pair=(1, 2),\n'
        '                         ratio=1 / 8, big=2 ** 10)}')])
    assert contract.presets(nb) == {"smoke": {"steps": {"mlp": 600}, "lrs": [0.01, 0.1], "n": 100000,
                                              "eps": -1e-3, "pair": (1, 2), "ratio": 0.125, "big": 1024}}


def claims_of(*triples):
    return [{"statement": str(i), "kind": k, "expected": e, "verdict": v} for i, (k, e, v) in enumerate(triples)]


@pytest.mark.parametrize("claims, status", [
    (claims_of(("paper", True, "holds"), ("theory", True, "holds")), "reproduced"),
    (claims_of(("paper", True, "holds"), ("paper", False, "fails")), "partly reproduced"),
    (claims_of(("paper", False, "fails")), "not reproduced"),
    (claims_of(("paper", True, "holds"), ("theory", True, "fails")), "not reproduced"),
    (claims_of(("paper", True, "holds"), ("paper", False, "holds")), "partly reproduced"),
    (claims_of(("paper", True, "holds"), ("paper", True, "inconclusive")), "partly reproduced"),
    (claims_of(("paper", False, "holds")), "not reproduced"),
    (claims_of(("paper", True, "holds"), ("sanity", True, "fails"), ("ours", False, "fails")), "reproduced"),
    (claims_of(("sanity", True, "holds")), None),
    ([], None),
    (None, None),
])
def test_status_from_claims(claims, status):
    assert contract.status_from_claims(claims) == status


def test_stored_claims_come_from_the_metadata(tiny):
    assert [c["statement"] for c in contract.stored_claims(tiny)] == ["a", "b", "c"]
    cell(tiny, "claims").outputs = [nbformat.v4.new_output("stream", text="1 a holds")]
    assert contract.stored_claims(tiny) is None


def test_papermill_reads_every_parameter_of_every_notebook():
    from papermill.translators import PythonTranslator

    notebooks = [nbformat.read(p.notebook_path, as_version=4) for p in catalog.with_notebooks()]
    notebooks.append(scaffold.scaffold(catalog.find(108), "key"))
    for nb in notebooks:
        cell = contract.parameters_cell(nb)
        assert {p.name for p in PythonTranslator.inspect(cell)} == set(contract.parameters(nb)), cell.source
