"""`repro book`: refresh the notebooks whose stored outputs are stale, then build the website.

The committed outputs are the cache: a notebook whose stamp is fresh is not executed, and the book
renders what the repository holds. `jupyter-book build .` at the root builds the same site; this
adds the refresh and turns every Sphinx warning into an error.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from . import catalog, checkout, execute

SITE = Path("_build") / "html" / "index.html"  # in the checkout


def build(*, workers=None, refresh_all=False, echo=print) -> int:
    """Refresh the stale notebooks (every one with `refresh_all`), then run jupyter-book; 0 when the
    site was built."""
    root = checkout.root()
    papers = catalog.with_notebooks()
    todo = papers if refresh_all else list(execute.stale(papers))
    if todo:
        start = time.time()
        outcomes = execute.refresh(todo, workers=workers, on_done=lambda o: echo(
            f"  executed {o.slug}: exit {o.exit_code} in {o.wall_time_s:.1f} s"))
        failed = [o for o in outcomes if o.exit_code != execute.EXIT_OK]
        for o in failed:
            echo(f"FAILED {o.slug} (exit {o.exit_code}): {o.error}")
        if failed:
            echo(f"{len(failed)} notebook(s) failed and keep their old outputs; the site was not built")
            return 1
        echo(f"{len(todo)} notebook(s) refreshed in {time.time() - start:.1f} s")
    echo(f"{len(papers) - len(todo)} notebook(s) up to date: their committed outputs are rendered")
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root),
           "--builder", "html", "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        echo(proc.stdout[-6000:] + proc.stderr[-6000:])
        echo("the book build failed")
        return 1
    echo(f"site: {root / SITE}")
    return 0
