"""Shared helper for the model tests (no tests here): a fresh MLflow sqlite store.

Creating MLflow's schema runs ~80 alembic migrations with an fsync each (5-15 s on a busy
disk), so it is done once per session and the file copied for every store. Test stores
are throw-away, so their SQLAlchemy sqlite connections skip fsync (synchronous=OFF).
"""
from __future__ import annotations

import shutil
import sqlite3
import tempfile
from functools import cache
from pathlib import Path

from mlflow.tracking import MlflowClient
from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _no_fsync_for_test_stores(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=OFF")


@cache
def _template() -> Path:
    path = Path(tempfile.mkdtemp(prefix="mlflow-template-")) / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates and migrates the schema
    return path


def fresh_mlflow_store(directory: Path) -> tuple[str, str]:
    """(tracking URI, artifact location) of an empty store under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(_template(), directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}", (directory / "artifacts").as_uri()
