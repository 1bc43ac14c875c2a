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
    runs = [{"claims": [{"statement": "a", "source": "s", "expected": True, "holds": h,
                         "measured": {"x": v, "y": 1.0}}]} for h, v in [(True, 1.0), (False, 3.0)]]
    (entry,) = sweep.summarise(runs)
    assert (entry["held"], entry["runs"]) == (1, 2)
    assert entry["values"]["x"]["mean"] == 2.0 and entry["values"]["y"]["std"] == 0.0


def test_sweep_on_dask_keeps_going_after_a_failure(tiny_paper, tmp_path):
    summary = sweep.sweep(tiny_paper, [0, 1], {"scale": 0.5}, tmp_path, workers=2)
    assert summary["exit_code"] == 0 and summary["exit_codes"] == {0: 0, 1: 0}
    held = {c["statement"]: c["held"] for c in summary["claims"]}
    assert held == {"one plus one is two": 2, "uniform draws lie in [0, scale]": 2,
                    "the preset sets the number of draws": 2, "the failure switch is off": 2}
    assert (tmp_path / "summary.json").exists() and (tmp_path / "tiny-seed1.json").exists()
    failing = sweep.sweep(tiny_paper, [0, 1], {"crash": True}, tmp_path / "f", workers=2)
    assert failing["exit_code"] == 3 and set(failing["errors"]) == {0, 1}
    assert "seed 0 raised: RuntimeError" in sweep.format_summary(failing)
