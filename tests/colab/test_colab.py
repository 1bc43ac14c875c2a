"""Do the notebooks run on Google Colab, as a reader's first click runs them?

On Colab the library is missing and the packages are Colab's: the notebook's first cell pip-installs
`reprobook`, which must add what is missing without changing any package Colab ships (an upgraded
numpy or torch breaks the preinstalled packages that depend on them), and the notebook must then
run with Colab's older pandas, IPython and ipykernel, and its claims hold.

This test builds a virtual environment with Colab's versions of the packages that matter (PINS) in
.cache/colab-venv (reused while PINS is unchanged), records its `pip freeze`, and for each notebook
returns the environment to that freeze (no reprobook), executes the notebook with the environment's
own Python and kernel, installing the library from this checkout (REPRO_PIP_SPEC), and checks that
it ran, that every expected claim held, and that every pinned package kept its version.

Opt-in (`make colab`, `pytest tests/colab`): building the environment takes minutes. Notebooks:
Deep Sets and Adam by default; REPRO_COLAB_NOTEBOOKS=all runs every notebook of data/papers.yaml,
REPRO_COLAB_NOTEBOOKS=a.ipynb,b.ipynb the ones named (paths from the checkout).
"""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / "colab-venv"
PYTHON = VENV / "bin" / "python"
PINS_FILE = VENV / "colab-pins.txt"      # the pins the venv was built with: rebuild when they change
FREEZE_FILE = VENV / "colab-freeze.txt"  # its `pip freeze` right after the build: each run starts here
RUNS = ROOT / ".cache" / "colab-runs"    # the executed notebooks, for reading a failure's outputs
RUNNER = Path(__file__).with_name("run_notebook.py")

# Colab's versions (torch 2.13.0: the CPU wheel on this machine's disk; any other is a huge download)
PINS = {
    "torch": "2.13.0",
    "numpy": "2.0.2",
    "pandas": "2.2.2",
    "scipy": "1.15.3",
    "scikit-learn": "1.6.1",
    "matplotlib": "3.10.0",
    "seaborn": "0.13.2",
    "requests": "2.32.4",
    "ipython": "7.34.0",
    "ipykernel": "6.17.1",
    "jupyter-client": "7.4.9",
    "tornado": "6.4.2",
    "nbclient": "0.10.2",
}
DEFAULT_NOTEBOOKS = ["notebooks/representation-learning/deep-sets.ipynb",
                     "notebooks/optimization/adam.ipynb"]


def notebooks():
    choice = os.environ.get("REPRO_COLAB_NOTEBOOKS", "")
    if choice == "all":
        papers = yaml.safe_load((ROOT / "data/papers.yaml").read_text())
        return [p["notebook"] for p in papers if p.get("notebook")]
    return choice.split(",") if choice else DEFAULT_NOTEBOOKS


def venv_env(**extra):
    """This process's environment, minus what points at the project's own venv or configures repro."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REPRO_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{VENV / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(VENV), **extra)
    return env


def sh(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=venv_env(), **kw)


def pip(*args):
    return sh(str(PYTHON), "-m", "pip", *args)


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(text):
    """{normalized name: version} from `pip freeze` lines `name==version` or `name @ url`."""
    pkgs = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==") if "==" in line else line.partition(" @ ")
        if sep:
            pkgs[normalize(name.strip())] = version.strip()
    return pkgs


def freeze():
    return parse_freeze(pip("freeze").stdout)


def pin_list():
    return "\n".join(f"{name}=={version}" for name, version in PINS.items()) + "\n"


def build_venv():
    shutil.rmtree(VENV, ignore_errors=True)
    sh("python3.11", "-m", "venv", str(VENV))
    pip("install", "--quiet", *pin_list().split())
    FREEZE_FILE.write_text(pip("freeze").stdout)
    PINS_FILE.write_text(pin_list())  # last: a half-built venv is rebuilt next time


@pytest.fixture(scope="session")
def baseline():
    """The Colab-like venv's recorded `pip freeze`, building the venv first when its pins changed."""
    if not (PYTHON.exists() and PINS_FILE.exists() and PINS_FILE.read_text() == pin_list()):
        start = time.time()
        try:
            build_venv()
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", None) or err
            pytest.fail(f"could not build the Colab-like venv in {VENV}: {detail}", pytrace=False)
        print(f"\nbuilt {VENV} in {time.time() - start:.0f} s; its pip freeze: {FREEZE_FILE}")
    return parse_freeze(FREEZE_FILE.read_text())


def reset(baseline):
    """Put the venv back to its recorded freeze: remove what the last notebook installed (reprobook
    and its new dependencies), reinstall any version it changed, so every notebook starts alike."""
    now = freeze()
    added = [name for name in now if name not in baseline]
    if added:
        pip("uninstall", "--yes", *added)
    changed = [f"{name}=={v}" for name, v in baseline.items() if now.get(name) != v]
    if changed:
        pip("install", "--quiet", "--no-deps", *changed)


def public(version):
    return version.split("+")[0]  # torch's local label: 2.13.0+cpu is the pinned 2.13.0


@pytest.mark.parametrize("notebook", [pytest.param(nb, id=Path(nb).stem) for nb in notebooks()])
def test_notebook_runs_on_colab(notebook, baseline, tmp_path):
    path = ROOT / notebook
    reset(baseline)
    assert "reprobook" not in freeze(), "reprobook must be missing at the start, as on Colab"

    results = tmp_path / "results.json"
    # Colab's pip builds the library from a fresh clone in a temporary folder; here it builds from
    # the checkout, so setuptools' build/ and egg-info go to tmp_path instead of into the checkout.
    build_cfg = tmp_path / "setuptools.cfg"
    build_cfg.write_text(f"[build]\nbuild_base = {tmp_path / 'build'}\n[egg_info]\negg_base = {tmp_path}\n")
    env = venv_env(REPRO_PIP_SPEC=str(ROOT), REPRO_RESULTS=str(results), DIST_EXTRA_CONFIG=str(build_cfg))
    RUNS.mkdir(parents=True, exist_ok=True)
    executed = RUNS / path.name
    start = time.time()
    run = subprocess.run([str(PYTHON), str(RUNNER), str(path), str(executed)], cwd=path.parent,
                         env=env, capture_output=True, text=True, timeout=3 * 3600)
    print(f"\n{notebook}: {time.time() - start:.0f} s (executed copy: {executed})")
    assert run.returncode == 0, f"{notebook} failed on Colab's versions:\n{run.stderr[-6000:]}"

    assert results.exists(), f"{notebook} wrote no results to REPRO_RESULTS"
    report = json.loads(results.read_text())
    failing = [c["statement"] for c in report["claims"] if c["expected"] and not c["holds"]]
    assert report["all_expected_hold"], f"claims expected to hold that failed: {failing}"
    # the kernel was the Colab-like venv's: it saw Colab's pandas, not the project venv's
    assert report["provenance"]["packages"]["pandas"] == PINS["pandas"]

    after = freeze()
    moved = {name: f"{version} -> {after.get(normalize(name))}" for name, version in PINS.items()
             if public(after.get(normalize(name), "missing")) != version}
    assert not moved, f"installing reprobook changed Colab's pinned packages: {moved}"
    assert "reprobook" in after, "the notebook's first cell did not install reprobook"
