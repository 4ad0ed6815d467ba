"""The loop's key charts as PNG: drift share per week with the policy's thresholds, members
per bucket per week, and the realised one-month-ahead AUC per month and model version beside
its validation AUC and (synthetic worlds only) the oracle's AUC on the same members.

The weekly report embeds them (history through its Monday), the demo summary writes them to
files. Matplotlib through `Figure` only: no pyplot, no backend to choose on a headless server.

    charts = history_charts(monitoring_history(con, through=week, oracle=find_oracle(paths)))
    charts["drift_share"].png, .title, .caption; write_charts(charts, out_dir) -> {name: path}
    report_charts(con, week, paths)   # the weekly report's: what was knowable on its Monday
"""
from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

import pandas as pd
from matplotlib.dates import DateFormatter, MonthLocator
from matplotlib.figure import Figure

from churn_assets.core.buckets import BUCKETS
from churn_assets.marketing.effect import DEFAULT_MIN_RELATIVE_REDUCTION
from churn_assets.monitoring.history import MonitoringHistory, find_oracle, monitoring_history
from churn_assets.monitoring.policy import DEFAULT_RETRAIN_AT, DEFAULT_RETUNE_AT
from churn_assets.settings import Paths

DRIFT_CHART, BUCKET_CHART, AUC_CHART = "drift_share", "bucket_volumes", "auc_vs_oracle"
RETENTION_CHART = "churn_reduction"
TITLES = {
    DRIFT_CHART: "Drift share per week (gain-weighted) with the policy's thresholds",
    BUCKET_CHART: "Members scored per week and bucket",
    AUC_CHART: "One-month-ahead AUC per month: realised per model version vs the oracle",
    RETENTION_CHART: "Churn-rate reduction against the control group per month, 95 % interval",
}
_BUCKET_COLOURS = {"A": "#d62728", "B": "#ff7f0e", "C": "#2ca02c"}
_DECISION_COLOURS = {"retrain": "#ff7f0e", "retune": "#d62728"}


