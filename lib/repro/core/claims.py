"""State a paper's claims, check them against what was measured, report them and fail loudly.

A notebook ends with::

    claims = repro.Claims(cfg, slug="self-normalizing-neural-networks")
    claims.close("lambda01 solves the fixed-point equations", lam, "1.0507", tol=5e-5,
                 kind="theory", source="Eq. 14")
    claims.less("SNNs reach a lower training loss than BatchNorm nets", {"SNN": a}, {"BN": b},
                kind="paper", source="Figure 1", uncertainty=se)
    claims.report()

Every claim has a kind: `paper` (a finding the paper states, measured here), `theory` (a derivation,
bound or prediction of the paper, checked numerically), `ours` (a finding of this notebook beyond
the paper) or `sanity` (a check of our own implementation). A notebook's status counts `paper` and
`theory` claims only; the table shows sanity checks apart.

Every verdict can go both ways. A comparison made with an `uncertainty` (a number of standard
errors of the measured effect, say) is `inconclusive` when that uncertainty straddles the target:
it neither holds nor fails. A rate is a fitted slope with its standard error against the paper's
exponent (`rate`). A measured value that is not finite fails the claim, with a note; it is never
compared as a number.

`report` shows the claims table, writes the machine-readable results when the runner asks for them
(environment variable REPRO_RESULTS), and raises ClaimsFailed when a claim that is expected to hold
fails (an inconclusive one does not raise; its verdict is shown).

What a re-run must reproduce on any machine is each claim's statement, kind, source, target and
verdict; the measured numbers differ in their last digits between CPUs (vector kernels round
differently). So the table puts every measured value where a checker can mask it: on its own line,
starting with MEASURED_PREFIX, in the text form, and in a cell of class "measured" in the HTML
form. The full results travel in the output's metadata under METADATA_KEY, where the book and
`repro check` read them. With `slug`, the table also shows on how many seeds each claim held, from
the sweep recorded in data/sweeps/<slug>.json (`repro sweep --record`).
"""
from __future__ import annotations

import html
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import provenance
from .validation import check_choice

RESULTS_ENV = "REPRO_RESULTS"   # where report() writes the results (claims, configuration, provenance)
TIMING_ENV = "REPRO_TIMING"     # where report() writes the run's wall time and peak memory
METADATA_KEY = "repro.claims"
MEASURED_PREFIX = "    measured: "
SWEEPS = Path("data") / "sweeps"  # in the checkout: the recorded multi-seed sweeps
SWEPT_PRESET = "smoke"            # the preset those sweeps run, with nothing overridden
KINDS = {"paper": "Findings of the paper", "theory": "Derivations and predictions of the paper",
         "ours": "Findings of this notebook, beyond the paper",
         "sanity": "Sanity checks of our implementation (not counted)"}
COUNTED = ("paper", "theory")     # the kinds a notebook's status and the scorecard count
VERDICTS = ("holds", "fails", "inconclusive")


class ClaimsFailed(AssertionError):
    """One or more claims expected to hold failed."""


@dataclass
class Claim:
    statement: str          # the paper's finding, in our words
    kind: str               # paper, theory, ours or sanity
    source: str             # where the paper says it: section, equation, figure or table
    measured: object        # a number, or a dict name -> number
    target: str             # the condition checked, in words and numbers
    verdict: str            # holds, fails or inconclusive
    paper: object = None    # the paper's own value as printed ("1.0507"), when it gives one
    expected: bool = True   # False: recorded as not reproducing at this scale
    reason: str | None = None
    note: str | None = None  # why the verdict is what it is, when the numbers do not say it

    @property
    def holds(self) -> bool:
        return self.verdict == "holds"

    @property
    def status(self) -> str:
        if not self.expected:
            return "holds (unexpectedly)" if self.holds else "not reproduced"
        return {"holds": "holds", "fails": "FAILS", "inconclusive": "inconclusive"}[self.verdict]


