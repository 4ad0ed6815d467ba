"""Shared fixtures: one tiny synthetic world per session, and a fresh data dir,
warehouse and Dagster instance per test that needs them."""
from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

# Longest files first (measured durations): pytest-xdist hands one file at a time to the first
# free worker, so starting the long ones first leaves short files to even out the end instead
# of one worker finishing a long file alone (longest-processing-time-first scheduling). The
# Makefile passes --no-loadscope-reorder: by default xdist re-sorts files by their number of
# tests, which put these one-test files last.
LONGEST_FIRST = (
    "test_loop_shift_world.py", "test_loop_stationary_world.py", "test_marketing_effect_truth.py",
    "test_reliability_idempotence.py", "test_synthetic_treatments.py", "test_monitoring_assets.py",
    "test_reliability_concurrency.py", "test_backfill_multiprocess.py", "test_model_under_treatment.py",
    "test_serving_log.py", "test_dagster_cli.py", "test_model_assets.py", "test_postgres_profile.py",
    "test_webserver_graphql.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


TINY_WORLD = {"members": 3_000, "start": "2016-07", "months": 8, "seed": 11, "scenarios": [("none", "2016-07")]}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A generated world (landing drops + oracle), generated once per session. Read-only."""
    from churn_assets.synthetic.simulator import generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    generate_world(out, progress=False, **TINY_WORLD)
    return out


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty CHURN_DATA_DIR with its warehouse and MLflow store inside tmp_path."""
    data = tmp_path / "data"
    (data / "landing").mkdir(parents=True)
    monkeypatch.setenv("CHURN_DATA_DIR", str(data))
    monkeypatch.delenv("CHURN_DUCKDB_PATH", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{data}/mlflow/mlflow.db")
    (data / "mlflow").mkdir()
    for name in ("CHURN_SMTP_HOST", "CHURN_SMTP_TO"):
        monkeypatch.delenv(name, raising=False)
    return data


def deliver(world: Path, data: Path, *months: str) -> None:
    """Copy drop folders of the tiny world into the test's landing area."""
    for month in months:
        shutil.copytree(world / "landing" / month, data / "landing" / month, dirs_exist_ok=True)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def defs(data_dir):
    """Definitions built against the test's data dir (resources read the env at build time)."""
    from churn_assets.definitions import build_definitions

    return build_definitions()


def repo_instance_config(storage_dir: Path) -> dict:
    """The repo's dagster.yaml with its relative data/dagster paths moved under `storage_dir`,
    so a test instance built from it never writes into the checkout's data/."""
    import yaml

    config = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())
    for section in ("local_artifact_storage", "compute_logs"):
        config[section]["config"]["base_dir"] = str(storage_dir / Path(config[section]["config"]["base_dir"]).relative_to("data/dagster"))
    config["storage"]["sqlite"]["base_dir"] = str(storage_dir)
    return config


def test_resources(**overrides) -> dict:
    """The local resource set for the current CHURN_DATA_DIR (see `data_dir`), with `overrides`."""
    from churn_assets.defs.resources import local_resources

    return {**local_resources(), **overrides}
