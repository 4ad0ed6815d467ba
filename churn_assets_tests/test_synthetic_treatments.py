"""The world that answers: stepped week by week with treatments drawn from what was delivered.

A 3k-member world is advanced Monday by Monday. Each Monday a stand-in for the marketing
asset contacts the members whose latest delivered transaction expires in the next 30 days,
once per expiry, with an action drawn from a fixed hash. The checks: nothing delivered
before a Monday ever changes afterwards; the same treatments give the same bytes; a world
where nothing works is byte-identical to the untreated one; the oracle records what each
member received, and treated members churn less than their untreated probability says.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn_assets.core.buckets import ACTIONS
from churn_assets.marketing.treatments import CONTROL_ACTION
from churn_assets.synthetic.delivery import DATED_COLUMN, read_dated
from churn_assets_tests.treated_world import run_treated_world
from churn_assets.synthetic.effects import NO_EFFECTS, Effects, action_kinds, effect_logit
from churn_assets.synthetic.simulator import SyntheticWorld, generate_world

WORLD = dict(members=3_000, start="2016-07", months=7, seed=5, scenarios=())
FIRST_MONDAY = dt.date(2016, 9, 5)
POLICY = [(ACTIONS["A"], 0), (ACTIONS["B"], 20), (ACTIONS["B"], 10), (ACTIONS["C"], 0), (CONTROL_ACTION, 0)]


def _hash_policy(due: pd.DataFrame, monday: dt.date) -> pd.DataFrame:
    """An action per due member from a fixed hash of its id."""
    pick = [int(hashlib.blake2b(m.encode(), digest_size=2).hexdigest(), 16) % len(POLICY) for m in due["msno"]]
    return pd.DataFrame({"msno": due["msno"].to_numpy(), "membership_expire_date": due["membership_expire_date"].to_numpy(),
                         "week_start": monday, "action": [POLICY[i][0] for i in pick],
                         "discount_pct": [POLICY[i][1] for i in pick]})


def _run(out: Path, effects: Effects, snapshots: dict | None = None) -> tuple[SyntheticWorld, pd.DataFrame]:
    return run_treated_world(out, WORLD, effects, _hash_policy, FIRST_MONDAY, snapshots)


@pytest.fixture(scope="module")
def treated(tmp_path_factory):
    out = tmp_path_factory.mktemp("treated")
    snapshots: dict = {}
    world, treatments = _run(out, Effects(), snapshots)
    return out, world, treatments, snapshots


def test_nothing_delivered_before_a_monday_changes_later(treated):
    out, _, treatments, snapshots = treated
    assert len(treatments) > 3000 and snapshots
    changed = [key for key, content in snapshots.items()
               if read_dated(out / key[0], DATED_COLUMN[Path(key[0]).name]).before(key[1]) != content]
    assert changed == []


def test_the_oracle_records_each_treatment_and_its_truth(treated):
    out, world, treatments, _ = treated
    oracle = pd.read_parquet(out / "oracle" / "renewals.parquet")
    assert {"action", "discount_pct", "p_untreated", "p_treated"} <= set(oracle.columns)
    assert (oracle["p_treated"] == oracle["true_churn_probability"]).all()
    untreated = oracle["action"] == "none"
    assert (oracle.loc[untreated, "p_treated"] == oracle.loc[untreated, "p_untreated"]).all()
    got = oracle[~untreated]
    assert set(got["action"]) == {"call", "discount", "appreciation"}
    assert (got["p_treated"] <= got["p_untreated"]).all()          # every effect keeps, never pushes
    acted = got[got["p_treated"] < got["p_untreated"]]
    assert len(acted) > 0.6 * len(got)                              # most contacts came in time
    # realised churn of the acted-on matches their treated probability, not the untreated one
    assert abs(acted["is_churn"].mean() - acted["p_treated"].mean()) < 3 * np.sqrt(acted["p_treated"].mean() / len(acted))
    assert acted["p_treated"].mean() < 0.9 * acted["p_untreated"].mean()
    summary = world.summary()["treatments"]
    assert summary["unmatched_treatments"] < 0.05 * len(treatments)


def test_effects_are_heterogeneous():
    kind = action_kinds(pd.Series([ACTIONS["A"]] * 2 + [ACTIONS["B"]] * 2), pd.Series([0, 0, 20, 20]))
    shift = effect_logit(Effects(), kind, np.array([0, 0, 20, 20]), manual=np.array([True, False, False, False]),
                         cancelled=np.array([False, False, False, False]), engagement=np.array([0.0, 0.0, 1.0, -2.0]),
                         price_sens=np.array([0.0, 0.0, 1.0, 1.0]))
    assert shift[0] < shift[1] < 0                    # a call helps a manual payer more
    assert shift[2] < shift[3] < 0 and shift[3] > 0.1 * shift[2]   # a discount does little once listening stopped
    with pytest.raises(ValueError, match="unknown action"):
        action_kinds(pd.Series(["sing a song"]), pd.Series([0]))
    assert action_kinds(pd.Series([ACTIONS["B"]]), pd.Series([0])).tolist() == [0]   # B without a rung: none


def test_same_treatments_same_bytes_and_a_world_where_nothing_works(treated, tmp_path):
    out, _, treatments, _ = treated
    again = SyntheticWorld(tmp_path / "again", **WORLD)
    monday = FIRST_MONDAY
    while monday < again.end:                         # the same calls with the same treatments
        again.advance(monday, treatments[pd.to_datetime(treatments["week_start"]) < pd.Timestamp(monday)])
        monday += dt.timedelta(days=7)
    again.advance(None, treatments)
    nothing = SyntheticWorld(tmp_path / "nothing", effects=NO_EFFECTS, **WORLD)
    nothing.advance(None, treatments)
    generate_world(tmp_path / "plain", progress=False, **WORLD)
    files = sorted(p.relative_to(out) for p in out.rglob("*.csv"))
    assert files and all((out / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)
    assert all((tmp_path / "nothing" / f).read_bytes() == (tmp_path / "plain" / f).read_bytes() for f in files)
    assert any((out / f).read_bytes() != (tmp_path / "plain" / f).read_bytes() for f in files)


def test_history_cannot_be_rewritten(tmp_path):
    world = SyntheticWorld(tmp_path, **WORLD)
    world.advance(dt.date(2016, 10, 3))
    late = pd.DataFrame({"msno": ["x"], "membership_expire_date": [dt.date(2016, 10, 20)],
                         "week_start": [dt.date(2016, 9, 26)], "action": [ACTIONS["A"]], "discount_pct": [0]})
    with pytest.raises(ValueError, match="cannot rewrite"):
        world.advance(dt.date(2016, 10, 10), late)
    with pytest.raises(ValueError, match="cannot go back"):
        world.advance(dt.date(2016, 9, 26))
