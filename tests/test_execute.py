import json

import nbformat
import pytest

from conftest import FIXTURE, ROOT
from repro import execute


@pytest.fixture(scope="module")
def tiny_nb():
    return nbformat.read(ROOT / FIXTURE, as_version=4)


def test_parse_assignments():
    assert execute.parse_assignments(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(execute.ParameterError, match="KEY=VALUE"):
        execute.parse_assignments(["nokey"])


def test_resolve_parameters_converts_by_type(tiny_nb):
    values = execute.resolve_parameters(tiny_nb, {"seed": "3", "scale": "2", "crash": "true",
                                                  "preset": "full"})
    assert values["seed"] == 3 and values["scale"] == 2.0 and values["crash"] is True
    assert execute.resolve_parameters(tiny_nb, {"scale": 2})["scale"] == 2.0


@pytest.mark.parametrize("overrides, match", [
    ({"steps": "3"}, r"unknown parameter\(s\) steps; this notebook takes: preset \(default 'smoke'\)"),
    ({"seed": "abc"}, "seed must be an int, got 'abc'"),
    ({"scale": "big"}, "scale must be a number"),
    ({"crash": "maybe"}, "crash must be true or false"),
    ({"preset": "huge"}, "unknown preset 'huge'; valid presets: smoke, full"),
    ({"seed": "-2"}, "must be >= 0"),
    ({"seed": 1.5}, "seed must be int"),
])
def test_bad_parameters_say_what_is_valid(tiny_nb, overrides, match):
    with pytest.raises(execute.ParameterError, match=match):
        execute.resolve_parameters(tiny_nb, overrides)


def test_presets_of(tiny_nb):
    assert execute.presets_of(tiny_nb) == ["smoke", "full"]


@pytest.mark.parametrize("params, code", [({}, 0), ({"fail_claim": True}, 1), ({"crash": True}, 3)])
def test_execute_exit_codes_and_results(tiny_paper, tmp_path, params, code):
    outcome = execute.execute(tiny_paper, tmp_path, parameters=params)
    assert outcome.exit_code == code
    results = json.loads((tmp_path / "tiny.json").read_text())
    assert results["exit_code"] == code and results["parameters"] == params
    assert (tmp_path / "tiny.ipynb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ipynb", "tiny.json"]
    if code != 3:
        assert results["provenance"]["seed"] == 0 and len(results["claims"]) == 3
    else:
        assert "asked to crash" in results["error"] and "claims" not in results


def test_refresh_copies_outputs_and_stamps(tiny_paper, tmp_path, monkeypatch):
    nb_path = tmp_path / "tiny.ipynb"
    nb_path.write_text((ROOT / FIXTURE).read_text())
    paper = type(tiny_paper)(**{**tiny_paper.__dict__, "notebook": str(nb_path)})
    outcome = execute.execute(paper, tmp_path / "run")
    execute.refresh(paper, outcome.notebook)
    refreshed = nbformat.read(nb_path, as_version=4)
    assert refreshed.metadata["repro"]["preset"] == "smoke"
    assert "papermill" not in refreshed.metadata
    assert all(c.execution_count for c in refreshed.cells if c.cell_type == "code")
    from repro import notebook
    assert notebook.staleness(refreshed) is None
