import configparser
import json
import re

import numpy as np
import pytest

from conftest import ROOT

from repro import Claims, ClaimsFailed, setup
from repro.core.claims import METADATA_KEY, MEASURED_PREFIX, RESULTS_ENV, TIMING_ENV, fmt


def test_close_within_less_true():
    c = Claims()
    assert c.close("pi", 3.1416, 3.14159, tol=1e-4, source="s").holds
    assert not c.close("pi", 3.2, 3.14159, tol=1e-4, source="s").holds
    assert c.close("rel", 101, 100, tol=0.02, relative=True, source="s").holds
    assert c.within("range", 0.5, 0, 1, source="s").holds
    assert not c.within("range", 1.5, 0, 1, source="s").holds
    assert c.less("direction", {"A": 1.0}, {"B": 2.0}, source="s").holds
    assert not c.less("factor", {"A": 1.5}, {"B": 2.0}, factor=0.5, source="s").holds
    flag = c.true("flag", np.bool_(False), source="s", measured=0, target="1")
    assert flag.holds is False and flag.status == "FAILS"
    assert [x.status for x in c.failed()] == ["FAILS"] * 4


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


def test_results_and_timing_files_written_when_asked(tmp_path, monkeypatch):
    path, timing = tmp_path / "r.json", tmp_path / "t.json"
    monkeypatch.setenv(RESULTS_ENV, str(path))
    monkeypatch.setenv(TIMING_ENV, str(timing))
    cfg = setup("smoke", 4, "cpu", presets={"smoke": {"n": 1}}, overrides={"n": 2}, quiet=True)
    c = Claims(cfg)
    c.close("a", 2.0, 2.0, tol=0, source="s")
    c.report()
    data = json.loads(path.read_text())
    assert data["all_expected_hold"] and data["claims"][0]["status"] == "holds"
    prov = data["provenance"]
    assert prov["seed"] == 4 and prov["preset"] == "smoke" and prov["config"]["n"] == 2
    assert prov["overridden"] == {"n": 1}
    assert {"commit", "lib_version", "packages", "device"} <= set(prov)
    assert "wall_time_s" not in json.dumps(data)  # what differs between re-runs goes elsewhere
    assert json.loads(timing.read_text())["peak_memory_mb"] > 0


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


def table(measured, holds=True):
    c = Claims()
    c.close("a constant", measured, 1.0, tol=0.5, source="Eq. 1")
    c.less("a direction", {"ours": measured}, {"bound": 10.0}, source="Fig. 2")
    c.within("a range", 3.0, 0, 1 if not holds else 5, source="Sec. 3", expected=holds,
             reason=None if holds else "too small here")
    return c.table()


def sanitize(text):
    """What nbval compares: the text after tests/nbval-sanitize.cfg's replacements."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "tests" / "nbval-sanitize.cfg")
    for section in cfg.sections():
        text = re.sub(cfg[section]["regex"], cfg[section]["replace"], text)
    return text


def test_the_table_shows_everything_and_keeps_the_results_in_its_metadata():
    data, metadata = table(1.2345678)._repr_mimebundle_()
    assert f"{MEASURED_PREFIX}1.235" in data["text/plain"] and "1. holds | a constant" in data["text/plain"]
    assert '<td class="measured">1.235</td>' in data["text/html"]
    assert metadata[METADATA_KEY][0]["measured"] == 1.2345678


def test_what_nbval_compares_ignores_measured_digits_but_not_verdicts():
    (a, _), (b, _) = table(1.2345678)._repr_mimebundle_(), table(1.2444)._repr_mimebundle_()
    assert a != b
    for mime in ("text/plain", "text/html"):
        assert sanitize(a[mime]) == sanitize(b[mime])
    c, _ = table(1.2345678, holds=False)._repr_mimebundle_()
    assert sanitize(a["text/plain"]) != sanitize(c["text/plain"])
    assert sanitize(a["text/html"]) != sanitize(c["text/html"])


def test_results_are_plain_json():
    c = Claims()
    c.check("values", source="s", measured={"nan": float("nan"), "tensor": np.float32(0.5), "n": np.int64(3)},
            target="t", holds=np.bool_(True))
    (claim,) = c.results()["claims"]
    assert claim["measured"] == {"nan": "nan", "tensor": 0.5, "n": 3} and claim["holds"] is True
    json.dumps(claim, allow_nan=False)
