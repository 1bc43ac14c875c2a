import configparser
import json
import re

import numpy as np
import pytest

from conftest import ROOT
from repro import Claims, ClaimsFailed, setup
from repro.core.claims import (METADATA_KEY, MEASURED_PREFIX, RESULTS_ENV, TIMING_ENV, fmt,
                               interval_verdict)

P = dict(kind="paper", source="s")


def test_close_within_less_true_go_both_ways():
    c = Claims()
    assert c.close("pi", 3.1416, 3.14159, tol=1e-4, **P).verdict == "holds"
    assert c.close("pi", 3.2, 3.14159, tol=1e-4, **P).verdict == "fails"
    assert c.close("pi", 3.1, 3.14159, tol=1e-4, **P).verdict == "fails"  # two-sided
    assert c.close("rel", 101, 100, tol=0.02, relative=True, **P).holds
    assert c.within("range", 0.5, 0, 1, **P).holds and not c.within("range", 1.5, 0, 1, **P).holds
    assert c.less("direction", {"A": 1.0}, {"B": 2.0}, **P).holds
    assert not c.less("factor", {"A": 1.5}, {"B": 2.0}, factor=0.5, **P).holds
    assert not c.less("tie", {"A": 1.0}, {"B": 1.0}, **P).holds
    flag = c.true("flag", np.bool_(False), measured=0, target="1", **P)
    assert flag.holds is False and flag.status == "FAILS"
    assert [x.verdict for x in c.failed()] == ["fails"] * 6


@pytest.mark.parametrize("smaller, larger, u, verdict", [
    (1.0, 2.0, 0.5, "holds"), (1.0, 1.2, 0.5, "inconclusive"), (1.2, 1.0, 0.5, "inconclusive"),
    (2.0, 1.0, 0.5, "fails")])
def test_a_comparison_inside_its_noise_is_inconclusive(smaller, larger, u, verdict):
    claim = Claims().less("a < b", {"a": smaller}, {"b": larger}, uncertainty=u, **P)
    assert claim.verdict == verdict and "by more than 0.5" in claim.target


@pytest.mark.parametrize("measured, u, verdict", [(1.0, 0.01, "holds"), (1.0, 0.2, "inconclusive"),
                                                   (1.5, 0.2, "fails")])
def test_close_with_an_uncertainty(measured, u, verdict):
    assert Claims().close("c", measured, "1.0", tol=0.1, uncertainty=u, **P).verdict == verdict


@pytest.mark.parametrize("slope, se, verdict", [(-0.52, 0.02, "holds"), (-0.3, 0.02, "fails"),
                                                (-0.5, 0.2, "inconclusive"), (-0.75, 0.1, "inconclusive")])
def test_a_rate_is_a_slope_with_its_error_against_the_exponent(slope, se, verdict):
    claim = Claims().rate("n^-1/2", slope, se, -0.5, tol=0.1, kind="theory", source="Thm 1")
    assert claim.verdict == verdict and claim.measured == {"slope": slope, "SE": se}
    assert claim.target == "slope +- 2 SE within -0.5 +- 0.1"


def test_interval_verdict():
    assert interval_verdict(1, 2, 0, 3) == "holds"
    assert interval_verdict(4, 5, 0, 3) == "fails" and interval_verdict(-2, -1, 0, 3) == "fails"
    assert interval_verdict(2, 4, 0, 3) == "inconclusive"


@pytest.mark.parametrize("measured", [float("nan"), float("inf"), {"a": 1.0, "b": float("nan")}])
def test_a_value_that_is_not_finite_fails_with_a_note(measured):
    c = Claims()
    claim = (c.check("x", measured=measured, target="t", holds=True, **P) if isinstance(measured, dict)
             else c.within("x", measured, -1e300, 1e300, **P))
    assert claim.verdict == "fails" and "not finite" in claim.note
    with pytest.raises(ClaimsFailed, match="not finite"):
        c.report()


def test_the_papers_value_keeps_its_printed_digits():
    claim = Claims().close("Jacobian entry", 0.0888348, "0.088834", tol=1e-6, kind="theory", source="Eq. 6")
    assert claim.paper == "0.088834" and claim.holds and claim.target == "within 1e-06 of 0.088834"
    c = Claims()
    c.close("x", 1.0, "1.0", tol=0, **P)
    assert "paper: 1.0 |" in c.table().text()


