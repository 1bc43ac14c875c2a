import json

import pytest

from repro import Claims, ClaimsFailed, setup
from repro.claims import RESULTS_ENV, fmt


def test_close_within_less_true():
    c = Claims()
    assert c.close("pi", 3.1416, 3.14159, tol=1e-4, source="s").holds
    assert not c.close("pi", 3.2, 3.14159, tol=1e-4, source="s").holds
    assert c.close("rel", 101, 100, tol=0.02, relative=True, source="s").holds
    assert c.within("range", 0.5, 0, 1, source="s").holds
    assert not c.within("range", 1.5, 0, 1, source="s").holds
    assert c.less("direction", {"A": 1.0}, {"B": 2.0}, source="s").holds
    assert not c.less("factor", {"A": 1.5}, {"B": 2.0}, factor=0.5, source="s").holds
    assert c.true("flag", True, source="s", measured=1, target="1").holds
    assert [x.status for x in c.failed()] == ["FAILS"] * 3


def test_report_raises_only_for_expected_failures(capsys):
    c = Claims()
    c.close("holds", 1.0, 1.0, tol=0, source="s")
    c.close("too small here", 0.1, 1.0, tol=0.1, source="s", expected=False, reason="small model")
    c.report()
    out = capsys.readouterr().out
    assert "not reproduced" in out and "small model" in out
    c.within("fails", 5, 0, 1, source="Fig. 2")
    with pytest.raises(ClaimsFailed, match=r"1 claim\(s\).*fails \(measured 5, target in \[0, 1\]\)"):
        c.report()


def test_not_expected_needs_a_reason_and_statement_needs_source():
    with pytest.raises(ValueError, match="give the reason"):
        Claims().close("x", 1, 1, tol=0, source="s", expected=False)
    with pytest.raises(ValueError, match="source"):
        Claims().close("x", 1, 1, tol=0, source="")


def test_bad_inputs():
    with pytest.raises(TypeError, match="measured must be a number"):
        Claims().close("x", "1", 1, tol=0, source="s")
    with pytest.raises(TypeError, match="one-entry dict"):
        Claims().less("x", 1.0, {"b": 2.0}, source="s")
    with pytest.raises(ValueError, match="no claims"):
        Claims().report()


def test_results_file_written_when_asked(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    monkeypatch.setenv(RESULTS_ENV, str(path))
    cfg = setup("smoke", 4, "cpu", presets={"smoke": {"n": 1}}, quiet=True)
    c = Claims(cfg)
    c.close("a", 2.0, 2.0, tol=0, source="s")
    c.report()
    data = json.loads(path.read_text())
    assert data["all_expected_hold"] and data["claims"][0]["status"] == "holds"
    prov = data["provenance"]
    assert prov["seed"] == 4 and prov["preset"] == "smoke" and prov["peak_memory_mb"] > 0
    assert {"commit", "lib_version", "packages", "device", "wall_time_s"} <= set(prov)


def test_results_written_before_raising(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    monkeypatch.setenv(RESULTS_ENV, str(path))
    c = Claims()
    c.within("fails", 2, 0, 1, source="s")
    with pytest.raises(ClaimsFailed):
        c.report()
    assert json.loads(path.read_text())["all_expected_hold"] is False


@pytest.mark.parametrize("value, text", [(0.123456, "0.1235"), (3, "3"), (2.0, "2"),
                                         ({"a": 1e-7}, "a: 1e-07"), (None, ""), (True, "True"),
                                         (float("nan"), "nan")])
def test_fmt(value, text):
    assert fmt(value) == text
