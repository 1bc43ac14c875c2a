"""Execute notebooks: one run with papermill, many on dask, and the smoke cache the book uses.

A run executes the notebook with the given parameters, lets its claims cell write the claims and
provenance (through REPRO_RESULTS), and leaves `<slug>.ipynb` and `<slug>.json` in the output folder,
each written whole or not at all.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import notebook
from .catalog import ROOT, Paper
from .claims import RESULTS_ENV
from .provenance import write_json_atomic
from .train import QUIET_ENV

EXIT_OK, EXIT_CLAIMS, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
CACHE = ROOT / "_build" / "executed"


class ParameterError(ValueError):
    """A parameter the notebook does not have, a value of the wrong type, or an unknown preset."""


@dataclass
class Outcome:
    """What one execution gave: the exit status and where the notebook and results are."""

    slug: str
    exit_code: int
    notebook: str
    results: str
    parameters: dict
    wall_time_s: float
    error: str | None = None
    cached: bool = False


# --- parameters -------------------------------------------------------------------------------
def presets_of(nb) -> list[str]:
    """The preset names of the notebook's `PRESETS = {...}` table (read without executing it)."""
    for cell in nb.cells:
        if cell.cell_type != "code" or "PRESETS" not in cell.source:
            continue
        for node in ast.parse(cell.source).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                    and any(isinstance(t, ast.Name) and t.id == "PRESETS" for t in node.targets)):
                return [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
    return []


def _convert(name: str, raw, default):
    if not isinstance(raw, str):
        value = raw
    elif isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ParameterError(f"parameter {name} must be true or false, got {raw!r}")
        value = raw.lower() in ("true", "1")
    elif isinstance(default, int):
        try:
            value = int(raw)
        except ValueError:
            raise ParameterError(f"parameter {name} must be an int, got {raw!r}") from None
    elif isinstance(default, float):
        try:
            value = float(raw)
        except ValueError:
            raise ParameterError(f"parameter {name} must be a number, got {raw!r}") from None
    else:
        value = raw
    expected = float if isinstance(default, float) else type(default)
    if isinstance(value, int) and expected is float and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or isinstance(value, bool) != isinstance(default, bool):
        raise ParameterError(f"parameter {name} must be {expected.__name__}, got {value!r}")
    return value


def resolve_parameters(nb, overrides: dict) -> dict:
    """Check `overrides` against the notebook's parameters cell and presets; return the full set.

    Raises ParameterError, saying what is valid, before anything is executed."""
    defaults = notebook.parameters(nb)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; this notebook takes: "
                             + ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()))
    values = dict(defaults)
    for name, raw in overrides.items():
        values[name] = _convert(name, raw, defaults[name])
    valid = presets_of(nb)
    if valid and values.get("preset") not in valid:
        raise ParameterError(f"unknown preset {values.get('preset')!r}; valid presets: {', '.join(valid)}")
    if values.get("seed", 0) < 0:
        raise ParameterError(f"seed == {values['seed']}, must be >= 0")
    return values


def parse_assignments(pairs) -> dict:
    """['lr=0.1', 'preset=full'] -> {'lr': '0.1', 'preset': 'full'} (converted later by type)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParameterError(f"parameter {pair!r} must be written KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


# --- one execution ----------------------------------------------------------------------------
@contextlib.contextmanager
def _environment(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _strip_run_metadata(nb) -> None:
    """Drop papermill's and nbclient's per-run metadata (timings) so committed diffs stay small."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)


def execute(paper: Paper, out_dir: Path, *, parameters: dict | None = None, timeout: int = 1200,
            name: str | None = None) -> Outcome:
    """Execute `paper`'s notebook with `parameters` (already checked) into `out_dir`.

    Writes `<name>.ipynb` and `<name>.json` (name defaults to the slug) atomically. Never raises for
    a failing notebook: the outcome says what happened (exit 0, 1 claims failed, 3 raised)."""
    import papermill

    src = paper.notebook_path
    name = name or paper.slug
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb_path, json_path = out_dir / f"{name}.ipynb", out_dir / f"{name}.json"
    parameters = dict(parameters or {})
    start = time.time()
    error, exit_code = None, EXIT_OK
    with tempfile.TemporaryDirectory(prefix="repro-") as tmp:
        tmp_nb, tmp_results = Path(tmp) / "out.ipynb", Path(tmp) / "results.json"
        with _environment(**{RESULTS_ENV: tmp_results, QUIET_ENV: 1, "PYTHONUNBUFFERED": 1}):
            try:
                papermill.execute_notebook(str(src), str(tmp_nb), parameters=parameters,
                                           cwd=str(src.parent), kernel_name="python3",
                                           progress_bar=False, log_output=False,
                                           execution_timeout=timeout,
                                           # the kernel's warning about unencrypted local TCP is noise here
                                           extra_arguments=["--IPKernelApp.log_level=ERROR"])
            except papermill.PapermillExecutionError as err:
                claims_failed = err.ename == "ClaimsFailed" and tmp_results.exists()
                exit_code = EXIT_CLAIMS if claims_failed else EXIT_ERROR
                error = f"{err.ename}: {err.evalue} (cell In [{err.exec_count}])"
            except Exception as err:  # a kernel that died, a timeout, an unreadable notebook
                exit_code, error = EXIT_ERROR, f"{type(err).__name__}: {err}"
        results = json.loads(tmp_results.read_text()) if tmp_results.exists() else {}
        if exit_code == EXIT_OK and not results:
            exit_code, error = EXIT_ERROR, "the notebook finished without reporting its claims"
        if tmp_nb.exists():  # copy beside the target, then rename: atomic on any file system
            partial = out_dir / f".{name}.ipynb.tmp"
            shutil.copyfile(tmp_nb, partial)
            os.replace(partial, nb_path)
    outcome = Outcome(slug=paper.slug, exit_code=exit_code, notebook=str(nb_path),
                      results=str(json_path), parameters=parameters,
                      wall_time_s=round(time.time() - start, 2), error=error)
    payload = {"paper": {"id": paper.id, "slug": paper.slug, "title": paper.title},
               "parameters": parameters, "exit_code": exit_code, "error": error,
               "wall_time_s": outcome.wall_time_s, **results}
    write_json_atomic(json_path, payload)
    return outcome


