import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from repro.harness import catalog, cli, collection


@pytest.fixture
def runner():
    return CliRunner()


def test_list(runner):
    result = runner.invoke(cli.main, ["list"])
    assert result.exit_code == 0 and f"{len(catalog.papers())} papers" in result.output
    assert "weight-normalization" in result.output
    result = runner.invoke(cli.main, ["list", "--theme", "nope"])
    assert result.exit_code == 2 and "unknown theme" in result.output
    result = runner.invoke(cli.main, ["list", "--notebooks", "--slugs"])
    assert result.exit_code == 0
    assert result.output.split() == [p.slug for p in catalog.with_notebooks()]


@pytest.mark.parametrize("args, message", [
    (["run", "weight-normalisation"], "did you mean: weight-normalization"),
    (["run", "5"], "has no notebook yet"),
    (["new", "weight-normalization"], "already exists"),
    (["new", "nope-nope-nope"], "unknown paper"),
    (["refresh"], "give one of PAPER, --all or --stale"),
    (["refresh", "adam", "--stale"], "give one of PAPER, --all or --stale"),
])
def test_bad_paper_exits_2(runner, args, message):
    result = runner.invoke(cli.main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("args, message", [
    (["run", "tiny", "--preset", "huge"], "unknown preset 'huge'; valid presets: smoke, full"),
    (["run", "tiny", "-p", "nonsense=1"], "unknown parameter(s) nonsense"),
    (["run", "tiny", "-p", "nonsense=1"], "settings of preset 'smoke': draws (default 2)"),
    (["run", "tiny", "-p", "draws=many"], "draws == 'many' is not a int"),
    (["run", "tiny", "-p", "seed=x"], "seed == 'x' is not a int"),
    (["run", "tiny", "-p", "scale"], "KEY=VALUE"),
    (["run", "tiny", "--cell-timeout", "0"], "x>=1"),
    (["run", "tiny", "--record"], "--record keeps a full run: add --preset full"),
    (["sweep", "tiny", "--seeds", "4-0"], "backwards"),
    (["sweep", "tiny", "--preset", "huge"], "unknown preset"),
    (["sweep", "tiny", "--workers", "2", "--scheduler", "tcp://x:1"], "not both"),
    (["sweep", "tiny", "--workers", "0"], "must be >= 1"),
])
def test_bad_input_exits_2_before_any_work(runner, monkeypatch, tiny_paper, args, message):
    monkeypatch.setattr(cli.catalog, "find", lambda key: tiny_paper)
    monkeypatch.setattr(cli.execute, "execute", lambda *a, **k: pytest.fail("executed"))
    monkeypatch.setattr(cli.sweep_mod, "sweep", lambda *a, **k: pytest.fail("executed"))
    result = runner.invoke(cli.main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("args, code", [([], 0), (["-p", "fail_claim=true"], 1), (["-p", "crash=true"], 3)])
def test_run_exit_status(runner, monkeypatch, tiny_paper, tmp_path, args, code):
    monkeypatch.setattr(cli.catalog, "find", lambda key: tiny_paper)
    result = runner.invoke(cli.main, ["run", "tiny", "--seed", "2", "--out", str(tmp_path), *args])
    assert result.exit_code == code, result.output
    data = json.loads((tmp_path / "tiny.json").read_text())
    assert data["parameters"]["seed"] == 2 and data["exit_code"] == code


def test_run_with_a_preset_setting_shows_it(runner, monkeypatch, tiny_paper, tmp_path):
    monkeypatch.setattr(cli.catalog, "find", lambda key: tiny_paper)
    result = runner.invoke(cli.main, ["run", "tiny", "-p", "draws=4", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "'overrides': {'draws': 4}" in result.output and "draws=4" in result.output
    assert json.loads((tmp_path / "tiny.json").read_text())["provenance"]["config"]["draws"] == 4


def test_run_passes_the_cell_timeout(runner, monkeypatch, tiny_paper, tmp_path):
    monkeypatch.setattr(cli.catalog, "find", lambda key: tiny_paper)
    seen = {}

    def fake_execute(paper, out, *, parameters, timeout):
        seen["timeout"] = timeout
        raise SystemExit(0)

    monkeypatch.setattr(cli.execute, "execute", fake_execute)
    runner.invoke(cli.main, ["run", "tiny", "--out", str(tmp_path), "--cell-timeout", "1800"])
    assert seen == {"timeout": 1800}
    runner.invoke(cli.main, ["run", "tiny", "--out", str(tmp_path)])
    assert seen == {"timeout": 1200}


def test_sweep_command(runner, monkeypatch, tiny_paper, tmp_path):
    monkeypatch.setattr(cli.catalog, "find", lambda key: tiny_paper)
    result = runner.invoke(cli.main, ["sweep", "tiny", "--seeds", "0-1", "--workers", "2",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "held 2/2: one plus one is two" in result.output


def test_outside_a_checkout_the_command_says_it_needs_one(tmp_path):
    code = ("import sys, repro.harness.checkout as c; "
            "c.is_checkout = lambda path: False; "  # as from a plain install, run elsewhere
            "sys.argv = ['repro', 'list']; from repro.harness.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "works on a checkout of the repository" in proc.stderr and "git clone" in proc.stderr


def test_run_records_a_full_run_for_the_statistics_page(runner, monkeypatch, tiny_paper, tmp_path):
    monkeypatch.setattr(cli.catalog, "find", lambda key: tiny_paper)
    monkeypatch.setattr(cli.collection, "FULL_RUNS", tmp_path / "full")  # absolute: wins
    result = runner.invoke(cli.main, ["run", "tiny", "--preset", "full", "--record",
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run = collection.full_run(tmp_path / "full", "tiny")
    assert run["parameters"]["preset"] == "full" and run["exit_code"] == 0
    assert run["provenance"]["device"].startswith("cpu") and run["claims"]
    assert run["timing"]["wall_time_s"] > 0 and run["timing"]["notebook"]["peak_memory_mb"] > 0
