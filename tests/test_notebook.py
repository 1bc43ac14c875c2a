import copy

import nbformat
import pytest

from conftest import FIXTURE, ROOT
from repro import catalog, notebook


@pytest.fixture
def tiny():
    nb = nbformat.read(ROOT / FIXTURE, as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", text="ok\n")]
    notebook.stamp(nb)
    return nb


def test_fixture_follows_the_contract(tiny):
    assert notebook.contract_problems(tiny) == []


def test_scaffold_has_every_section_but_its_todos():
    nb = notebook.scaffold(catalog.find(108), "salimans2016")
    problems = notebook.contract_problems(nb, catalog.find(108))
    assert "header: still has TODO" in problems and "differences: still has TODO" in problems
    assert not any(p.startswith(("parameters", "setup", "claims:")) for p in problems)
    assert "colab.research.google.com" in nb.cells[0].source


@pytest.mark.parametrize("edit, problem", [
    (lambda nb: nb.cells.pop(0), "header"),
    (lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace("**The claim.**", "")), "The claim"),
    (lambda nb: setattr(nb.cells[1], "source", "preset = 'smoke'\nseed = 0\ndevice = get()"), "not a literal"),
    (lambda nb: setattr(nb.cells[1], "source", "preset = 'full'\nseed = 0\ndevice = 'auto'"), "preset must default"),
    (lambda nb: nb.cells[1].metadata.update(tags=[]), "exactly one code cell tagged 'parameters'"),
    (lambda nb: nb.cells[4].metadata.update(tags=["claims"]), "nbval-check-output"),
    (lambda nb: setattr(nb.cells[4], "outputs", []), "no stored output"),
    (lambda nb: nb.cells.pop(), "differences"),
    (lambda nb: setattr(nb.cells[3], "execution_count", None), "no stored execution"),
])
def test_contract_problems_are_found(tiny, edit, problem):
    nb = copy.deepcopy(tiny)
    edit(nb)
    assert any(problem in p for p in notebook.contract_problems(nb)), notebook.contract_problems(nb)


def test_staleness(tiny, monkeypatch):
    assert notebook.staleness(tiny) is None
    edited = copy.deepcopy(tiny)
    edited.cells[3].source += "\nvalue = 0.5"
    assert "code changed" in notebook.staleness(edited)
    monkeypatch.setattr(notebook, "lib_hash", lambda: "different")
    assert "lib/repro changed" in notebook.staleness(tiny)
    del tiny.metadata["repro"]
    assert "no stamp" in notebook.staleness(tiny)


def test_parameters(tiny):
    assert notebook.parameters(tiny) == {"preset": "smoke", "seed": 0, "device": "auto",
                                         "fail_claim": False, "crash": False, "scale": 1.0}
    tiny.cells[1].source = "x, y = 1, 2"
    with pytest.raises(ValueError, match="only `name = literal`"):
        notebook.parameters(tiny)


@pytest.mark.parametrize("text, status", [
    ("1 a holds\n2 b holds", "reproduced"),
    ("1 a holds\n2 b not reproduced", "partly reproduced"),
    ("1 b not reproduced", "not reproduced"),
    ("1 a FAILS", "not reproduced"),
    ("1 a holds\n2 b holds (unexpectedly)", "partly reproduced"),
    ("1 b holds (unexpectedly)", "not reproduced"),
    ("", None),
])
def test_status_from_claims(text, status):
    assert notebook.status_from_claims(text) == status