# --- many executions on dask ------------------------------------------------------------------
def run_many(jobs: list[tuple], *, workers: int | None = None, scheduler: str | None = None,
             on_done=None) -> list[Outcome]:
    """Run `execute(*job)` for every job on dask: a LocalCluster of single-threaded worker
    processes (notebooks set process-wide state), or the scheduler at `scheduler`. A job that
    fails does not stop the others; `on_done(outcome)` is called as each finishes."""
    from dask.distributed import Client, LocalCluster, as_completed

    if not jobs:
        return []
    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    outcomes = []
    try:
        futures = [client.submit(_execute_safely, *job, pure=False) for job in jobs]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return outcomes


def _execute_safely(paper, out_dir, parameters, name=None):
    try:
        return execute(paper, out_dir, parameters=parameters, name=name)
    except Exception as err:  # keep the batch going; report the failure as this job's outcome
        return Outcome(slug=paper.slug, exit_code=EXIT_ERROR, notebook="", results="",
                       parameters=parameters, wall_time_s=0.0,
                       error=f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")


# --- the smoke cache and refresh ----------------------------------------------------------------
def smoke_key(nb) -> str:
    """What a smoke execution depends on: the code cells, lib/repro and the parameters."""
    payload = json.dumps({"code": notebook.code_hash(nb), "lib": notebook.lib_hash(),
                          "parameters": notebook.parameters(nb)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cached_outcome(paper: Paper, cache: Path = CACHE) -> dict | None:
    """The cached smoke results of `paper` when they are still valid for its current code and lib."""
    path = cache / f"{paper.slug}.json"
    if not path.exists() or not (cache / f"{paper.slug}.ipynb").exists():
        return None
    results = json.loads(path.read_text())
    nb = nbformat.read(paper.notebook_path, as_version=4)
    if results.get("smoke_key") != smoke_key(nb) or results.get("exit_code") != EXIT_OK:
        return None
    return results


def execute_smoke(papers: list[Paper], *, workers: int | None = None, cache: Path = CACHE,
                  force: bool = False, on_done=None) -> tuple[list[Outcome], list[Paper]]:
    """Execute the notebooks whose smoke results are missing or out of date, in parallel.

    Returns the new outcomes and the papers that were skipped as up to date."""
    todo, skipped = [], []
    for paper in papers:
        (skipped if not force and cached_outcome(paper, cache) else todo).append(paper)
    keys = {p.slug: smoke_key(nbformat.read(p.notebook_path, as_version=4)) for p in todo}
    outcomes = run_many([(p, cache, {}) for p in todo], workers=workers, on_done=on_done)
    for outcome in outcomes:
        if outcome.results and Path(outcome.results).exists():
            results = json.loads(Path(outcome.results).read_text())
            results["smoke_key"] = keys[outcome.slug]
            write_json_atomic(outcome.results, results)
    return outcomes, skipped


def refresh(paper: Paper, outcome_notebook: Path) -> None:
    """Copy a smoke execution's outputs into the committed notebook and stamp them.

    Only the outputs and execution counts travel; the source cells stay the committed ones."""
    executed = nbformat.read(outcome_notebook, as_version=4)
    source = nbformat.read(paper.notebook_path, as_version=4)
    if [c.source for c in executed.cells] != [c.source for c in source.cells]:
        raise RuntimeError(f"{outcome_notebook} was not executed from the current {paper.notebook}")
    for src_cell, run_cell in zip(source.cells, executed.cells):
        if src_cell.cell_type == "code":
            src_cell.outputs = run_cell.outputs
            src_cell.execution_count = run_cell.execution_count
    _strip_run_metadata(source)
    notebook.stamp(source)
    tmp = paper.notebook_path.with_suffix(".ipynb.tmp")
    nbformat.write(source, tmp)
    os.replace(tmp, paper.notebook_path)
