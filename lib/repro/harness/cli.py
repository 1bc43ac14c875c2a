"""The `repro` command line: list, run, sweep, check, refresh, new, book.

Exit statuses: 0 every claim expected to hold held; 1 a claim failed; 2 bad input (nothing was
executed); 3 a notebook raised.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import nbformat

from ..core.provenance import write_json_atomic
from . import catalog, checkout, collection, execute, sweep as sweep_mod
from .execute import EXIT_CLAIMS, EXIT_ERROR, EXIT_OK, EXIT_USAGE, ParameterError

RUNS = Path("runs")  # in the checkout


def fail(message: str, code: int = EXIT_USAGE):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def paper_with_notebook(key: str) -> catalog.Paper:
    try:
        paper = catalog.find(key)
    except catalog.UnknownPaper as err:
        fail(str(err))
    if not paper.notebook or not paper.notebook_path.exists():
        fail(f"paper {paper.id} ({paper.slug}) has no notebook yet (status: {paper.status}); "
             f"papers with notebooks: {', '.join(p.slug for p in catalog.with_notebooks())}")
    return paper


def checked_parameters(paper, preset, seed, assignments) -> dict:
    """The papermill parameters of a run: -p KEY=VALUE for a parameter of the notebook or any
    setting of its preset, checked against their types; exit 2 on bad input."""
    try:
        texts = execute.parse_assignments(assignments)
        if preset is not None:
            texts["preset"] = preset
        if seed is not None:
            texts["seed"] = str(seed)
        return execute.run_parameters(nbformat.read(paper.notebook_path, as_version=4), texts)
    except ParameterError as err:
        fail(str(err))


def out_folder(out: Path | None) -> Path:
    return out if out is not None else checkout.root() / RUNS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reprobook")
def main():
    """Executable reproductions of ML papers: run them, sweep seeds, check the collection."""
    try:
        checkout.root()
    except checkout.NoCheckout as err:
        fail(str(err))


@main.command("list")
@click.option("--theme", help="Only papers of this theme.")
@click.option("--status", type=click.Choice(catalog.STATUSES), help="Only papers with this status.")
@click.option("--notebooks", is_flag=True, help="Only papers that have a notebook.")
@click.option("--slugs", is_flag=True, help="Print the slugs alone, one per line (for scripts).")
def list_papers(theme, status, notebooks, slugs):
    """Every paper of the catalog: id, slug, theme, tier and status."""
    if theme and theme not in catalog.THEMES:
        fail(f"unknown theme {theme!r}; valid: {', '.join(catalog.THEMES)}")
    rows = [p for p in catalog.papers() if (not theme or p.theme == theme)
            and (not status or p.status == status) and (not notebooks or p.notebook)]
    if slugs:
        click.echo("\n".join(p.slug for p in rows))
        return
    click.echo(f"{'id':>4}  {'slug':<52} {'theme':<24} tier  status")
    for p in rows:
        click.echo(f"{p.id:>4}  {p.slug[:52]:<52} {p.theme:<24} {p.tier:<4}  {p.status}")
    click.echo(f"{len(rows)} papers")


@main.command()
@click.argument("paper")
@click.option("--preset", help="Preset of the notebook (smoke, full).")
@click.option("--seed", type=int, help="Random seed.")
@click.option("-p", "--param", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Set a parameter of the notebook or any setting of its preset, e.g. -p steps=300 "
                   "(repeatable; checked against the type of its default).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <slug>.ipynb, <slug>.json and <slug>.timing.json [default: runs/].")
@click.option("--cell-timeout", type=click.IntRange(min=1), default=1200, show_default=True,
              help="Seconds one cell may run before the notebook is stopped (a full preset on a CPU "
                   "may need more).")
@click.option("--record", is_flag=True,
              help="With --preset full: keep the run's results and timing in data/full/, which "
                   "the execution statistics page shows.")
def run(paper, preset, seed, assignments, out, cell_timeout, record):
    """Execute PAPER's notebook (a slug or a catalog id) with papermill."""
    p = paper_with_notebook(paper)
    if record and preset != "full":
        fail("--record keeps a full run: add --preset full")
    parameters = checked_parameters(p, preset, seed, assignments)
    click.echo(f"running {p.slug} with {parameters or 'the defaults'} ...")
    outcome = execute.execute(p, out_folder(out), parameters=parameters, timeout=cell_timeout)
    print_outcome(outcome)
    if record:  # a run that raised is kept too: it says where the preset stopped
        folder = checkout.root() / collection.FULL_RUNS
        for made in (Path(outcome.results), Path(outcome.results).with_suffix(".timing.json")):
            write_json_atomic(folder / made.name, json.loads(made.read_text()))
        click.echo(f"  recorded in {folder}")
    sys.exit(outcome.exit_code)


def print_outcome(outcome):
    results = json.loads(Path(outcome.results).read_text()) if Path(outcome.results).exists() else {}
    for claim in results.get("claims", []):
        click.echo(f"  [{claim['status']:>14}] {claim['statement']}")
    verdict = {EXIT_OK: "every claim expected to hold held", EXIT_CLAIMS: "a claim failed",
               EXIT_ERROR: "the notebook raised"}[outcome.exit_code]
    click.echo(f"{outcome.slug}: {verdict} ({outcome.wall_time_s:.1f} s)")
    if outcome.error:
        click.echo(f"  {outcome.error}", err=True)
    config = results.get("provenance", {}).get("config")
    if config:
        click.echo("  configuration: " + ", ".join(f"{k}={v!r}" for k, v in config.items()))
    click.echo(f"  notebook: {outcome.notebook}\n  results:  {outcome.results}")


