"""ml.model_promotions: one row per gate decision (staging or production, promoted or
refused), written by the Dagster check and asset that run the gates."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import duckdb

from churn_assets.model.names import PRODUCTION, STAGING

if TYPE_CHECKING:
    from churn_assets.model.promotion import GateDecision

PROMOTIONS_DDL = """
CREATE SCHEMA IF NOT EXISTS ml;
CREATE TABLE IF NOT EXISTS ml.model_promotions (
    decided_at TIMESTAMP NOT NULL,
    model_version VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,          -- 'staging' / 'production'
    decision VARCHAR NOT NULL,       -- 'promoted' / 'refused'
    reason VARCHAR,
    challenger_auc DOUBLE,
    challenger_log_loss DOUBLE,
    incumbent_version VARCHAR,
    incumbent_auc DOUBLE,
    incumbent_log_loss DOUBLE
);
"""
PROMOTION_COLUMNS = (
    "decided_at", "model_version", "stage", "decision", "reason", "challenger_auc",
    "challenger_log_loss", "incumbent_version", "incumbent_auc", "incumbent_log_loss",
)


def decision_time() -> dt.datetime:
    """Now, as naive UTC: how decided_at and the gate's decided_at tags store it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def promotion_row(version: str, stage: str, decision: GateDecision) -> dict:
    """A ml.model_promotions row from a gate decision."""
    d = decision.details
    return {
        "decided_at": decision_time(),
        "model_version": str(version),
        "stage": stage,
        "decision": "promoted" if decision.passed else "refused",
        "reason": "; ".join(decision.reasons),
        "challenger_auc": d.get("challenger_auc"),
        "challenger_log_loss": d.get("challenger_log_loss"),
        "incumbent_version": d.get("incumbent_version"),
        "incumbent_auc": d.get("incumbent_auc"),
        "incumbent_log_loss": d.get("incumbent_log_loss"),
    }


def record_promotion(con: duckdb.DuckDBPyConnection, row: dict) -> None:
    """Append one decision to ml.model_promotions (created on first use)."""
    if row.get("stage") not in (STAGING, PRODUCTION) or row.get("decision") not in ("promoted", "refused"):
        raise ValueError(f"bad promotion row: stage={row.get('stage')!r} decision={row.get('decision')!r}")
    con.execute(PROMOTIONS_DDL)
    values = [row.get(c) for c in PROMOTION_COLUMNS]
    values[0] = values[0] or decision_time()
    con.execute(
        f"INSERT INTO ml.model_promotions ({', '.join(PROMOTION_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
        values,
    )
