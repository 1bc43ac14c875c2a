"""State a paper's claims, check them against what was measured, report them and fail loudly.

A notebook ends with::

    claims = repro.Claims(cfg)
    claims.close("SELU's lambda solves the fixed-point equations", lam, paper=1.0507,
                 tol=1e-4, source="Sec. 3, Eq. 8")
    claims.less("SELU trains a 32-layer net better than ReLU", {"SELU": selu_loss}, {"ReLU": relu_loss}, ...)
    claims.report()

`report` shows the claims table, writes the machine-readable results when the runner asks for them
(environment variable REPRO_RESULTS), and raises ClaimsFailed when a claim that is expected to hold
does not.

What a re-run must reproduce on any machine is each claim's statement, source, target and verdict;
the measured numbers differ in their last digits between CPUs (vector kernels round differently).
So the table puts every measured value where a checker can mask it: on its own line, starting with
MEASURED_PREFIX, in the text form, and in a cell of class "measured" in the HTML form. The full
results travel in the output's metadata under METADATA_KEY, where the book and `repro check` read
them.
"""
from __future__ import annotations

import html
import math
import os
from dataclasses import asdict, dataclass

from . import provenance

RESULTS_ENV = "REPRO_RESULTS"   # where report() writes the results (claims, configuration, provenance)
TIMING_ENV = "REPRO_TIMING"     # where report() writes the run's wall time and peak memory
METADATA_KEY = "repro.claims"
MEASURED_PREFIX = "    measured: "


class ClaimsFailed(AssertionError):
    """One or more claims expected to hold did not."""


@dataclass
class Claim:
    statement: str          # the paper's finding, in our words
    source: str             # where the paper says it: section, equation, figure or table
    measured: object        # a number, or a dict name -> number
    target: str             # the condition checked, in words and numbers
    holds: bool
    paper: object = None    # the paper's own number, when it gives one
    expected: bool = True   # False: recorded as not reproducing at this scale
    reason: str | None = None

    @property
    def status(self) -> str:
        if self.expected:
            return "holds" if self.holds else "FAILS"
        return "holds (unexpectedly)" if self.holds else "not reproduced"


def fmt(value) -> str:
    """Round numbers to 4 significant digits so the table is stable across machines."""
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
        return f"{value:.4g}"
    return str(value)


def _number(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


class Claims:
    """The list of claims of one run. Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb"""

    def __init__(self, cfg=None):
        self.cfg = cfg
        self.items: list[Claim] = []

    # --- ways to state a claim -------------------------------------------------------------
    def check(self, statement, *, source, measured, target, holds, paper=None, expected=True,
              reason=None) -> Claim:
        """The general form: the caller says what was measured, the target, and whether it holds."""
        if not statement or not source:
            raise ValueError("a claim needs a statement and the paper's source (section/figure)")
        if not expected and not reason:
            raise ValueError(f"claim {statement!r} is expected not to hold: give the reason")
        claim = Claim(statement, source, measured, target, bool(holds), paper, expected, reason)
        self.items.append(claim)
        return claim

    def close(self, statement, measured, paper, *, tol, source, relative=False, **kw) -> Claim:
        """|measured - paper| <= tol (or tol * |paper| when `relative`)."""
        m, p = _number(measured, "measured"), _number(paper, "paper")
        bound = tol * abs(p) if relative else tol
        target = f"within {fmt(tol)}{' relative' if relative else ''} of {fmt(p)}"
        return self.check(statement, source=source, measured=m, paper=p, target=target,
                          holds=abs(m - p) <= bound, **kw)

    def within(self, statement, measured, low, high, *, source, **kw) -> Claim:
        """low <= measured <= high."""
        m = _number(measured, "measured")
        return self.check(statement, source=source, measured=m, target=f"in [{fmt(low)}, {fmt(high)}]",
                          holds=low <= m <= high, **kw)

    def less(self, statement, smaller: dict, larger: dict, *, source, factor=1.0, **kw) -> Claim:
        """{name: value} of `smaller` < factor * {name: value} of `larger`."""
        (a_name, a), (b_name, b) = _single(smaller, "smaller"), _single(larger, "larger")
        scale = "" if factor == 1 else f"{fmt(factor)} x "
        return self.check(statement, source=source, measured={a_name: a, b_name: b},
                          target=f"{a_name} < {scale}{b_name}", holds=a < factor * b, **kw)

    def true(self, statement, holds, *, source, measured, target, **kw) -> Claim:
        """A claim whose check is a boolean computed by the notebook (e.g. 'all starts converged')."""
        return self.check(statement, source=source, measured=measured, target=target,
                          holds=bool(holds), **kw)

    # --- reporting -------------------------------------------------------------------------
    def failed(self) -> list[Claim]:
        return [c for c in self.items if c.expected and not c.holds]

    def results(self) -> dict:
        """The claims as plain JSON values (non-finite numbers as strings), and the overall verdict."""
        return {"claims": [jsonable(dict(asdict(c), status=c.status)) for c in self.items],
                "all_expected_hold": not self.failed()}

    def table(self) -> "ClaimsTable":
        return ClaimsTable(self.results()["claims"])

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
            raise ClaimsFailed(f"{len(failed)} claim(s) expected to hold did not: "
                               + "; ".join(f"{c.statement} (measured {fmt(c.measured)}, "
                                           f"target {c.target})" for c in failed))


class ClaimsTable:
    """The claims of a run as a notebook shows them: a text and an HTML table whose measured values
    can be masked (see the module's docstring), with the results themselves in the metadata."""

    COLUMNS = ("claim", "source", "paper", "measured", "target", "result")

    def __init__(self, claims: list[dict]):
        self.claims = claims

    def _rows(self):
        for i, c in enumerate(self.claims, start=1):
            yield i, {"claim": c["statement"], "source": c["source"], "paper": fmt(c["paper"]),
                      "measured": fmt(c["measured"]), "target": c["target"], "result": c["status"]}

    def text(self) -> str:
        lines = []
        for i, row in self._rows():
            paper = f" | paper: {row['paper']}" if row["paper"] else ""
            lines += [f"{i:>2}. {row['result']} | {row['claim']}",
                      f"    source: {row['source']}{paper} | target: {row['target']}",
                      MEASURED_PREFIX + row["measured"].replace("\n", " ")]
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th>{name}</th>" for name in ("#",) + self.COLUMNS)
        body = []
        for i, row in self._rows():
            cells = "".join(f'<td class="{name}">{html.escape(row[name])}</td>' for name in self.COLUMNS)
            verdict = row["result"].split(" ")[0].lower()
            body.append(f'<tr class="claim-{verdict}"><td>{i}</td>{cells}</tr>')
        return (f'<table class="repro-claims"><thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table>')

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
