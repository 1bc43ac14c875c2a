"""What the book costs at the collection's full size, measured on a synthetic book of N notebooks.

    python benchmarks/book_at_scale.py --notebooks 250

In a scratch clone of the committed repository, the real notebooks are copied (with their committed
outputs and stamps) onto catalog entries that have no notebook yet, until the book has N of them.
After `make setup` there, it measures:

- fresh_book_s: the first `make book` (every stamp is fresh, so it must execute no notebook);
- noop_rebuild_s: `make book` again, with nothing changed;
- one_notebook_rebuild_s: `make book` after one notebook's code changed (it re-executes that one);
- projected_ci_s: `make test` on a fresh clone: set-up, unit tests, `repro check`, the book and the
  browser test measured at N, plus nbval's executions projected as N x the median smoke time of the
  real notebooks (from their stamps) / 2 parallel workers.

The last line printed is one JSON object with those four keys and the parts they were made of.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2  # nbval's -n in the Makefile


def run(cmd: str, cwd: Path, check=True) -> tuple[float, str]:
    """Run a shell command in `cwd`; its wall time and output."""
    start = time.time()
    proc = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True)
    seconds = time.time() - start
    print(f"  {seconds:7.1f} s  {cmd}", flush=True)
    if check and proc.returncode != 0:
        sys.exit(f"`{cmd}` failed in {cwd} (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return round(seconds, 1), proc.stdout + proc.stderr


def synthesize(clone: Path, n: int) -> list[dict]:
    """Copy the real notebooks onto catalog entries without one until the book has `n`; returns
    the real notebooks' catalog rows."""
    catalog_file, toc_file = clone / "data" / "papers.yaml", clone / "_toc.yml"
    rows = yaml.safe_load(catalog_file.read_text())
    real = [r for r in rows if r.get("notebook")]
    spare = [r for r in rows if not r.get("notebook")]
    if not len(real) <= n <= len(rows):
        sys.exit(f"--notebooks must be between {len(real)} (the real notebooks) and {len(rows)} "
                 f"(the catalog's papers), not {n}")
    toc = yaml.safe_load(toc_file.read_text())
    part_of = {c["file"]: part for part in toc["parts"] for c in part.get("chapters", [])}
    for i, row in enumerate(spare[:n - len(real)]):
        source = real[i % len(real)]
        path = f"notebooks/{source['theme']}/{row['slug']}.ipynb"
        nb = nbformat.read(clone / source["notebook"], as_version=4)
        nb.cells[0].source = nb.cells[0].source.replace(source["link"], row["link"])  # as `repro check` wants
        nbformat.write(nb, clone / path)
        row.update(notebook=path, theme=source["theme"], status=source["status"])
        part_of[source["notebook"].removesuffix(".ipynb")]["chapters"].append(
            {"file": path.removesuffix(".ipynb")})
    header = "".join(line for line in catalog_file.read_text().splitlines(keepends=True) if line.startswith("#"))
    catalog_file.write_text(header + yaml.safe_dump(rows, sort_keys=False, allow_unicode=True, width=100))
    toc_file.write_text(yaml.safe_dump(toc, sort_keys=False))
    return real


def smoke_seconds(clone: Path, real: list[dict]) -> dict:
    """The smoke time each real notebook's stamp records (executed two at a time, as in CI)."""
    return {r["slug"]: nbformat.read(clone / r["notebook"], as_version=4).metadata["repro"]["smoke_seconds"]
            for r in real}


def edit_one(clone: Path, notebook: str) -> None:
    """Change a code cell of `notebook`: its stamp goes stale, so the book must re-execute it."""
    path = clone / notebook
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "repro.setup(" in c.source)
    cell.source += "\n# an edit made by benchmarks/book_at_scale.py"
    nbformat.write(nb, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=int, required=True, help="notebooks in the synthetic book")
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="book-at-scale-"))
    clone = scratch / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    real = synthesize(clone, args.notebooks)
    print(f"synthesized a book of {args.notebooks} notebooks in {clone}", flush=True)
    result = {"notebooks": args.notebooks}
    try:
        result["setup_s"], _ = run("make setup", clone)
        result["fresh_book_s"], out = run("make book", clone)
        if "executed " in out:
            sys.exit(f"a fresh `make book` executed notebooks:\n{out[-3000:]}")
        result["noop_rebuild_s"], out = run("make book", clone)
        if "no targets are out of date" not in run(".venv/bin/jupyter-book build .", clone)[1]:
            sys.exit("an unchanged book re-rendered pages")
        # timed only: some tests name the real notebooks, which the copies outnumber here
        result["unit_tests_s"], _ = run(".venv/bin/python -m pytest -q -n 2 tests --ignore=tests/browser "
                                        "--ignore=tests/colab", clone, check=False)
        result["check_s"], _ = run(".venv/bin/repro check", clone)
        result["browser_test_s"], _ = run(".venv/bin/python -m pytest -q tests/browser", clone)
        times = smoke_seconds(clone, real)
        result["median_smoke_s"] = statistics.median(times.values())
        result["nbval_projected_s"] = round(args.notebooks * result["median_smoke_s"] / WORKERS, 1)
        # the real notebook whose smoke time is the median one: a typical edit
        typical = min(real, key=lambda r: abs(times[r["slug"]] - result["median_smoke_s"]))
        edit_one(clone, typical["notebook"])
        result["one_notebook_rebuild_s"], out = run("make book", clone)
        result["edited"] = typical["slug"]
        result["projected_ci_s"] = round(sum(result[k] for k in ("setup_s", "unit_tests_s", "nbval_projected_s",
                                                                 "check_s", "fresh_book_s", "browser_test_s")), 1)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
