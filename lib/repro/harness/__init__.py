"""The harness: the `repro` command line, notebook execution, stamps, checks, sweeps and the book.

It runs notebooks and never runs inside one: no science module imports it. Its dependencies
(papermill, dask, jupyter-book, click) are the `harness` extra of the distribution, so installing
the library alone (as a notebook in Colab does) pulls none of them.
"""
import sys


def main():
    """The `repro` script: the command line, or a clear message when its packages are missing."""
    try:
        from .cli import main as cli
    except ModuleNotFoundError as err:
        sys.exit(f"error: the repro command needs the harness's packages ({err.name} is missing). "
                 "In a checkout of the repository: pip install -e '.[harness]' (or make book).")
    cli()
