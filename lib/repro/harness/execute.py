"""Execute notebooks: one run with papermill, many on dask, and refreshing committed notebooks.

A run executes the notebook with the given parameters, lets its claims cell write the results
(through REPRO_RESULTS) and the timing (REPRO_TIMING), and leaves `<name>.ipynb`, `<name>.json`
(claims, configuration, provenance: the same on every re-run of one seed on one machine) and
`<name>.timing.json` in the output folder, each written whole or not at all.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..core import presets
from ..core.claims import RESULTS_ENV, TIMING_ENV
from ..core.provenance import write_json_atomic
from ..core.train import QUIET_ENV
from . import checkout, contract, stamps
from .catalog import Paper

EXIT_OK, EXIT_CLAIMS, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


class ParameterError(ValueError):
    """A parameter or setting the notebook does not have, a value of the wrong type, or an unknown preset."""


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


# --- parameters -------------------------------------------------------------------------------
def parse_assignments(pairs) -> dict:
    """['lr=0.1', 'preset=full'] -> {'lr': '0.1', 'preset': 'full'} (typed later, by the defaults)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParameterError(f"parameter {pair!r} must be written KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def run_parameters(nb, assignments: dict) -> dict:
    """The papermill parameters of a run from KEY=VALUE texts: a key of the parameters cell is
    typed by its default; any other key must be a setting of the chosen preset, typed by the
    preset's value, and goes into `overrides`. Raises ParameterError, saying what is valid,
    before anything is executed."""
    defaults = contract.parameters(nb)
    table = contract.presets(nb)
    try:
        params = {k: presets.parse(k, v, defaults[k]) for k, v in assignments.items() if k in defaults}
        preset = params.get("preset", defaults.get("preset"))
        if table and preset not in table:
            raise ParameterError(f"unknown preset {preset!r}; valid presets: {', '.join(table)}")
        settings = table.get(preset, {})
        unknown = sorted(set(assignments) - set(defaults) - set(settings))
        if unknown:
            raise ParameterError(
                f"unknown parameter(s) {', '.join(unknown)}; this notebook takes: "
                f"{presets.describe(defaults)}; and the settings of preset {preset!r}: "
                f"{presets.describe(settings) or 'none'}")
        overrides = {k: presets.parse(k, v, settings[k]) for k, v in assignments.items()
                     if k not in defaults}
    except presets.PresetError as err:
        raise ParameterError(str(err)) from None
    if params.get("seed", 0) < 0:
        raise ParameterError(f"seed == {params['seed']}, must be >= 0")
    if overrides:
        params["overrides"] = {**params.get("overrides", defaults.get("overrides", {})), **overrides}
    return params


# --- one execution ----------------------------------------------------------------------------
@contextlib.contextmanager
def _environment(**values):
    """Set (or, for None, unset) environment variables for the duration of the block."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
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

    Writes `<name>.ipynb`, `<name>.json` and `<name>.timing.json` (name defaults to the slug)
    atomically. Never raises for a failing notebook: the outcome says what happened (exit 0,
    1 claims failed, 3 raised)."""
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
        tmp_nb, tmp_results, tmp_timing = (Path(tmp) / f for f in ("out.ipynb", "results.json", "timing.json"))
        env = {RESULTS_ENV: tmp_results, TIMING_ENV: tmp_timing, QUIET_ENV: 1, "PYTHONUNBUFFERED": 1,
               # dask's worker processes set it to 65536, and the kernel would inherit it: glibc then
               # returns freed memory to the system at once, which made notebooks run 1.7x slower
               "MALLOC_TRIM_THRESHOLD_": None}
        with _environment(**env):
            try:
                papermill.execute_notebook(str(src), str(tmp_nb), parameters=parameters,
                                           cwd=str(src.parent), kernel_name="python3",
                                           progress_bar=False, log_output=False,
                                           execution_timeout=timeout,
                                           # one write at the end: saving after every cell cost
                                           # about 1.5 s of a 20 s notebook
                                           request_save_on_cell_execute=False,
                                           # the kernel's warning about unencrypted local TCP is noise here
                                           extra_arguments=["--IPKernelApp.log_level=ERROR"])
            except papermill.PapermillExecutionError as err:
                claims_failed = err.ename == "ClaimsFailed" and tmp_results.exists()
                exit_code = EXIT_CLAIMS if claims_failed else EXIT_ERROR
                error = f"{err.ename}: {err.evalue} (cell In [{err.exec_count}])"
            except Exception as err:  # a kernel that died, a timeout, an unreadable notebook
                exit_code, error = EXIT_ERROR, f"{type(err).__name__}: {err}"
        results = json.loads(tmp_results.read_text()) if tmp_results.exists() else {}
        timing = json.loads(tmp_timing.read_text()) if tmp_timing.exists() else {}
        if exit_code == EXIT_OK and not results:
            exit_code, error = EXIT_ERROR, "the notebook finished without reporting its claims"
        if tmp_nb.exists():  # copy beside the target, then rename: atomic on any file system
            partial = out_dir / f".{name}.ipynb.tmp"
            shutil.copyfile(tmp_nb, partial)
            os.replace(partial, nb_path)
    outcome = Outcome(slug=paper.slug, exit_code=exit_code, notebook=str(nb_path),
                      results=str(json_path), parameters=parameters,
                      wall_time_s=round(time.time() - start, 2), error=error)
    write_json_atomic(json_path, {"paper": {"id": paper.id, "slug": paper.slug, "title": paper.title},
                                  "parameters": parameters, "exit_code": exit_code, "error": error,
                                  **results})
    write_json_atomic(out_dir / f"{name}.timing.json", {"wall_time_s": outcome.wall_time_s,
                                                        "notebook": timing})
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
                               dashboard_address=":0", silence_logs=40)  # any free port: no warning
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


