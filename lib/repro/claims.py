"""State a paper's claims, check them against what was measured, report them and fail loudly.

A notebook ends with::

    claims = repro.Claims(cfg)
    claims.close("SELU's lambda solves the fixed-point equations", lam, paper=1.0507,
                 tol=1e-4, source="Sec. 3, Eq. 8")
    claims.greater("SELU trains a 32-layer net better than ReLU", relu_loss, selu_loss, ...)
    claims.report()

`report` shows a table of rounded numbers, writes the machine-readable results when the runner
asks for them (environment variable REPRO_RESULTS), and raises ClaimsFailed when a claim that is
expected to hold does not.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from . import provenance

RESULTS_ENV = "REPRO_RESULTS"


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

    def table(self):
        import pandas as pd

        rows = [{"claim": c.statement, "source": c.source, "paper": fmt(c.paper),
                 "measured": fmt(c.measured), "target": c.target, "result": c.status}
                for c in self.items]
        return pd.DataFrame(rows, index=range(1, len(rows) + 1))

    def results(self) -> dict:
        return {"claims": [dict(asdict(c), status=c.status) for c in self.items],
                "all_expected_hold": not self.failed()}

    def report(self):
        """Show the table, write the results file when asked, raise if an expected claim failed."""
        if not self.items:
            raise ValueError("no claims were stated")
        _show(self.table())
        for c in self.items:
            if not c.expected:
                print(f"Claim '{c.statement}' is not expected to reproduce at this scale: {c.reason}")
        path = os.environ.get(RESULTS_ENV)
        if path:
            payload = self.results()
            if self.cfg is not None:
                payload["provenance"] = provenance.collect(self.cfg)
            provenance.write_json_atomic(path, payload)
        failed = self.failed()
        if failed:
            raise ClaimsFailed(f"{len(failed)} claim(s) expected to hold did not: "
                               + "; ".join(f"{c.statement} (measured {fmt(c.measured)}, "
                                           f"target {c.target})" for c in failed))


def _single(pair, name):
    if not isinstance(pair, dict) or len(pair) != 1:
        raise TypeError(f"{name} must be a one-entry dict {{name: value}}, got {pair!r}")
    (key, value), = pair.items()
    return key, _number(value, f"{name}[{key!r}]")


def _show(table):
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(table)
    else:
        print(table.to_string())