def fmt(value) -> str:
    """Numbers to 6 significant digits (enough to compare with most printed values)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if float(value).is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def _number(value, name) -> float:
    """A number given as a number or as printed digits ("0.088834")."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise TypeError(f"{name} == {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def _not_finite(measured) -> list[str]:
    """The names of the measured values that are not finite numbers."""
    if isinstance(measured, dict):
        return [f"{k}: {n}" if n else str(k) for k, v in measured.items() for n in _not_finite(v)]
    if isinstance(measured, (int, float)) and not isinstance(measured, bool) or hasattr(measured, "item"):
        return [] if math.isfinite(float(measured)) else [""]
    return []


def interval_verdict(low: float, high: float, target_low: float, target_high: float) -> str:
    """holds when the measured interval [low, high] lies inside the target's, fails when the two
    do not meet, and is inconclusive in between."""
    if target_low <= low and high <= target_high:
        return "holds"
    if high < target_low or low > target_high:
        return "fails"
    return "inconclusive"


class Claims:
    """The list of claims of one run. Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb"""

    def __init__(self, cfg=None, slug: str | None = None):
        self.cfg = cfg
        self.slug = slug
        self.items: list[Claim] = []

    # --- ways to state a claim -------------------------------------------------------------
    def check(self, statement, *, kind, source, measured, target, verdict=None, holds=None, paper=None,
              expected=True, reason=None, note=None) -> Claim:
        """The general form: the caller says what was measured, the target, and the verdict (or
        whether it holds). A measured value that is not finite fails the claim."""
        if not statement or not source:
            raise ValueError("a claim needs a statement and the paper's source (section/figure)")
        check_choice("kind", kind, tuple(KINDS))
        if (verdict is None) == (holds is None):
            raise ValueError(f"claim {statement!r}: give either verdict or holds")
        verdict = verdict if holds is None else ("holds" if holds else "fails")
        check_choice("verdict", verdict, VERDICTS)
        if not expected and not reason:
            raise ValueError(f"claim {statement!r} is expected not to hold: give the reason")
        bad = _not_finite(measured)
        if bad:
            verdict, note = "fails", f"not finite: {', '.join(bad) or fmt(measured)}"
        claim = Claim(statement, kind, source, measured, target, verdict, paper, expected, reason, note)
        self.items.append(claim)
        return claim

    def close(self, statement, measured, paper, *, tol, relative=False, uncertainty=0.0, **kw) -> Claim:
        """|measured - paper| <= tol (tol * |paper| when `relative`), two-sided. `paper` may be the
        printed digits ("0.088834"), which the table shows as printed. With an `uncertainty` u, the
        claim holds when all of [measured - u, measured + u] is within the tolerance, fails when
        none of it is, and is inconclusive otherwise."""
        m, p = _number(measured, "measured"), _number(paper, "paper")
        bound = tol * abs(p) if relative else tol
        target = f"within {fmt(tol)}{' relative' if relative else ''} of {paper if isinstance(paper, str) else fmt(p)}"
        return self._interval(statement, m, uncertainty, p - bound, p + bound, target, paper=paper, **kw)

    def within(self, statement, measured, low, high, *, uncertainty=0.0, **kw) -> Claim:
        """low <= measured <= high, with the same reading of an `uncertainty` as `close`."""
        m = _number(measured, "measured")
        return self._interval(statement, m, uncertainty, low, high, f"in [{fmt(low)}, {fmt(high)}]", **kw)

    def less(self, statement, smaller: dict, larger: dict, *, factor=1.0, uncertainty=0.0, **kw) -> Claim:
        """{name: value} of `smaller` < factor * {name: value} of `larger`. With an `uncertainty` u
        of the difference, it holds when the margin exceeds u, fails when the margin is below -u,
        and is inconclusive when the effect lies inside the noise."""
        (a_name, a), (b_name, b) = _single(smaller, "smaller"), _single(larger, "larger")
        margin, u = factor * b - a, _number(uncertainty, "uncertainty")
        scale = "" if factor == 1 else f"{fmt(factor)} x "
        noise = f" by more than {fmt(u)}" if u else ""
        verdict = "holds" if margin > u else "fails" if margin < -u or (not u and margin == 0) else "inconclusive"
        return self.check(statement, measured={a_name: a, b_name: b}, verdict=verdict,
                          target=f"{a_name} < {scale}{b_name}{noise}", **kw)

    def rate(self, statement, slope, se, exponent, *, tol, sigmas=2.0, **kw) -> Claim:
        """A fitted exponent against the paper's: holds when slope +- sigmas x se lies within
        exponent +- tol, fails when the two intervals do not meet, inconclusive otherwise (the fit
        is too noisy to tell)."""
        s, e, p = _number(slope, "slope"), _number(se, "se"), _number(exponent, "exponent")
        measured = {"slope": s, "SE": e}
        if _not_finite(measured):
            return self.check(statement, measured=measured, target=f"exponent {fmt(p)} +- {fmt(tol)}",
                              verdict="fails", **kw)
        verdict = interval_verdict(s - sigmas * e, s + sigmas * e, p - tol, p + tol)
        return self.check(statement, measured=measured, verdict=verdict, paper=kw.pop("paper", exponent),
                          target=f"slope +- {fmt(sigmas)} SE within {fmt(p)} +- {fmt(tol)}", **kw)

    def true(self, statement, holds, *, measured, target, **kw) -> Claim:
        """A claim whose check is a boolean computed by the notebook (e.g. 'all starts converged')."""
        return self.check(statement, measured=measured, target=target, holds=bool(holds), **kw)

    def _interval(self, statement, m, uncertainty, low, high, target, **kw) -> Claim:
        u = _number(uncertainty, "uncertainty")
        if not math.isfinite(m):
            return self.check(statement, measured=m, target=target, verdict="fails", **kw)
        if u:
            target += f" (measured +- {fmt(u)})"
        return self.check(statement, measured=m, target=target,
                          verdict=interval_verdict(m - u, m + u, low, high), **kw)

    # --- reporting -------------------------------------------------------------------------
    def failed(self) -> list[Claim]:
        return [c for c in self.items if c.expected and c.verdict == "fails"]

    def results(self) -> dict:
        """The claims as plain JSON values (non-finite numbers as strings), and the overall verdict."""
        return {"claims": [jsonable(dict(asdict(c), status=c.status)) for c in self.items],
                "all_expected_hold": not self.failed()}

    def table(self) -> "ClaimsTable":
        """The table, with the seed counts of the recorded sweep when this run is one of its kind
        (its preset, nothing overridden): a full run or an overridden one is not what was swept."""
        swept = self.cfg is None or (self.cfg.preset == SWEPT_PRESET and not self.cfg.overridden)
        path = find_sweep(self.slug) if self.slug and swept else None
        return ClaimsTable(self.results()["claims"], sweep_seeds(path))

    def report(self):
        """Show the table, write the results file when asked, raise if an expected claim failed."""
        if not self.items:
            raise ValueError("no claims were stated")
        _show(self.table())
        for c in self.items:
            if not c.expected:
                print(f"Claim '{c.statement}' is not expected to reproduce at this scale: {c.reason}")
        if os.environ.get(RESULTS_ENV):
            payload = self.results()
            if self.cfg is not None:
                payload["provenance"] = provenance.collect(self.cfg)
            provenance.write_json_atomic(os.environ[RESULTS_ENV], payload)
        if os.environ.get(TIMING_ENV) and self.cfg is not None:
            provenance.write_json_atomic(os.environ[TIMING_ENV], provenance.timing(self.cfg))
        failed = self.failed()
        if failed:
            raise ClaimsFailed(f"{len(failed)} claim(s) expected to hold failed: "
                               + "; ".join(f"{c.statement} (measured {fmt(c.measured)}, "
                                           f"target {c.target}{'; ' + c.note if c.note else ''})"
                                           for c in failed))


def find_sweep(slug: str, start: Path | None = None) -> Path | None:
    """data/sweeps/<slug>.json in the nearest folder above `start` (the notebook's) that has one."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / SWEEPS / f"{slug}.json"
        if path.is_file():
            return path
    return None


def sweep_seeds(path: Path | None) -> dict:
    """{statement: (seeds it held on, seeds run)} of a recorded sweep ({} without one)."""
    if path is None or not path.is_file():
        return {}
    record = json.loads(path.read_text())
    return {c["statement"]: (len(c["held"]), len(record["seeds"])) for c in record["claims"]}


class ClaimsTable:
    """The claims of a run as a notebook shows them, grouped by kind with the sanity checks apart:
    a text and an HTML table whose measured values can be masked (see the module's docstring), with
    the results themselves in the metadata."""

    COLUMNS = ("claim", "source", "paper", "measured", "target", "result", "seeds")

    def __init__(self, claims: list[dict], seeds: dict | None = None):
        self.claims = claims
        self.seeds = seeds or {}

    def _groups(self):
        """(kind, [(number, row)]) in the order of KINDS, numbered through."""
        number, groups = 0, []
        for kind in KINDS:
            rows = []
            for c in (c for c in self.claims if c["kind"] == kind):
                number += 1
                held = self.seeds.get(c["statement"])
                result = c["status"] + (f" ({c['note']})" if c.get("note") else "")
                rows.append((number, {"claim": c["statement"], "source": c["source"],
                                      "paper": fmt(c["paper"]), "measured": fmt(c["measured"]),
                                      "target": c["target"], "result": result,
                                      "seeds": f"{held[0]} of {held[1]}" if held else "no sweep"}))
            if rows:
                groups.append((kind, rows))
        return groups

    def text(self) -> str:
        lines = []
        for kind, rows in self._groups():
            lines.append(f"{KINDS[kind]}:")
            for i, row in rows:
                paper = f" | paper: {row['paper']}" if row["paper"] else ""
                lines += [f"{i:>2}. {row['result']} | {row['claim']}",
                          f"    source: {row['source']}{paper} | target: {row['target']}"
                          f" | seeds: {row['seeds']}",
                          MEASURED_PREFIX + row["measured"].replace("\n", " ")]
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th>{name}</th>" for name in ("#",) + self.COLUMNS)
        tables = {"counted": [], "sanity": []}
        for kind, rows in self._groups():
            body = [f'<tr class="kind"><th colspan="{len(self.COLUMNS) + 1}">{KINDS[kind]}</th></tr>']
            for i, row in rows:
                cells = "".join(f'<td class="{name}">{html.escape(row[name])}</td>' for name in self.COLUMNS)
                verdict = row["result"].split(" ")[0].lower()
                body.append(f'<tr class="claim-{verdict}"><td>{i}</td>{cells}</tr>')
            tables["sanity" if kind == "sanity" else "counted"].append(f"<tbody>{''.join(body)}</tbody>")
        return "".join(f'<table class="repro-claims{" sanity" if name == "sanity" else ""}">'
                       f'<thead><tr>{head}</tr></thead>{"".join(parts)}</table>'
                       for name, parts in tables.items() if parts)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": self.text(), "text/html": self.html()}, {METADATA_KEY: self.claims}

    def __str__(self):
        return self.text()


def jsonable(value):
    """`value` as plain JSON: dicts and lists kept, numbers (numpy and torch scalars included) as
    floats or ints, non-finite floats as the strings 'nan', 'inf' and '-inf', anything else as str."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _single(pair, name):
    if not isinstance(pair, dict) or len(pair) != 1:
        raise TypeError(f"{name} must be a one-entry dict {{name: value}}, got {pair!r}")
    (key, value), = pair.items()
    return key, _number(value, f"{name}[{key!r}]")


def _show(table: ClaimsTable):
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(table)
    else:
        print(table.text())