def test_report_raises_only_for_expected_failures(capsys):
    c = Claims()
    c.close("holds", 1.0, 1.0, tol=0, **P)
    c.close("too small here", 0.1, 1.0, tol=0.1, expected=False, reason="small model", **P)
    c.less("noisy", {"a": 1.0}, {"b": 1.1}, uncertainty=1.0, **P)
    c.report()
    out = capsys.readouterr().out
    assert "not reproduced" in out and "small model" in out and "inconclusive" in out
    c.within("fails", 5, 0, 1, kind="paper", source="Fig. 2")
    with pytest.raises(ClaimsFailed, match=r"1 claim\(s\).*fails \(measured 5, target in \[0, 1\]\)"):
        c.report()


def test_bad_claims_are_refused():
    with pytest.raises(ValueError, match="give the reason"):
        Claims().close("x", 1, 1, tol=0, expected=False, **P)
    with pytest.raises(ValueError, match="source"):
        Claims().close("x", 1, 1, tol=0, kind="paper", source="")
    with pytest.raises(ValueError, match="kind == 'finding', must be one of 'paper', 'theory'"):
        Claims().close("x", 1, 1, tol=0, kind="finding", source="s")
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'kind'"):
        Claims().check("x", source="s", measured=1, target="t", holds=True)
    with pytest.raises(TypeError, match="measured == 'one' is not a number"):
        Claims().close("x", "one", 1, tol=0, **P)
    with pytest.raises(TypeError, match="one-entry dict"):
        Claims().less("x", 1.0, {"b": 2.0}, **P)
    with pytest.raises(ValueError, match="no claims"):
        Claims().report()


def test_results_and_timing_files_written_when_asked(tmp_path, monkeypatch):
    path, timing = tmp_path / "r.json", tmp_path / "t.json"
    monkeypatch.setenv(RESULTS_ENV, str(path))
    monkeypatch.setenv(TIMING_ENV, str(timing))
    cfg = setup("smoke", 4, "cpu", presets={"smoke": {"n": 1}}, overrides={"n": 2}, quiet=True)
    c = Claims(cfg)
    c.close("a", 2.0, 2.0, tol=0, **P)
    c.report()
    data = json.loads(path.read_text())
    assert data["all_expected_hold"] and data["claims"][0]["status"] == "holds"
    assert data["claims"][0]["kind"] == "paper" and data["claims"][0]["verdict"] == "holds"
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
    c.within("fails", 2, 0, 1, **P)
    with pytest.raises(ClaimsFailed):
        c.report()
    assert json.loads(path.read_text())["all_expected_hold"] is False


@pytest.mark.parametrize("value, text", [(0.123456789, "0.123457"), (3, "3"), (2.0, "2"),
                                         ({"a": 1e-7}, "a: 1e-07"), (None, ""), (True, "True"),
                                         (float("nan"), "nan")])
def test_fmt(value, text):
    assert fmt(value) == text


def table(measured, holds=True, uncertainty=0.5):
    c = Claims()
    c.close("a constant", measured, 1.0, tol=0.5, kind="theory", source="Eq. 1")
    c.less("a direction", {"ours": measured}, {"bound": 10.0}, kind="paper", source="Fig. 2",
           uncertainty=uncertainty)
    c.within("a range", 3.0, 0, 1 if not holds else 5, kind="paper", source="Sec. 3", expected=holds,
             reason=None if holds else "too small here", uncertainty=uncertainty / 10)
    c.close("an identity of our code", 1.0, 1.0, tol=0, kind="sanity", source="Eq. 4")
    return c.table()


