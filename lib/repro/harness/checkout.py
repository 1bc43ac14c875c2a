"""Where the checkout is: the harness works on a clone of the repository (its notebooks, catalog and
book), not on an installed copy of the library."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import repro

REPOSITORY = "https://github.com/reprobook/reprobook"
MARKERS = ("data/papers.yaml", "_toc.yml", "notebooks")


class NoCheckout(RuntimeError):
    """The harness was run outside a checkout of the repository."""


def is_checkout(path: Path) -> bool:
    return all((path / marker).exists() for marker in MARKERS)


@lru_cache(maxsize=None)
def root() -> Path:
    """The checkout the harness works on: $REPRO_ROOT, else the one the library is installed from
    (an editable install), else the current directory or one above it."""
    if os.environ.get("REPRO_ROOT"):
        candidates = [Path(os.environ["REPRO_ROOT"])]
    else:
        here = Path.cwd().resolve()
        candidates = [Path(repro.__file__).resolve().parents[2], here, *here.parents]
    for path in candidates:
        if is_checkout(path):
            return path
    raise NoCheckout(
        "the repro command works on a checkout of the repository (its notebooks, catalog and "
        f"book), and none was found here. Run it inside one: git clone {REPOSITORY} && cd reprobook "
        "&& make book (or set REPRO_ROOT to a checkout).")
