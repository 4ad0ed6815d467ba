"""Labels, training features and KPI assets on a generated world through Dagster."""
import dagster as dg
import pytest
import datetime as dt

import duckdb

from churn_assets.defs.features.assets import features_assets
from churn_assets.defs.ingest.assets import raw_assets
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.settings import paths_from_env
from churn_assets_tests.conftest import deliver

MONTHS = ["2016-08", "2016-09", "2016-10", "2016-11"]


def _run(assets, key, instance):
    result = dg.materialize(assets, partition_key=key, instance=instance,
                            resources={"storage": Storage(data_dir=str(paths_from_env().data_dir)), "warehouse": Warehouse(database=str(paths_from_env().duckdb_path))})
    assert result.success
    return result


@pytest.mark.slow
def test_labels_features_and_kpi_for_a_final_month(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, *MONTHS)
    for month in MONTHS:
        _run(raw_assets, f"{month}-01", instance)
    result = _run(features_assets, "2016-10-01", instance)

    labels_meta = result.asset_materializations_for_node("features__labels")[0].metadata
    assert labels_meta["final"].value is True
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    agreement = checks["agrees_with_published_labels"]
    assert agreement.passed and agreement.metadata["published_labels"].value > 0
    assert agreement.metadata["agreement_rate"].value == 1.0  # the generator follows the official rule

    with duckdb.connect(str(paths_from_env().duckdb_path), read_only=True) as con:
        n_labels, churn_rate = con.execute(
            "SELECT count(*), avg(is_churn) FROM features.labels WHERE target_month = '2016-10-01'").fetchone()
        n_features, as_ofs = con.execute(
            "SELECT count(*), count(DISTINCT as_of) FROM features.member_features").fetchone()
        kpi = con.execute("SELECT churned, renewed, active_members, churn_rate FROM kpi.monthly_churn").fetchone()
    assert n_labels > 500 and 0.03 < churn_rate < 0.2
    assert n_features == n_labels and as_ofs == 1
    churned, renewed, active, rate = kpi
    assert churned + renewed == n_labels and abs(rate - churned / active) < 1e-12
    assert (data_dir / "reports" / "kpi" / "monthly_churn.png").stat().st_size > 1000


@pytest.mark.slow
def test_latest_month_labels_are_marked_not_final(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, *MONTHS[:2])
    for month in MONTHS[:2]:
        _run(raw_assets, f"{month}-01", instance)
    result = _run(features_assets, "2016-09-01", instance)
    meta = result.asset_materializations_for_node("features__labels")[0].metadata
    assert meta["final"].value is False and "not final" in meta["note"].value


def test_labels_asset_called_directly_on_hand_written_transactions(tmp_path):
    """The fast layer's direct-asset test: the labels asset on a tmp warehouse holding three members'
    transactions, with the agreement check against one published label. No Dagster instance."""
    from churn_assets.defs.features.assets import labels
    from churn_assets_tests.test_labels import RAW_SCHEMA, d

    db = tmp_path / "warehouse.duckdb"
    rows = []
    for msno, renewal in (("stays", "2017-02-25"), ("leaves", None), ("late", "2017-04-10")):
        rows.append((msno, 41, 30, 99, 99, 1, d("2017-01-20"), d("2017-02-19"), 0, d("2017-01-01")))
        if renewal:
            rows.append((msno, 41, 30, 99, 99, 1, d(renewal), d(renewal) + dt.timedelta(days=30), 0,
                         d(renewal).replace(day=1)))
    for day in ("2017-03-31", "2017-04-30"):  # the drops through April: February's renewals are final
        rows.append(("watermark", 41, 30, 99, 99, 1, d(day), d(day) + dt.timedelta(days=30), 0, d(day).replace(day=1)))
    with duckdb.connect(str(db)) as con:
        con.execute(RAW_SCHEMA.read_text())
        con.executemany("INSERT INTO raw.transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("INSERT INTO raw.churn_labels VALUES ('leaves', DATE '2017-02-01', 1)")
    context = dg.build_asset_context(partition_key="2017-02-01")
    outputs = list(labels(context, warehouse=Warehouse(database=str(db)), storage=Storage(data_dir=str(tmp_path))))
    materialization, check = outputs
    assert materialization.metadata["candidates"] == 3 and materialization.metadata["final"] is True
    assert check.passed and check.metadata["published_labels"].value == 1
    assert check.metadata["agreement_rate"].value == 1.0
    with duckdb.connect(str(db), read_only=True) as con:
        churn = dict(con.execute("SELECT msno, is_churn FROM features.labels").fetchall())
    assert churn == {"stays": 0, "leaves": 1, "late": 1}
    assert any((tmp_path / "analytics" / "features" / "labels").glob("*.parquet"))  # published explicitly
