"""Idempotence: materialising a partition twice changes nothing, and a backfill
after a corrected re-delivery changes exactly the partitions that depend on it.

Digests are sha256 over every row rendered as text in a total order, with column
names and types (test_reliability_support.table_digest); `scored_at` (when the
scores were written) is the only column left out, and DOUBLEs are rounded to 6
decimals (DuckDB's parallel float sums are not bit-reproducible). Scoring uses a deterministic
stub model and drift a fixed reference, both served by a StubRegistry (the MLflow side
is covered by the model tests); the rest is the real asset code on a real DuckDB file.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from churn_assets.defs.features.assets import features_assets
from churn_assets.defs.ingest.assets import raw_assets
from churn_assets.defs.marketing.assets import marketing_assets
from churn_assets.model.versions import TrainingEvidence
from churn_assets.defs.monitoring import assets as monitoring
from churn_assets.defs.resources import Smtp, Storage, Warehouse
from churn_assets.defs.scoring import assets as scoring
from churn_assets_tests.conftest import deliver
from churn_assets_tests.stubs import StubRegistry
from churn_assets_tests.test_reliability_support import (
    StubModel,
    load_months,
    partition_digests,
    stub_reference,
    table_digest,
)

pytestmark = pytest.mark.slow  # whole-pipeline runs twice: see `make test-fast`

MONTHS = ["2016-07", "2016-08", "2016-09", "2016-10", "2016-11", "2016-12", "2017-01"]
M = "2016-10"  # the re-delivered month
WEEK = "2016-10-03"  # a Monday
# Compared bit for bit: the secs_* features are exact DECIMAL sums (a DOUBLE sum's last
# bits depended on the order DuckDB's threads added the rows).
FLOAT_DECIMALS = None


@pytest.fixture(scope="module")
def base(tiny_world, tmp_path_factory):
    """A warehouse with raw 2016-07..2017-01 loaded (fast path) and features of 2016-08..2016-12."""
    root = tmp_path_factory.mktemp("idem_base")
    deliver(tiny_world, root, *MONTHS)
    # No published labels: a corrected drop would correct them too, and the label
    # agreement check (tested in test_features_assets) would block on stale ones.
    for path in (root / "landing").glob("*/churn_logs.csv"):
        path.unlink()
    db = root / "churn.duckdb"
    with duckdb.connect(str(db)) as con:
        load_months(con, root / "landing", MONTHS)
    return root


@pytest.fixture
def env(base, tmp_path, monkeypatch):
    """A private copy of the base data dir, pointed at by the environment."""
    data = tmp_path / "data"
    shutil.copytree(base, data)
    monkeypatch.setenv("CHURN_DATA_DIR", str(data))
    monkeypatch.setenv("CHURN_DUCKDB_PATH", str(data / "churn.duckdb"))
    return data


def _materialize(assets, key, instance, db, **resources):
    """Materialise on the warehouse `db`, with the data dir that holds it as storage."""
    base = {"warehouse": Warehouse(database=str(db)), "storage": Storage(data_dir=str(Path(db).parent))}
    result = dg.materialize(assets, partition_key=key, instance=instance, resources={**base, **resources})
    assert result.success
    return result


def _digests(db, tables) -> dict:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t: table_digest(con, t, float_decimals=FLOAT_DECIMALS) for t in tables}


def _frames(db, tables) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").df() for t in tables}


def _differing_columns(a: dict, b: dict) -> dict:
    """{table: {column: rows differing}} between two snapshots (for the failure message)."""
    out = {}
    for t in a:
        if a[t].shape != b[t].shape:
            out[t] = f"shape {a[t].shape} != {b[t].shape}"
            continue
        cols = {c: int((~((a[t][c] == b[t][c]) | (a[t][c].isna() & b[t][c].isna()))).sum()) for c in a[t].columns}
        out[t] = {c: n for c, n in cols.items() if n}
    return out


def test_every_partitioned_asset_twice_is_byte_identical(env, instance):
    db = env / "churn.duckdb"
    _materialize(features_assets, "2016-09-01", instance, db)  # the drift reference month
    reference, scores = stub_reference(str(db), "2016-09-01")
    evidence = TrainingEvidence(metrics={}, baseline_metrics={}, validation_predictions=scores,
                                reference_sample=reference)
    # production v7: the stub model for the scores, the fixed reference (no trained_through tag) for drift
    stage_resources = {"smtp": Smtp(), "registry": StubRegistry.serving(StubModel(), "7", evidence=evidence),
                       "storage": Storage(data_dir=str(env))}

    stages = [
        (raw_assets, M + "-01", ["raw.members", "raw.transactions", "raw.user_logs", "raw.quarantine"]),
        (features_assets, M + "-01", ["features.labels", "features.member_features", "kpi.monthly_churn"]),
        ([*scoring.scoring_assets, *marketing_assets, monitoring.drift_report], WEEK,
         ["scoring.scoring_features", "scoring.churn_scores", "marketing.treatments", "monitoring.drift_reports",
          "monitoring.drift_columns"]),
    ]
    for assets, key, tables in stages:
        _materialize(assets, key, instance, db, **stage_resources)
        first, first_frames = _digests(db, tables), _frames(db, tables)
        csv = env / "reports" / "weekly" / WEEK / "at_risk_members.csv"
        first_csv = csv.read_bytes() if csv.exists() else None
        _materialize(assets, key, instance, db, **stage_resources)
        if _digests(db, tables) != first:
            pytest.fail(f"re-materialising {key} changed {_differing_columns(first_frames, _frames(db, tables))}")
        assert all(rows > 0 for t, (rows, _) in first.items() if t != "raw.quarantine"), first
        if first_csv is not None:
            assert csv.read_bytes() == first_csv

    # the digest is sensitive: one changed probability is seen
    with duckdb.connect(str(db)) as con:
        before = table_digest(con, "scoring.churn_scores")
        con.execute("UPDATE scoring.churn_scores SET churn_probability = churn_probability + 1e-9 "
                    "WHERE msno = (SELECT min(msno) FROM scoring.churn_scores)")
        assert table_digest(con, "scoring.churn_scores") != before


def _correct_drop(landing, month: str) -> int:
    """Re-deliver `month` corrected: ~8% of members' transactions withdrawn (a
    duplicated feed), returns the number of rows removed."""
    path = landing / month / "transactions_logs.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    withdrawn = pd.util.hash_pandas_object(frame["msno"], index=False) % 12 == 0
    frame[~withdrawn].to_csv(path, index=False)
    return int(withdrawn.sum())


@pytest.fixture(scope="module")
def backfill(base, tmp_path_factory):
    """Per-partition digests of the raw and feature tables before and after a corrected
    re-delivery of M and a naive backfill of every month M-2..M+2 (once per module)."""
    env = tmp_path_factory.mktemp("backfill") / "data"
    shutil.copytree(base, env)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("CHURN_DATA_DIR", str(env))
        mp.setenv("CHURN_DUCKDB_PATH", str(env / "churn.duckdb"))
        return _run_backfill(env, instance)


def _run_backfill(env, instance):
    db = env / "churn.duckdb"
    window = ["2016-08-01", "2016-09-01", "2016-10-01", "2016-11-01", "2016-12-01"]
    tables = {"raw.transactions": ("partition_month", None), "features.labels": ("target_month", None),
              "labels_is_churn": ("target_month", ["msno", "target_month", "last_expire", "is_churn"]),
              "features.member_features": ("as_of", None), "kpi.monthly_churn": ("month", None)}

    def digests():
        with duckdb.connect(str(db), read_only=True) as con:
            return {name: partition_digests(con, "features.labels" if name == "labels_is_churn" else name, col, cols, FLOAT_DECIMALS)
                    for name, (col, cols) in tables.items()}

    for key in window:
        _materialize(features_assets, key, instance, db)
    before = digests()
    removed = _correct_drop(env / "landing", M)
    assert removed > 0
    _materialize(raw_assets, M + "-01", instance, db)
    for key in window:
        _materialize(features_assets, key, instance, db)
    after = digests()

    def changed(table):
        assert before[table].keys() == after[table].keys()
        return {k[:7] for k in before[table] if before[table][k] != after[table][k]}

    return changed, before, after, removed


def test_backfill_after_corrected_redelivery_changes_only_affected_partitions(backfill):
    changed, before, after, removed = backfill
    assert changed("raw.transactions") == {M}
    assert before["raw.transactions"]["2016-10-01"][0] - after["raw.transactions"]["2016-10-01"][0] == removed
    # labels of T read transactions of T-1..T+1 (the declared partition mapping): withdrawn
    # renewals in M turn M-1 and M expiries into churn, and members whose M+1 expiry came
    # from a withdrawn row are no longer M+1 candidates
    assert changed("labels_is_churn") == {"2016-09", "2016-10", "2016-11"}
    # training features of T read history before T and T's candidates: only T > M
    assert changed("features.member_features") == {"2016-11", "2016-12"}
    # the KPI of T reads the labels of T and every transaction before T's end
    assert {"2016-09", "2016-10"} <= changed("kpi.monthly_churn") <= {"2016-09", "2016-10", "2016-11", "2016-12"}


def test_full_label_rows_change_only_in_the_declared_window(backfill):
    # labels of T declare raw/transactions T-1..T+2 (renewals are read up to the month that
    # makes T final), so a re-delivered M may change T = M-2..M+1 and nothing else
    changed, *_ = backfill
    assert changed("features.labels") <= {"2016-08", "2016-09", "2016-10", "2016-11"}


def test_kpi_changes_only_in_its_declared_dependencies(backfill):
    # the KPI of T declares its labels and every raw/transactions month up to T
    changed, *_ = backfill
    assert changed("kpi.monthly_churn") <= {"2016-08", "2016-09", "2016-10", "2016-11", "2016-12"}
    assert "2016-07" not in changed("kpi.monthly_churn")