def sanitize(text):
    """What nbval compares: the text after tests/nbval-sanitize.cfg's replacements."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "tests" / "nbval-sanitize.cfg")
    for section in cfg.sections():
        text = re.sub(cfg[section]["regex"], cfg[section]["replace"], text)
    return text


def test_the_table_groups_by_kind_and_shows_sanity_checks_apart():
    data, metadata = table(1.2345678)._repr_mimebundle_()
    text = data["text/plain"]
    assert text.index("Findings of the paper:") < text.index("Derivations and predictions") \
        < text.index("Sanity checks of our implementation")
    assert f"{MEASURED_PREFIX}1.23457" in text and "1. holds | a direction" in text
    assert data["text/html"].count('<table class="repro-claims">') == 1
    assert data["text/html"].count('<table class="repro-claims sanity">') == 1
    assert '<td class="measured">1.23457</td>' in data["text/html"]
    assert metadata[METADATA_KEY][0]["measured"] == 1.2345678


def test_what_nbval_compares_ignores_measured_digits_but_not_verdicts():
    (a, _), (b, _) = table(1.2345678)._repr_mimebundle_(), table(1.2444)._repr_mimebundle_()
    assert a != b
    for mime in ("text/plain", "text/html"):
        assert sanitize(a[mime]) == sanitize(b[mime])
    c, _ = table(1.2345678, holds=False)._repr_mimebundle_()
    assert sanitize(a["text/plain"]) != sanitize(c["text/plain"])
    assert sanitize(a["text/html"]) != sanitize(c["text/html"])


def test_what_nbval_compares_ignores_the_digits_of_a_measured_uncertainty_but_not_the_verdict():
    a, _ = table(1.2345678)._repr_mimebundle_()
    b, _ = table(1.2345678, uncertainty=0.61)._repr_mimebundle_()
    assert "by more than 0.5" in a["text/plain"] and "(measured +- 0.05)" in a["text/plain"]
    assert a != b
    for mime in ("text/plain", "text/html"):
        assert sanitize(a[mime]) == sanitize(b[mime])
    # an uncertainty larger than the margin makes the comparison inconclusive: that still shows
    c, _ = table(1.2345678, uncertainty=20.0)._repr_mimebundle_()
    for mime in ("text/plain", "text/html"):
        assert sanitize(a[mime]) != sanitize(c[mime])


def test_the_table_shows_the_seeds_of_the_recorded_sweep(tmp_path, monkeypatch):
    sweeps = tmp_path / "data" / "sweeps"
    sweeps.mkdir(parents=True)
    (sweeps / "demo.json").write_text(json.dumps({"seeds": [0, 1, 2, 3, 4], "claims": [
        {"statement": "a constant", "held": [0, 1, 2, 4]}]}))
    monkeypatch.chdir(tmp_path / "data")  # a notebook runs in a folder below the checkout's root
    c = Claims(slug="demo")
    c.close("a constant", 1.0, 1.0, tol=0.5, kind="theory", source="Eq. 1")
    c.close("a new claim", 1.0, 1.0, tol=0.5, kind="theory", source="Eq. 2")
    text = c.table().text()
    assert "seeds: 4 of 5" in text and "seeds: no sweep" in text


@pytest.mark.parametrize("preset, overrides, shown", [("smoke", {}, True), ("full", {}, False),
                                                      ("smoke", {"n": 3}, False)])
def test_only_a_run_like_the_sweep_shows_its_seeds(tmp_path, monkeypatch, preset, overrides, shown):
    sweeps = tmp_path / "data" / "sweeps"
    sweeps.mkdir(parents=True)
    (sweeps / "demo.json").write_text(json.dumps({"seeds": [0, 1], "claims": [
        {"statement": "a constant", "held": [0, 1]}]}))
    monkeypatch.chdir(tmp_path / "data")
    cfg = setup(preset, presets={"smoke": {"n": 2}, "full": {"n": 8}}, overrides=overrides, quiet=True)
    c = Claims(cfg, slug="demo")
    c.close("a constant", 1.0, 1.0, tol=0.5, kind="theory", source="Eq. 1")
    assert ("seeds: 2 of 2" in c.table().text()) == shown


def test_results_are_plain_json():
    c = Claims()
    c.check("values", measured={"nan": float("nan"), "tensor": np.float32(0.5), "n": np.int64(3)},
            target="t", holds=np.bool_(True), **P)
    (claim,) = c.results()["claims"]
    assert claim["measured"] == {"nan": "nan", "tensor": 0.5, "n": 3} and claim["verdict"] == "fails"
    json.dumps(claim, allow_nan=False)
