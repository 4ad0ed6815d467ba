"""The plain Dagster CLI on the repo's instance config, with nothing but DAGSTER_HOME set: what a
Dagster user types (`dagster asset materialize -m churn_assets.definitions ...`) must work, and the
instance must keep its storage in data/dagster, not beside the config."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from churn_assets_tests.conftest import deliver

pytestmark = pytest.mark.slow  # a system test: see `make test-fast`

REPO = Path(__file__).parents[1]
MONTH = "2016-09"


def test_asset_materialize_with_only_dagster_home(tiny_world, tmp_path):
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    deliver(tiny_world, tmp_path / "data", MONTH)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)), "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run([str(dagster), "asset", "materialize", "-m", "churn_assets.definitions",
                          "--select", "raw/members,raw/transactions", "--partition", f"{MONTH}-01"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RUN_SUCCESS" in out.stderr + out.stdout
    # defaults from the repo layout: the warehouse under data/, the instance under data/dagster
    with duckdb.connect(str(tmp_path / "data" / "warehouse" / "churn.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0] > 0
    assert any((tmp_path / "data" / "dagster").rglob("runs.db"))
    assert not {"storage", "history", "schedules"} & {p.name for p in tmp_path.iterdir()}
