"""Great Expectations suites for the raw sources, as pure functions over pandas frames.

Blocking expectations guard keys and schema (a failure should stop downstream assets);
warning expectations watch the known quirks of the data (bad ages, sentinel listening
seconds, expiry before transaction) so a jump in their share is visible but not fatal.
GX is imported lazily and its context and suites are built once per process (~3 s).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

BLOCKING, WARNING = "blocking", "warning"
KNOWN_PAYMENT_METHODS = list(range(1, 42))  # ids 1..41 in the public data


@dataclass
class QualityResult:
    source: str
    passed_blocking: bool
    passed_warning: bool
    n_expectations: int
    n_rows: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        status = "passed" if self.passed_blocking and self.passed_warning else (
            "warnings only" if self.passed_blocking else "BLOCKING FAILURES")
        lines = [f"**{self.source}**: {status} ({self.n_expectations} expectations, {self.n_rows:,} rows)"]
        if self.failures:
            lines += ["", "| severity | expectation | column | unexpected | % |", "|---|---|---|---:|---:|"]
            for f in self.failures:
                pct = "" if f["unexpected_percent"] is None else f"{f['unexpected_percent']:.2f}"
                cnt = "" if f["unexpected_count"] is None else f"{f['unexpected_count']:,}"
                lines.append(f"| {f['severity']} | {f['expectation']} | {f['column'] or ''} | {cnt} | {pct} |")
        return "\n".join(lines)


def _expectations(source: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(severity, GX expectation class name, kwargs) per source."""
    from churn_assets.ingest.loading import SOURCES  # local: loading imports duckdb only

    spec = SOURCES[source]
    exps: list[tuple[str, str, dict[str, Any]]] = [
        (BLOCKING, "ExpectTableRowCountToBeBetween", {"min_value": 1}),
        *[(BLOCKING, "ExpectColumnToExist", {"column": c}) for c in spec.column_names],
        (BLOCKING, "ExpectColumnValuesToNotBeNull", {"column": "msno"}),
    ]
    if source == "members":
        exps += [
            (WARNING, "ExpectColumnValuesToBeBetween", {"column": "bd", "min_value": 0, "max_value": 100,
                                                        "mostly": 0.95}),
            (WARNING, "ExpectColumnValuesToBeInSet", {"column": "gender", "value_set": ["male", "female"]}),
            (WARNING, "ExpectColumnValuesToNotBeNull", {"column": "registration_init_time"}),
        ]
    elif source == "transactions":
        exps += [
            (BLOCKING, "ExpectColumnValuesToNotBeNull", {"column": "transaction_date"}),
            (BLOCKING, "ExpectColumnValuesToNotBeNull", {"column": "membership_expire_date"}),
            (BLOCKING, "ExpectColumnValuesToBeBetween", {"column": "payment_plan_days", "min_value": 0}),
            (WARNING, "ExpectColumnValuesToBeInSet", {"column": "payment_method_id",
                                                      "value_set": KNOWN_PAYMENT_METHODS}),
            (WARNING, "ExpectColumnValuesToBeInSet", {"column": "is_auto_renew", "value_set": [0, 1]}),
            (WARNING, "ExpectColumnValuesToBeInSet", {"column": "is_cancel", "value_set": [0, 1]}),
            (WARNING, "ExpectColumnPairValuesAToBeGreaterThanB", {
                "column_A": "membership_expire_date", "column_B": "transaction_date", "or_equal": True,
                "mostly": 0.95}),
        ]
    elif source == "user_logs":
        exps += [
            (BLOCKING, "ExpectColumnValuesToNotBeNull", {"column": "date"}),
            (WARNING, "ExpectColumnValuesToBeBetween", {"column": "total_secs", "min_value": 0,
                                                        "max_value": 86400, "mostly": 0.99}),
        ]
    elif source == "churn_labels":
        exps += [
            (BLOCKING, "ExpectColumnValuesToNotBeNull", {"column": "is_churn"}),
            (BLOCKING, "ExpectColumnValuesToBeInSet", {"column": "is_churn", "value_set": [0, 1]}),
        ]
    return exps


@functools.cache
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.data_sources.add_pandas("raw_frames")
    return context


@functools.cache
def _suite_and_batch(source: str):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = _context()
    suite = context.suites.add(gx.ExpectationSuite(name=f"raw_{source}"))
    for severity, cls, kwargs in _expectations(source):
        suite.add_expectation(getattr(gxe, cls)(**kwargs, meta={"severity": severity}))
    asset = context.data_sources.get("raw_frames").add_dataframe_asset(name=f"raw_{source}")
    return suite, asset.add_batch_definition_whole_dataframe(f"raw_{source}_frame")


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def validate_raw(source: str, df: pd.DataFrame) -> QualityResult:
    """Validate one raw partition frame against the source's suite."""
    suite, batch_def = _suite_and_batch(source)
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    res = batch.validate(suite, result_format="SUMMARY")
    failures = []
    for r in res.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kw = cfg.kwargs
        detail = r.result or {}
        failures.append({
            "expectation": cfg.type,
            "column": kw.get("column") or (f"{kw['column_A']},{kw['column_B']}" if "column_A" in kw else None),
            "severity": cfg.meta.get("severity", BLOCKING),
            "unexpected_count": _num(detail.get("unexpected_count")),
            "unexpected_percent": _num(detail.get("unexpected_percent")),
            "observed_value": detail.get("observed_value"),
            "exception": (r.exception_info or {}).get("exception_message") if r.exception_info else None,
        })
    severities = {f["severity"] for f in failures}
    return QualityResult(
        source=source,
        passed_blocking=BLOCKING not in severities,
        passed_warning=WARNING not in severities,
        n_expectations=len(res.results),
        n_rows=len(df),
        failures=failures,
    )
