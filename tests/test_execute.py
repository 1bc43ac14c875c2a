import json
import os

import nbformat
import pytest

from conftest import FIXTURE, ROOT
from repro.harness import execute, stamps


@pytest.fixture(scope="module")
def tiny_nb():
    return nbformat.read(ROOT / FIXTURE, as_version=4)


def test_parse_assignments():
    assert execute.parse_assignments(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(execute.ParameterError, match="KEY=VALUE"):
        execute.parse_assignments(["nokey"])


def test_parameters_and_preset_settings_are_typed_by_their_defaults(tiny_nb):
    params = execute.run_parameters(tiny_nb, {"seed": "3", "scale": "2", "crash": "true",
                                              "preset": "full", "draws": "5", "label": "xl"})
    assert params == {"seed": 3, "scale": 2.0, "crash": True, "preset": "full",
                      "overrides": {"draws": 5, "label": "xl"}}


@pytest.mark.parametrize("texts, match", [
    ({"steps": "3"}, r"unknown parameter\(s\) steps; this notebook takes: preset \(default 'smoke'\).*"
                     r"and the settings of preset 'smoke': draws \(default 2\), label \(default 'small'\)"),
    ({"seed": "abc"}, "seed == 'abc' is not a int"),
    ({"seed": "1.5"}, "seed == 1.5 is a float; the preset's value 0 is a int"),
    ({"scale": "big"}, "scale == 'big' is not a float"),
    ({"crash": "3"}, "crash == 3 is a int"),
    ({"draws": "2.5"}, "draws == 2.5 is a float"),
    ({"preset": "huge"}, "unknown preset 'huge'; valid presets: smoke, full"),
    ({"seed": "-2"}, "must be >= 0"),
])
def test_bad_parameters_say_what_is_valid(tiny_nb, texts, match):
    with pytest.raises(execute.ParameterError, match=match):
        execute.run_parameters(tiny_nb, texts)


@pytest.mark.parametrize("params, code", [({}, 0), ({"fail_claim": True}, 1), ({"crash": True}, 3)])
def test_execute_exit_codes_and_results(tiny_paper, tmp_path, params, code):
    outcome = execute.execute(tiny_paper, tmp_path, parameters=params)
    assert outcome.exit_code == code
    results = json.loads((tmp_path / "tiny.json").read_text())
    assert results["exit_code"] == code and results["parameters"] == params
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ipynb", "tiny.json", "tiny.timing.json"]
    if code != 3:
        assert results["provenance"]["seed"] == 0 and len(results["claims"]) == 4
        timing = json.loads((tmp_path / "tiny.timing.json").read_text())
        assert timing["wall_time_s"] > 0 and timing["notebook"]["peak_memory_mb"] > 0
    else:
        assert "asked to crash" in results["error"] and "claims" not in results


def test_an_override_reaches_the_run_and_its_results(tiny_paper, tmp_path):
    outcome = execute.execute(tiny_paper, tmp_path, parameters={"overrides": {"draws": 7}})
    assert outcome.exit_code == 0
    provenance = json.loads((tmp_path / "tiny.json").read_text())["provenance"]
    assert provenance["config"]["draws"] == 7 and provenance["overridden"] == {"draws": 2}


def test_one_seed_gives_an_identical_results_file(tiny_paper, tmp_path):
    texts = []
    for run in ("a", "b"):
        execute.execute(tiny_paper, tmp_path / run, parameters={"seed": 5})
        texts.append((tmp_path / run / "tiny.json").read_text())
    assert texts[0] == texts[1]


def test_refresh_stores_outputs_and_stamps(tiny_paper, tmp_path, monkeypatch):
    nb_path = tmp_path / "tiny.ipynb"
    nb_path.write_text((ROOT / FIXTURE).read_text())
    paper = type(tiny_paper)(**{**tiny_paper.__dict__, "notebook": str(nb_path)})
    assert execute.stale([paper]) == {paper: ["no stamp: its outputs were not produced by `repro refresh`"]}
    monkeypatch.setattr(execute.checkout, "root", lambda: tmp_path)
    (outcome,) = execute.refresh([paper], workers=1)
    assert outcome.exit_code == 0
    refreshed = nbformat.read(nb_path, as_version=4)
    assert refreshed.metadata["repro"]["smoke_seconds"] == outcome.wall_time_s
    assert refreshed.metadata["repro"]["peak_memory_mb"] > 0
    assert refreshed.metadata["repro"]["device"].startswith("cpu")
    assert "papermill" not in refreshed.metadata
    assert all(c.execution_count for c in refreshed.cells if c.cell_type == "code")
    assert stamps.staleness(refreshed) == [] and execute.stale([paper]) == {}


def test_a_failing_refresh_leaves_the_notebook_as_it_was(tiny_paper, tmp_path, monkeypatch):
    nb_path = tmp_path / "tiny.ipynb"
    source = (ROOT / FIXTURE).read_text().replace("fail_claim = False", "fail_claim = True")
    nb_path.write_text(source)
    paper = type(tiny_paper)(**{**tiny_paper.__dict__, "notebook": str(nb_path)})
    monkeypatch.setattr(execute.checkout, "root", lambda: tmp_path)
    (outcome,) = execute.refresh([paper], workers=1)
    assert outcome.exit_code == 1 and nb_path.read_text() == source


def test_the_kernel_does_not_inherit_dasks_malloc_trimming(tiny_paper, tmp_path, monkeypatch):
    """dask's workers set MALLOC_TRIM_THRESHOLD_=65536; a kernel that inherited it ran 1.7x slower."""
    import papermill
    seen = {}

    def fake_execute_notebook(*args, **kwargs):
        seen["trim"] = os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")
        raise RuntimeError("stop here")

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(papermill, "execute_notebook", fake_execute_notebook)
    outcome = execute.execute(tiny_paper, tmp_path)
    assert seen == {"trim": "unset"} and outcome.exit_code == 3
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # the parent's environment is restored