# --- refreshing the committed notebooks ------------------------------------------------------
def stale(papers: list[Paper]) -> dict:
    """{paper: reasons} for the papers whose committed outputs are stale (see `stamps.staleness`)."""
    found = {}
    for paper in papers:
        reasons = stamps.staleness(contract.read(paper.notebook_path))
        if reasons:
            found[paper] = reasons
    return found


def refresh(papers: list[Paper], *, workers: int | None = None, on_done=None) -> list[Outcome]:
    """Execute `papers` at smoke, seed 0, in parallel, and store each successful execution's
    outputs in its committed notebook with a new stamp; a failing one leaves its notebook as it
    was. Returns the outcomes."""
    executed = checkout.root() / "_build" / "executed"
    by_slug = {p.slug: p for p in papers}

    def store(outcome):
        if outcome.exit_code == EXIT_OK:
            store_outputs(by_slug[outcome.slug], Path(outcome.notebook), outcome.wall_time_s,
                          **run_record(Path(outcome.results)))
        if on_done:
            on_done(outcome)
    return run_many([(p, executed, {}) for p in papers], workers=workers, on_done=store)


def run_record(results: Path) -> dict:
    """The peak memory and device of the execution whose results file is `results` (beside it, its
    timing file), as `stamps.stamp` takes them; None where a file lacks them."""
    timing = results.with_suffix(".timing.json")
    memory = json.loads(timing.read_text()).get("notebook", {}).get("peak_memory_mb") \
        if timing.is_file() else None
    device = json.loads(results.read_text()).get("provenance", {}).get("device") \
        if results.is_file() else None
    return {"peak_memory_mb": memory, "device": device}


def store_outputs(paper: Paper, executed_notebook: Path, seconds: float, *,
                  peak_memory_mb: float | None = None, device: str | None = None) -> None:
    """Copy an execution's outputs into the committed notebook and stamp them.

    Only the outputs and execution counts travel; the source cells stay the committed ones."""
    executed = nbformat.read(executed_notebook, as_version=4)
    source = nbformat.read(paper.notebook_path, as_version=4)
    if [c.source for c in executed.cells] != [c.source for c in source.cells]:
        raise RuntimeError(f"{executed_notebook} was not executed from the current {paper.notebook}")
    for src_cell, run_cell in zip(source.cells, executed.cells):
        if src_cell.cell_type == "code":
            src_cell.outputs = run_cell.outputs
            src_cell.execution_count = run_cell.execution_count
    _strip_run_metadata(source)
    stamps.stamp(source, seconds=seconds, peak_memory_mb=peak_memory_mb, device=device)
    tmp = paper.notebook_path.with_suffix(".ipynb.tmp")
    nbformat.write(source, tmp)
    os.replace(tmp, paper.notebook_path)
