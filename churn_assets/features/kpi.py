"""Monthly churn KPI and its chart.

The seed's monthly churn rate: members who churned at the end of the month divided by members
who were active in that month. "Churned at the end of the month" = candidates of target month M
(membership expiring in M, official WSDM rule, see labels.py) labelled is_churn = 1.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd

from churn_assets.features.labels import validate_month
from churn_assets.sql import ident

_SQL_PATH = Path(__file__).with_name("kpi.sql")

KPI_COLUMNS: tuple[str, ...] = ("month", "active_members", "new_members", "renewed", "churned", "churn_rate")


@cache
def _sql_template() -> str:
    return _SQL_PATH.read_text()


def kpi_query(transactions: str = "raw.transactions", labels: str = "features.labels") -> str:
    """SQL text of the one-row KPI with a `$month` parameter (for `INSERT INTO kpi.monthly_churn`)."""
    return (
        _sql_template()
        .replace("{transactions}", ident(transactions))
        .replace("{labels}", ident(labels))
    )


def monthly_churn_kpi(
    con: duckdb.DuckDBPyConnection,
    month: dt.date,
    transactions: str = "raw.transactions",
    labels: str = "features.labels",
) -> pd.DataFrame:
    """One row for `month` (a first-of-month date):

    - active_members: members whose membership is active at some point in the month (a
      transaction dated before the month's end expiring on or after its first day, or a
      transaction dated inside the month);
    - new_members: members whose first ever transaction is dated in the month;
    - renewed / churned: candidates of target month `month` in `labels` (membership expiring
      in the month) with is_churn = 0 / 1;
    - churn_rate = churned / active_members: the business's monthly churn rate, members churned at
      the end of the month over members active in that month (NULL when nobody is active).

    The month's labels are final only once the following month is ingested.
    """
    month = validate_month(month)
    return con.execute(kpi_query(transactions, labels), {"month": month}).df()


def kpi_history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every month of kpi.monthly_churn, oldest first (the chart's data)."""
    return con.execute("SELECT * FROM kpi.monthly_churn ORDER BY month").df()


def churn_chart_png(kpi: pd.DataFrame, path: Path) -> Path:
    """Bar chart of new / retained (renewed) / churned members per month, churn rate as a line
    on a secondary axis, written as PNG to `path` (parents created). Returns `path`."""
    from matplotlib.figure import Figure  # matplotlib only when a chart is drawn

    kpi = kpi.sort_values("month")
    labels = [pd.Timestamp(m).strftime("%Y-%m") for m in kpi["month"]]
    x = range(len(kpi))
    width = 0.27
    fig = Figure(figsize=(max(6.0, 0.7 * len(kpi) + 3), 4.8), dpi=100, layout="constrained")  # no pyplot
    ax = fig.add_subplot()
    bars = [("new_members", "new", "#4C72B0"), ("renewed", "retained", "#55A868"), ("churned", "churned", "#C44E52")]
    for i, (col, name, colour) in enumerate(bars):
        ax.bar([p + (i - 1) * width for p in x], kpi[col].fillna(0), width, label=name, color=colour)
    ax.set_xticks(list(x), labels, rotation=45 if len(kpi) > 8 else 0)
    ax.set_ylabel("members")
    ax.set_title("Monthly members and churn rate")
    rate_ax = ax.twinx()
    rate_ax.plot(list(x), 100 * kpi["churn_rate"].astype(float), color="black", marker="o", label="churn rate")
    rate_ax.set_ylabel("churn rate (%)")
    rate_ax.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + rate_ax.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
