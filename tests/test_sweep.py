import json

import pytest

from repro.harness import sweep


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,3,7", [0, 3, 7]),
                                         ("0-1,5", [0, 1, 5])])
def test_parse_seeds(text, seeds):
    assert sweep.parse_seeds(text) == seeds


@pytest.mark.parametrize("text, match", [("4-0", "backwards"), ("a", "range like 0-4"),
                                         ("-1", "range like"), ("1,1", "repeat")])
def test_bad_seeds(text, match):
    with pytest.raises(ValueError, match=match):
        sweep.parse_seeds(text)


def test_summarise_counts_and_spreads():
    runs = {seed: {"claims": [{"statement": "a", "kind": "paper", "source": "s", "expected": True,
                               "verdict": v, "measured": {"x": x, "y": 1.0}}]}
            for seed, v, x in [(3, "holds", 1.0), (5, "inconclusive", 3.0), (7, "holds", 2.0)]}
    (entry,) = sweep.summarise(runs)
    assert entry["held"] == [3, 7] and entry["verdicts"] == {"3": "holds", "5": "inconclusive", "7": "holds"}
    assert entry["values"]["x"]["mean"] == 2.0 and entry["values"]["y"]["std"] == 0.0
    text = sweep.format_summary({"paper": "p", "seeds": [3, 5, 7], "claims": [entry], "errors": {}})
    assert "held 2/3: a  [paper, s]; inconclusive on seeds 5" in text


def test_sweep_on_dask_keeps_going_after_a_failure(tiny_paper, tmp_path):
    summary = sweep.sweep(tiny_paper, [0, 1], {"scale": 0.5}, tmp_path, workers=2)
    assert summary["exit_code"] == 0 and summary["exit_codes"] == {0: 0, 1: 0}
    held = {c["statement"]: c["held"] for c in summary["claims"]}
    assert held == {"one plus one is two": [0, 1], "uniform draws lie in [0, scale]": [0, 1],
                    "the preset sets the number of draws": [0, 1], "the failure switch is off": [0, 1]}
    assert (tmp_path / "summary.json").exists() and (tmp_path / "tiny-seed1.json").exists()
    failing = sweep.sweep(tiny_paper, [0, 1], {"crash": True}, tmp_path / "f", workers=2)
    assert failing["exit_code"] == 3 and set(failing["errors"]) == {0, 1}
    assert "seed 0 raised: RuntimeError" in sweep.format_summary(failing)


def test_record_keeps_the_sweep_with_its_stamp(tiny_paper, tmp_path, monkeypatch):
    from dataclasses import replace

    from conftest import FIXTURE, ROOT
    from repro.harness import check, contract, stamps
    tiny_paper = replace(tiny_paper, notebook=str(ROOT / FIXTURE))  # found wherever the root is
    monkeypatch.setattr(sweep.checkout, "root", lambda: tmp_path)
    summary = {"seeds": [0, 1], "exit_codes": {0: 0, 1: 0},
               "claims": [{"statement": "one plus one is two", "held": [0, 1]}]}
    path = sweep.record(tiny_paper, summary)
    record = json.loads(path.read_text())
    assert path == tmp_path / "data" / "sweeps" / "tiny.json" and record["seeds"] == [0, 1]
    nb = contract.read(tiny_paper.notebook_path)
    assert record["stamp"] == stamps.current(nb, sweep=False)
    problems = check.sweep_problems(tmp_path, tiny_paper, nb)
    assert any("2 seed(s) recorded, at least 5 needed" in p for p in problems)
    nb.cells[4].source += "\nchanged = True"
    assert any("sweep: stale, its code cells changed" in p for p in check.sweep_problems(tmp_path, tiny_paper, nb))
    assert "none recorded" in check.sweep_problems(tmp_path / "elsewhere", tiny_paper, nb)[0]
