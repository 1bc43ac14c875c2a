"""What the site says about each reproduction, read from the committed notebooks and `data/`: its
stored claims, its recorded sweep, the stamp of its outputs (time, memory, device, date,
freshness), its key figure, and its recorded `full` run, if any. The gallery, the summary box of
every paper page, the results explorer and the statistics page all read this one record.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.claims import COUNTED, SWEEPS
from . import catalog, contract, stamps
from .catalog import Paper

FULL_RUNS = Path("data") / "full"  # in the checkout: <slug>.json and <slug>.timing.json of a full run


@dataclass(frozen=True)
class Entry:
    """One reproduction as the site shows it."""

    paper: Paper
    claims: list = field(default_factory=list)   # the stored claims ([] before a first run)
    sweep: dict | None = None                      # data/sweeps/<slug>.json
    stamp: dict = field(default_factory=dict)      # the notebook's metadata["repro"]
    stale: list = field(default_factory=list)      # why the stored outputs are stale ([]: fresh)
    key_figure: bytes | None = None                # the PNG of the cell tagged key-figure
    full_run: dict | None = None                   # data/full/<slug>.json, with its "timing"

    @property
    def counted(self) -> list[dict]:
        return [c for c in self.claims if c.get("kind") in COUNTED]

    @property
    def seeds(self) -> int:
        return len(self.sweep["seeds"]) if self.sweep else 0

    def held_on_every_seed(self, claim: dict) -> bool:
        """Whether `claim` held on every seed of the recorded sweep (without one: on seed 0)."""
        if not self.sweep:
            return claim.get("status") == "holds"
        held = {c["statement"]: c["held"] for c in self.sweep["claims"]}
        return len(held.get(claim["statement"], [])) == self.seeds

    @property
    def findings(self) -> tuple[int, int, int]:
        """(paper and theory claims that held on every seed, paper and theory claims, seeds)."""
        return sum(map(self.held_on_every_seed, self.counted)), len(self.counted), self.seeds

    def findings_text(self) -> str:
        held, total, seeds = self.findings
        on = f"on {seeds} seeds" if seeds else "on seed 0"
        return f"{held} of {total} findings hold {on}"


def key_figure(nb) -> bytes | None:
    """The first PNG among the outputs of the code cell tagged `key-figure`, or None."""
    for cell in contract.code_cells(nb):
        if contract.KEY_FIGURE_TAG in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                png = out.get("data", {}).get("image/png")
                if png:
                    return base64.b64decode(png)
    return None


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def full_run(folder: Path, slug: str) -> dict | None:
    """The recorded `full` run of `slug`: its results file as the harness wrote it, with its timing
    file under "timing" ({} when there is none), or None when no full run was recorded."""
    results = _json(folder / f"{slug}.json")
    return None if results is None else {**results,
                                         "timing": _json(folder / f"{slug}.timing.json") or {}}


def entry(paper: Paper, root: Path) -> Entry:
    nb = contract.read(root / paper.notebook)
    return Entry(paper=paper, claims=contract.stored_claims(nb) or [],
                 sweep=_json(root / SWEEPS / f"{paper.slug}.json"),
                 stamp=dict(nb.metadata.get(stamps.KEY, {})), stale=stamps.staleness(nb),
                 key_figure=key_figure(nb), full_run=full_run(root / FULL_RUNS, paper.slug))


def entries(root: Path) -> list[Entry]:
    """Every reproduction of the checkout at `root`, in the catalog's order."""
    return [entry(p, root) for p in catalog.papers(root / catalog.CATALOG) if p.notebook]