@dataclass(frozen=True)
class Chart:
    title: str
    png: bytes
    caption: str  # what the chart covers, in words


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _figure(title: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(8, 3.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize="medium")
    return fig, ax


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def drift_chart(drift: pd.DataFrame, retrain_at: float = DEFAULT_RETRAIN_AT,
                retune_at: float = DEFAULT_RETUNE_AT) -> bytes:
    """The share per week, the retrain / retune thresholds as lines, weeks whose decision asked
    for action marked in the decision's colour."""
    fig, ax = _figure(TITLES[DRIFT_CHART])
    if drift.empty:
        _empty(ax, "no drift report yet")
        return _png(fig)
    weeks = pd.to_datetime(drift["week_start"])
    share = pd.to_numeric(drift["drift_share"], errors="coerce")
    ax.plot(weeks, share, marker="o", markersize=3, color="#4C72B0", label="drift share")
    for decision, colour in _DECISION_COLOURS.items():
        acted = (drift["decision"] == decision).to_numpy()
        if acted.any():
            ax.scatter(weeks[acted], share[acted], color=colour, zorder=3, label=f"decision {decision}")
    ax.axhline(retrain_at, color=_DECISION_COLOURS["retrain"], linestyle="--", linewidth=1,
               label=f"retrain at {retrain_at:g}")
    ax.axhline(retune_at, color=_DECISION_COLOURS["retune"], linestyle="--", linewidth=1,
               label=f"retune at {retune_at:g}")
    top = share.max()
    ax.set_ylim(0, 1.1 * max(retune_at, 0.0 if pd.isna(top) else float(top)))
    ax.set_ylabel("share of the model's gain")
    ax.legend(fontsize="x-small", loc="upper left")
    fig.autofmt_xdate()
    return _png(fig)


def bucket_chart(buckets: pd.DataFrame) -> bytes:
    """Stacked bars: members scored per week in A, B, C."""
    fig, ax = _figure(TITLES[BUCKET_CHART])
    if buckets.empty:
        _empty(ax, "no scores yet")
        return _png(fig)
    wide = buckets.pivot_table(index="week_start", columns="bucket", values="members", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=list(BUCKETS), fill_value=0)
    weeks = pd.to_datetime(wide.index)
    bottom = None
    for bucket in BUCKETS:
        ax.bar(weeks, wide[bucket], width=5, bottom=bottom, color=_BUCKET_COLOURS[bucket], label=bucket)
        bottom = wide[bucket] if bottom is None else bottom + wide[bucket]
    ax.set_ylabel("members")
    ax.legend(title="bucket", fontsize="x-small")
    fig.autofmt_xdate()
    return _png(fig)


def auc_chart(performance: pd.DataFrame, oracle: pd.DataFrame) -> bytes:
    """Per model version its realised first-score AUC per month (solid) and validation AUC
    (dashed); the oracle's AUC on the same members (black) when the world has one."""
    fig, ax = _figure(TITLES[AUC_CHART])
    if performance.empty and oracle.empty:
        _empty(ax, "no month's labels are final yet")
        return _png(fig)
    for k, (version, rows) in enumerate(performance.groupby("model_version", sort=True)):
        months = pd.to_datetime(rows["target_month"])
        line = ax.plot(months, rows["auc"], marker="o", label=f"v{version} realised", color=f"C{k % 10}")[0]
        valid = pd.to_numeric(rows["valid_auc"], errors="coerce")
        if valid.notna().any():
            ax.plot(months, valid, linestyle="--", marker="_", markersize=14, color=line.get_color(),
                    label=f"v{version} validation")
    if not oracle.empty:
        ax.plot(pd.to_datetime(oracle["target_month"]), oracle["oracle_auc"], marker="s", color="black",
                label="oracle (same members)")
    ax.set_ylabel("ROC AUC")
    ax.xaxis.set_major_locator(MonthLocator())
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m"))
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside: versions pile up
    fig.autofmt_xdate()
    return _png(fig)


def retention_chart(months: pd.DataFrame, threshold: float = DEFAULT_MIN_RELATIVE_REDUCTION) -> bytes:
    """Per final month the relative churn reduction with its Fieller interval, the criterion's
    line, and the reduction the hold-out could detect (80 % power): above the line, a month
    cannot show the criterion whatever the actions did."""
    fig, ax = _figure(TITLES[RETENTION_CHART])
    if months.empty:
        _empty(ax, "no month's labels are final and measured yet")
        return _png(fig)
    when = pd.to_datetime(months["target_month"])
    value = months["relative_reduction"].astype(float) * 100
    low = (value - months["rr_ci_low"].astype(float) * 100).clip(lower=0)
    high = (months["rr_ci_high"].astype(float) * 100 - value).clip(lower=0)
    ax.errorbar(when.to_numpy(), value.to_numpy(), yerr=[low.fillna(0).to_numpy(), high.fillna(0).to_numpy()],
                fmt="o", capsize=4, label="measured")
    if "detectable_reduction" in months:
        ax.plot(when, months["detectable_reduction"].astype(float) * 100, linestyle=":", marker="x",
                color="grey", label="detectable (80 % power)")
    ax.axhline(threshold * 100, color="#2ca02c", linestyle="--", label=f"criterion {threshold:.0%}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("% of the control's churn")
    ax.xaxis.set_major_locator(MonthLocator())
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m"))
    ax.legend(fontsize="x-small")
    fig.autofmt_xdate()
    return _png(fig)


def _span(days: pd.Series) -> str:
    days = sorted({pd.Timestamp(d).date() for d in days})
    return f"{len(days)} week(s), {days[0]} to {days[-1]}" if days else "no week yet"


def _months(months: pd.Series) -> str:
    shown = sorted({pd.Timestamp(m).strftime("%Y-%m") for m in months})
    return ", ".join(shown) if shown else "none yet"


def history_charts(history: MonitoringHistory, retrain_at: float = DEFAULT_RETRAIN_AT,
                   retune_at: float = DEFAULT_RETUNE_AT) -> dict[str, Chart]:
    """{chart name: Chart} in display order."""
    acted = int(history.drift["decision"].isin(list(_DECISION_COLOURS)).sum()) if len(history.drift) else 0
    oracle = "; oracle on the same members" if len(history.oracle) else "; no oracle (not a simulated world)"
    return {
        DRIFT_CHART: Chart(TITLES[DRIFT_CHART], drift_chart(history.drift, retrain_at, retune_at),
                           f"{_span(history.drift['week_start'])}; {acted} with a decision to act"),
        BUCKET_CHART: Chart(TITLES[BUCKET_CHART], bucket_chart(history.buckets), _span(history.buckets["week_start"])),
        AUC_CHART: Chart(TITLES[AUC_CHART], auc_chart(history.performance, history.oracle),
                         f"months with final labels: {_months(history.performance['target_month'])}{oracle}"),
        RETENTION_CHART: Chart(TITLES[RETENTION_CHART], retention_chart(history.retention),
                               f"months measured: {_months(history.retention.get('target_month', pd.Series([])))}"),
    }


def report_charts(con: duckdb.DuckDBPyConnection, week: dt.date, paths: Paths) -> list[Chart]:
    """The weekly report's charts: weeks up to `week`, months whose labels were final on it."""
    return list(history_charts(monitoring_history(con, through=week, oracle=find_oracle(paths))).values())


def write_charts(charts: Mapping[str, Chart], out_dir: Path | str) -> dict[str, Path]:
    """Each chart as out_dir/<name>.png (folder created); {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, chart in charts.items():
        paths[name] = out / f"{name}.png"
        paths[name].write_bytes(chart.png)
    return paths


def demo_charts(duckdb_path: Path, out_dir: Path, oracle: pd.DataFrame | None = None) -> dict[str, Path]:
    """The whole replay's charts as PNG files (the demo summary's); `oracle`: the demo's
    oracle comparison (oracle_evaluation ORACLE_COMPARISON_COLUMNS), if any. {} before the
    warehouse exists."""
    if not Path(duckdb_path).exists():
        return {}
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        history = monitoring_history(con)
    if oracle is not None and len(oracle):
        head = oracle[oracle["lead_band"] == "first_score"].reindex(columns=list(history.oracle.columns))
        history = MonitoringHistory(history.drift, history.buckets, history.performance, head.reset_index(drop=True),
                                    history.retention)
    return write_charts(history_charts(history), out_dir)
