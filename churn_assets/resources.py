"""Resources: the DuckDB warehouse, SMTP, and the MLflow wrapper's settings.

Secrets come only from the environment through `dg.EnvVar`, so the UI and the
run config show the variable's name, never its value.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file's write lock for too long."""


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. Opened only inside `get_connection()` (never
    at import time: the code server lives long and would hold the lock)."""

    database: str = Field(description="Path of the DuckDB file (CHURN_DUCKDB_PATH).")
    lock_timeout_seconds: float = Field(
        default=120.0, description="How long to wait for another process's lock before failing."
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        con = _connect_waiting(self.database, self.lock_timeout_seconds)
        try:
            yield con
        finally:
            con.close()


def _connect_waiting(database: str, timeout: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"DuckDB file {database} is locked by another process for more than "
                    f"{timeout:.0f} s ({exc}). Close the DuckDB CLI or notebook that has it open "
                    "(query data/analytics.duckdb or the Parquet files instead), or raise "
                    "lock_timeout_seconds on the warehouse resource, then re-run."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class SmtpResource(dg.ConfigurableResource):
    """Where the weekly report is e-mailed. Unset host: report written to disk only."""

    host: str | None = None
    port: int = 587
    user: str | None = None
    password: str | None = None
    sender: str = "churn-assets@localhost"
    recipients: str | None = Field(default=None, description="Comma-separated addresses (CHURN_SMTP_TO).")
    security: str = Field(default="starttls", description="starttls, ssl or none (CHURN_SMTP_SECURITY).")
    timeout_seconds: float = 20.0

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.recipients)


def smtp_from_env() -> SmtpResource:
    """Build the SMTP resource from CHURN_SMTP_* names, passing secrets as EnvVar."""

    def env(name: str):
        return dg.EnvVar(name) if os.environ.get(name) else None

    return SmtpResource(
        host=env("CHURN_SMTP_HOST"),
        port=dg.EnvVar.int("CHURN_SMTP_PORT") if os.environ.get("CHURN_SMTP_PORT") else 587,
        user=env("CHURN_SMTP_USER"),
        password=env("CHURN_SMTP_PASSWORD"),
        sender=env("CHURN_SMTP_FROM") or "churn-assets@localhost",
        recipients=env("CHURN_SMTP_TO"),
        security=env("CHURN_SMTP_SECURITY") or "starttls",
    )
