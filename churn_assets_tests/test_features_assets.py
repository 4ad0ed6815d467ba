"""Labels, training features and KPI assets on a generated world through Dagster."""
import dagster as dg
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


def test_latest_month_labels_are_marked_not_final(tiny_world, data_dir, instance):
    deliver(tiny_world, data_dir, *MONTHS[:2])
    for month in MONTHS[:2]:
        _run(raw_assets, f"{month}-01", instance)
    result = _run(features_assets, "2016-09-01", instance)
    meta = result.asset_materializations_for_node("features__labels")[0].metadata
    assert meta["final"].value is False and "not final" in meta["note"].value