@main.command()
@click.argument("paper")
@click.option("--seeds", default="0-4", show_default=True, help="Seeds: a range 0-4 or a list 0,3,7.")
@click.option("--preset", help="Preset of the notebook (smoke, full).")
@click.option("-p", "--param", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Set a parameter or preset setting for every seed (repeatable).")
@click.option("--workers", type=int, help="Local dask workers (default: one per core).")
@click.option("--scheduler", help="Address of a running dask scheduler to use instead.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the runs and the sweep summary [default: runs/].")
@click.option("--record", is_flag=True,
              help="Keep the sweep in data/sweeps/<slug>.json: the notebook's table and the scorecard "
                   "show its seed counts (smoke preset, no -p).")
def sweep(paper, seeds, preset, assignments, workers, scheduler, out, record):
    """Run PAPER over several seeds in parallel on dask and summarise each claim."""
    if workers is not None and scheduler:
        fail("give --workers or --scheduler, not both")
    if record and (assignments or preset not in (None, sweep_mod.SWEPT_PRESET)):
        fail("--record keeps a sweep of the notebook as committed: the smoke preset, without -p")
    if workers is not None and workers < 1:
        fail(f"--workers == {workers}, must be >= 1")
    try:
        seed_list = sweep_mod.parse_seeds(seeds)
    except ValueError as err:
        fail(str(err))
    p = paper_with_notebook(paper)
    parameters = checked_parameters(p, preset, None, assignments)
    click.echo(f"sweeping {p.slug} over seeds {seed_list} ...")
    summary = sweep_mod.sweep(p, seed_list, parameters, out_folder(out) / f"{p.slug}-sweep",
                              workers=workers, scheduler=scheduler,
                              on_done=lambda o: click.echo(f"  {o.parameters.get('seed')}: exit {o.exit_code}"
                                                           + (f" ({o.error.splitlines()[0]})" if o.error else "")))
    click.echo(sweep_mod.format_summary(summary))
    if record and summary["exit_code"] == EXIT_ERROR:
        click.echo("not recorded: a seed raised", err=True)
    elif record:
        click.echo(f"recorded {sweep_mod.record(p, summary)}; `repro refresh {p.slug}` shows it in the table")
    sys.exit(summary["exit_code"])


@main.command()
def check():
    """Every notebook follows the contract and is fresh; papers.yaml agrees with notebooks and TOC."""
    from .check import problems

    found = problems()
    for where, what in found:
        click.echo(f"{where}: {what}")
    if found:
        fail(f"{len(found)} problem(s)", code=1)
    click.echo(f"ok: {len(catalog.with_notebooks())} notebooks follow the contract; "
               f"{len(catalog.papers())} papers in the catalog agree with the notebooks and the TOC")


@main.command()
@click.argument("paper", required=False)
@click.option("--all", "all_", is_flag=True, help="Refresh every notebook.")
@click.option("--stale", is_flag=True, help="Refresh the notebooks whose stored outputs are stale.")
@click.option("--workers", type=int, help="Parallel executions (default: one per core).")
def refresh(paper, all_, stale, workers):
    """Re-execute committed notebooks at smoke, seed 0, and store their stamped outputs."""
    if (paper is not None) + all_ + stale != 1:
        fail("give one of PAPER, --all or --stale")
    if paper is not None:
        papers = [paper_with_notebook(paper)]
    elif all_:
        papers = catalog.with_notebooks()
    else:
        found = execute.stale(catalog.with_notebooks())
        for p, reasons in found.items():
            click.echo(f"stale {p.slug}: {'; '.join(reasons)}")
        papers = list(found)
        if not papers:
            click.echo("every notebook is up to date")
    worst = EXIT_OK
    for outcome in sorted(execute.refresh(papers, workers=workers), key=lambda o: o.slug):
        if outcome.exit_code == EXIT_OK:
            click.echo(f"refreshed {outcome.slug} ({outcome.wall_time_s:.1f} s)")
        else:
            click.echo(f"NOT refreshed {outcome.slug}: exit {outcome.exit_code}: {outcome.error}", err=True)
            worst = max(worst, outcome.exit_code)
    sys.exit(worst)


@main.command()
@click.argument("paper")
@click.option("--bibkey", help="Citation key for book/references.bib (default: from the slug).")
def new(paper, bibkey):
    """Scaffold a notebook for PAPER from its catalog entry, and register it in papers.yaml and the TOC."""
    from .scaffold import create

    try:
        p = catalog.find(paper)
    except catalog.UnknownPaper as err:
        fail(str(err))
    try:
        path = create(p, bibkey)
    except FileExistsError as err:
        fail(str(err))
    click.echo(f"created {path}; fill in the TODOs, then `repro refresh {p.slug}` and `repro check`")


@main.command()
@click.option("--workers", type=int, help="Parallel notebook executions (default: one per core).")
@click.option("--all", "all_", is_flag=True, help="Re-execute every notebook, even up-to-date ones.")
def book(workers, all_):
    """Refresh the stale notebooks (in parallel), then build the website from the committed outputs."""
    from .book import build

    sys.exit(build(workers=workers, refresh_all=all_, echo=click.echo))


if __name__ == "__main__":  # pragma: no cover
    main()
