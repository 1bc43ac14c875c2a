"""Run one paper over many seeds and summarise, per claim, how often it held and what it measured."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from ..core.claims import SWEEPS, SWEPT_PRESET, fmt
from ..core.provenance import write_json_atomic
from . import checkout, contract, stamps
from .execute import EXIT_CLAIMS, EXIT_ERROR, EXIT_OK, run_many


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]; ranges and lists may be mixed."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = map(int, part.split("-"))
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise ValueError(f"seeds {text!r}: write a range like 0-4 or a list like 0,3,7 (non-negative)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {text!r} repeat a seed")
    return seeds


def _numbers(measured, prefix=""):
    """Flatten a claim's measured value (a number or a dict of numbers) to name -> number."""
    if isinstance(measured, dict):
        out = {}
        for k, v in measured.items():
            out.update(_numbers(v, f"{prefix}{k}"))
        return out
    if isinstance(measured, (int, float)) and not isinstance(measured, bool):
        return {prefix or "value": float(measured)}
    return {}


def summarise(results: dict) -> list[dict]:
    """Per claim of {seed: results} (matched by statement, in order): its verdict on every seed, the
    seeds where it held, and the mean and spread of each measured value."""
    claims = {}
    for seed, run in sorted(results.items()):
        for c in run.get("claims", []):
            entry = claims.setdefault(c["statement"], {
                "statement": c["statement"], "kind": c["kind"], "source": c["source"],
                "expected": c["expected"], "verdicts": {}, "held": [], "values": {}})
            entry["verdicts"][str(seed)] = c["verdict"]
            if c["verdict"] == "holds":
                entry["held"].append(seed)
            for name, value in _numbers(c["measured"]).items():
                entry["values"].setdefault(name, []).append(value)
    for entry in claims.values():
        entry["values"] = {name: {"mean": statistics.fmean(v),
                                  "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                                  "min": min(v), "max": max(v)}
                           for name, v in entry["values"].items()}
    return list(claims.values())


def sweep(paper, seeds, parameters, out_dir: Path, *, workers=None, scheduler=None, on_done=None) -> dict:
    """Execute `paper` once per seed on dask; write and return the summary."""
    jobs = [(paper, out_dir, {**parameters, "seed": s}, f"{paper.slug}-seed{s}") for s in seeds]
    outcomes = sorted(run_many(jobs, workers=workers, scheduler=scheduler, on_done=on_done),
                      key=lambda o: o.parameters["seed"])
    results = {o.parameters["seed"]: json.loads(Path(o.results).read_text()) for o in outcomes
               if o.results and Path(o.results).exists()}
    errors = {o.parameters["seed"]: o.error for o in outcomes if o.exit_code == EXIT_ERROR}
    codes = [o.exit_code for o in outcomes]
    summary = {"paper": paper.slug, "seeds": seeds, "parameters": parameters,
               "exit_codes": dict(zip([o.parameters["seed"] for o in outcomes], codes)),
               "errors": errors, "claims": summarise(results),
               "exit_code": EXIT_ERROR if EXIT_ERROR in codes else EXIT_CLAIMS if EXIT_CLAIMS in codes else EXIT_OK}
    write_json_atomic(Path(out_dir) / "summary.json", summary)
    return summary


def record(paper, summary: dict) -> Path:
    """Keep a sweep of the committed notebook (smoke, no other parameters) in data/sweeps/<slug>.json,
    with the stamp of what it ran: the table shows its seed counts, `repro check` when it is stale."""
    nb = contract.read(paper.notebook_path)
    path = checkout.root() / SWEEPS / f"{paper.slug}.json"
    write_json_atomic(path, {"paper": paper.slug, "seeds": summary["seeds"], "preset": SWEPT_PRESET,
                             "stamp": stamps.current(nb, sweep=False), "exit_codes": summary["exit_codes"],
                             "claims": summary["claims"]})
    return path


def format_summary(summary: dict) -> str:
    lines = [f"{summary['paper']}: {len(summary['seeds'])} seeds"]
    for c in summary["claims"]:
        tag = "" if c["expected"] else " (expected not to reproduce)"
        others = {v: [s for s, w in c["verdicts"].items() if w == v] for v in ("fails", "inconclusive")}
        detail = "".join(f"; {v} on seeds {', '.join(s)}" for v, s in others.items() if s)
        lines.append(f"  held {len(c['held'])}/{len(c['verdicts'])}{tag}: {c['statement']}  "
                     f"[{c['kind']}, {c['source']}]{detail}")
        for name, s in c["values"].items():
            lines.append(f"      {name}: mean {fmt(s['mean'])}, std {fmt(s['std'])}, "
                         f"range [{fmt(s['min'])}, {fmt(s['max'])}]")
    for seed, error in summary["errors"].items():
        lines.append(f"  seed {seed} raised: {error.splitlines()[0] if error else ''}")
    return "\n".join(lines)
