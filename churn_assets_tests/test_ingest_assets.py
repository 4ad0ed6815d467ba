"""Raw assets through Dagster: materialise, checks, idempotence, landing sensor."""
from __future__ import annotations

import json

import dagster as dg
import pytest
import duckdb

from churn_assets.defs.ingest.assets import raw_assets
from churn_assets.defs.ingest.sensors import landing_sensor
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.settings import paths_from_env
from churn_assets_tests.conftest import deliver

MONTH = "2016-09"
KEY = "2016-09-01"


def _materialize(instance, key=KEY):
    return dg.materialize(
        raw_assets, partition_key=key, instance=instance,
        resources={"storage": Storage(data_dir=str(paths_from_env().data_dir)), "warehouse": Warehouse(database=str(paths_from_env().duckdb_path))},
        raise_on_error=False,
    )


def _table_digest(table: str) -> tuple:
    with duckdb.connect(str(paths_from_env().duckdb_path), read_only=True) as con:
        return con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))) FROM (SELECT * FROM {table} ORDER BY ALL)").fetchone()


def test_definitions_load(defs):
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw/members", "raw/transactions", "raw/user_logs", "raw/churn_labels",
            "features/labels", "features/member_features", "kpi/monthly_churn"} <= keys
    assert defs.resolve_job_def("ingest_job").partitions_def is not None
    assert defs.resolve_sensor_def("landing_sensor")


def test_raw_assets_load_a_month_with_checks_and_accounting(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, MONTH)
    result = _materialize(instance)
    assert result.success
    for source in ("transactions", "user_logs", "members"):
        meta = result.asset_materializations_for_node(f"raw_{source}")[0].metadata
        rows_in, loaded, quarantined = (meta[k].value for k in ("rows_in", "rows_loaded", "rows_quarantined"))
        assert rows_in > 0 and rows_in == loaded + quarantined
        assert "profile" in meta and "preview" in meta
    evaluations = result.get_asset_check_evaluations()
    blocking = [e for e in evaluations if e.check_name in ("gx_blocking", "rows_accounted")]
    assert blocking and all(e.passed for e in blocking)
    with duckdb.connect(str(paths_from_env().duckdb_path), read_only=True) as con:
        months = con.execute("SELECT DISTINCT partition_month::VARCHAR FROM raw.transactions").fetchall()
        dtype = con.execute("SELECT typeof(transaction_date) FROM raw.transactions LIMIT 1").fetchone()[0]
    assert months == [(KEY,)] and dtype == "DATE"


@pytest.mark.slow
def test_rematerialising_a_partition_is_idempotent(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, MONTH, "2016-10")
    assert _materialize(instance).success and _materialize(instance, "2016-10-01").success
    before = {t: _table_digest(t) for t in ("raw.transactions", "raw.user_logs", "raw.quarantine")}
    assert _materialize(instance).success
    after = {t: _table_digest(t) for t in ("raw.transactions", "raw.user_logs", "raw.quarantine")}
    assert before == after


def test_gx_blocking_check_fails_on_a_corrupted_drop(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, MONTH)
    path = data_dir / "landing" / MONTH / "transactions_logs.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    days = header.index("payment_plan_days")
    corrupted = [lines[0]]
    for i, line in enumerate(lines[1:]):
        fields = line.split(",")
        if i % 10 == 0:  # a tenth of the rows with negative plan lengths: loads, but is wrong
            fields[days] = "-30"
        corrupted.append(",".join(fields))
    path.write_text("\n".join(corrupted) + "\n")
    result = _materialize(instance)
    gx = [e for e in result.get_asset_check_evaluations()
          if e.asset_key == dg.AssetKey(["raw", "transactions"]) and e.check_name == "gx_blocking"]
    assert len(gx) == 1 and not gx[0].passed
    failed = gx[0].metadata["failed_expectations"].value
    assert any(f["column"] == "payment_plan_days" and f["unexpected_count"] > 0 for f in failed)


def test_landing_sensor_new_unchanged_and_redelivered(tiny_world, data_dir, instance, defs):
    def tick(cursor=None):
        return landing_sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources={"storage": Storage(data_dir=str(data_dir))}))

    deliver(tiny_world, data_dir, MONTH)
    first = tick()
    assert [r.partition_key for r in first.run_requests] == [KEY]

    unchanged = tick(first.cursor)
    assert unchanged.run_requests == []

    # Touching a file without changing it re-hashes but requests nothing.
    path = data_dir / "landing" / MONTH / "userlogs.csv"
    path.write_bytes(path.read_bytes())
    touched = tick(unchanged.cursor)
    assert touched.run_requests == []

    # A corrected re-delivery (different content) and a new month are both requested, once.
    with path.open("a") as fh:
        fh.write(path.read_text().splitlines()[1] + "\n")
    deliver(tiny_world, data_dir, "2016-10")
    redelivered = tick(touched.cursor)
    keys = sorted(r.partition_key for r in redelivered.run_requests)
    assert keys == [KEY, "2016-10-01"]
    assert redelivered.run_requests[0].run_key != first.run_requests[0].run_key
    assert json.loads(redelivered.cursor).keys() == {MONTH, "2016-10"}
    # a first delivery loads every raw asset; a re-delivery only those whose file changed
    by_key = {r.partition_key: r for r in redelivered.run_requests}
    assert first.run_requests[0].asset_selection is None and by_key["2016-10-01"].asset_selection is None
    assert by_key[KEY].asset_selection == [dg.AssetKey(["raw", "user_logs"])]

    # published labels arriving later re-load raw.churn_labels alone; withdrawing them too
    labels = data_dir / "landing" / MONTH / "churn_logs.csv"
    labels.write_bytes(labels.read_bytes() + labels.read_text().splitlines()[1].encode() + b"\n")
    relabelled = tick(redelivered.cursor)
    assert [r.asset_selection for r in relabelled.run_requests] == [[dg.AssetKey(["raw", "churn_labels"])]]
    labels.unlink()
    withdrawn = tick(relabelled.cursor)
    assert [r.asset_selection for r in withdrawn.run_requests] == [[dg.AssetKey(["raw", "churn_labels"])]]


@pytest.mark.slow
def test_redelivered_drop_without_labels_withdraws_them(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, MONTH)
    assert _materialize(instance).success
    count = "SELECT count(*) FROM raw.churn_labels WHERE target_month = DATE '2016-09-01'"
    with duckdb.connect(str(paths_from_env().duckdb_path), read_only=True) as con:
        assert con.execute(count).fetchone()[0] > 0
    (data_dir / "landing" / MONTH / "churn_logs.csv").unlink()
    assert _materialize(instance).success
    with duckdb.connect(str(paths_from_env().duckdb_path), read_only=True) as con:
        assert con.execute(count).fetchone()[0] == 0
