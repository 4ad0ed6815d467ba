"""marketing/treatments: who is contacted each week, in which arm, with which action.

Scores and scoring features are written by hand into a real DuckDB file (no model, no raw
data): members expire on spread-out days, so a member is scored in several consecutive
weeks of the same expiry cycle, which is exactly what contact suppression is for."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.core.buckets import actions_for, assign_buckets
from churn_assets.defs.keys import MARKETING_TREATMENTS
from churn_assets.defs.marketing.assets import CONTROL_BALANCE, treatments
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.marketing.balance import control_balance, experiment_to_date
from churn_assets.marketing.queries import TREATMENTS_TABLE, read_earlier_treatments, read_scored_week
from churn_assets.marketing.treatments import (
    CONTROL,
    CONTROL_ACTION,
    DEFAULT_SALT,
    FREE_TRIAL_B_ACTION,
    TREATED,
    TREATMENT_COLUMNS,
    assign_treatments,
    control_arm,
    hash_unit,
    new_contacts,
)
from churn_assets.scoring.queries import FEATURES_TABLE, SCORES_TABLE, read_week
from churn_assets.scoring.report import CSV_COLUMNS, build_report
from churn_assets.scoring.scores import SCORE_COLUMNS
from churn_assets.sql import replace_partition

MONDAY = dt.date(2017, 3, 6)
WEEKS = [MONDAY + dt.timedelta(days=7 * i) for i in range(5)]
N_MEMBERS = 3_000


def _world(n: int = N_MEMBERS, seed: int = 3) -> pd.DataFrame:
    """msno, membership_expire_date (spread over 60 days from MONDAY), a churn probability,
    and the last plan's price: every 10th member paid nothing (trial), every 17th plan is free."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    return pd.DataFrame({
        "msno": [f"m{k:05d}" for k in i],
        "membership_expire_date": [MONDAY + dt.timedelta(days=int(k % 60)) for k in i],
        "churn_probability": rng.uniform(0.0, 1.0, n),
        "last_amount_paid": np.where(i % 10 == 0, 0, 149),
        "last_list_price": np.where(i % 17 == 0, 0, 149),
    })


def _scores(world: pd.DataFrame, week: dt.date) -> pd.DataFrame:
    """scoring.churn_scores rows (SCORE_COLUMNS) of the members expiring in [week, week + 30 d)."""
    expire = pd.to_datetime(world["membership_expire_date"])
    rows = world[(expire >= pd.Timestamp(week)) & (expire < pd.Timestamp(week + dt.timedelta(days=30)))].copy()
    p = rows["churn_probability"].to_numpy()
    rows["week_start"] = week
    rows["days_to_expiry"] = (pd.to_datetime(rows["membership_expire_date"]) - pd.Timestamp(week)).dt.days.astype("int32")
    rows["bucket"] = assign_buckets(p)
    rows["action"] = actions_for(rows["bucket"].to_numpy())
    rows["discount_pct"] = np.where(rows["bucket"] == "B", np.where(p >= 0.51, 20, 10), 0).astype("int32")
    rows["reason_1"] = np.where(rows["bucket"] == "C", None, "no listening for 12 days")
    rows["reason_2"] = None
    rows["reason_3"] = None
    rows["model_version"] = "7"
    rows["scored_at"] = pd.Timestamp(week) + pd.Timedelta(hours=6)
    return rows.reset_index(drop=True)


def _write_scores(con: duckdb.DuckDBPyConnection, world: pd.DataFrame, week: dt.date) -> int:
    """Write the week's scores and the two scoring_features columns the treatments read."""
    scores = _scores(world, week)
    replace_partition(con, SCORES_TABLE, scores[SCORE_COLUMNS], "week_start", week)
    features = scores[["week_start", "msno", "last_amount_paid", "last_list_price"]]
    replace_partition(con, FEATURES_TABLE, features, "week_start", week)
    return len(scores)


def _assign_week(con: duckdb.DuckDBPyConnection, week: dt.date, share: float = 0.10) -> pd.DataFrame:
    """What the asset does, without Dagster: read, assign, write the week."""
    rows = assign_treatments(read_scored_week(con, week), read_earlier_treatments(con, week), share, DEFAULT_SALT)
    replace_partition(con, TREATMENTS_TABLE, rows, "week_start", week, dates=["week_start", "membership_expire_date"])
    return rows


def _table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM {TREATMENTS_TABLE} ORDER BY week_start, msno").df()


@pytest.fixture
def con(tmp_path):
    with duckdb.connect(str(tmp_path / "churn.duckdb")) as connection:
        yield connection


def test_rows_in_equal_rows_out_and_once_per_cycle(con):
    world = _world()
    seen: set[tuple[str, dt.date]] = set()
    for week in WEEKS:
        scored = _write_scores(con, world, week)
        rows = _assign_week(con, week)
        scores = read_scored_week(con, week)
        assert list(rows.columns) == TREATMENT_COLUMNS
        # every new contact is in exactly one arm, once
        assert set(rows["arm"]) <= {TREATED, CONTROL} and rows["msno"].is_unique
        cycles = set(zip(rows["msno"], rows["membership_expire_date"]))
        already = {c for c in zip(scores["msno"], pd.to_datetime(scores["membership_expire_date"]).dt.date) if c in seen}
        assert not cycles & seen  # nobody contacted twice in one cycle
        assert len(rows) + len(already) == scored  # suppressed + new = this week's scored rows
        assert set(rows["msno"]) | {m for m, _ in already} == set(scores["msno"])
        seen |= cycles
        print(f"{week}: scored {scored}, new {len(rows)} ({(rows['arm'] == CONTROL).sum()} control), "
              f"suppressed {len(already)}")
    table = _table(con)
    assert not table.duplicated(["msno", "membership_expire_date"]).any()
    reached = (pd.to_datetime(world["membership_expire_date"]) < pd.Timestamp(WEEKS[-1] + dt.timedelta(days=30))).sum()
    assert len(table) == reached  # each member has one cycle here: contacted once, if ever scored


def test_a_renewal_starts_a_new_cycle():
    world = _world(4)
    first = assign_treatments(_scores(world, MONDAY), None)
    renewed = world.assign(membership_expire_date=world["membership_expire_date"] + dt.timedelta(days=30))
    later = _scores(renewed, MONDAY + dt.timedelta(days=28))  # m00000 renewed on day 0, now expires day 30
    again = new_contacts(later, first)
    assert "m00000" in set(again["msno"])  # same member, new expiry date: a new contact
    assert new_contacts(_scores(world, MONDAY + dt.timedelta(days=1)), first).empty  # same cycles: suppressed


def test_an_empty_first_week_then_a_full_one(con):
    world = _world(200)
    _write_scores(con, world, MONDAY)
    _write_scores(con, world, MONDAY + dt.timedelta(days=7 * 12))  # nobody expires then: an empty week
    assert _assign_week(con, MONDAY + dt.timedelta(days=7 * 12)).empty
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {TREATMENTS_TABLE})").fetchall())
    assert types["msno"] == "VARCHAR" and types["arm"] == "VARCHAR" and types["week_start"] == "DATE"
    scored = len(read_scored_week(con, MONDAY))
    assert scored and len(_assign_week(con, MONDAY)) == scored  # the empty week is later: it suppresses nothing


def test_control_share_near_ten_percent_and_stable():
    ids = pd.Series([f"member-{i}" for i in range(20_000)])
    expire = pd.Series([dt.date(2017, 3, 6) + dt.timedelta(days=i % 30) for i in range(20_000)])
    control = control_arm(ids, expire, 0.10, DEFAULT_SALT)
    share = float(control.mean())
    print(f"control share on 20k ids: {share:.4f}")
    assert 0.09 < share < 0.11  # binomial sd 0.0021
    # the draw depends on the values only: other types, other order, a scalar call, the same arms
    as_text = control_arm(ids[::-1].to_numpy(), pd.to_datetime(expire[::-1]).to_numpy(), 0.10, DEFAULT_SALT)
    assert (as_text[::-1] == control).all()
    assert bool(control_arm(ids[0], expire[0].isoformat(), 0.10, DEFAULT_SALT)[0]) == bool(control[0])
    # a larger share keeps everyone already held out; another cycle or salt draws anew
    assert (control_arm(ids, expire, 0.20, DEFAULT_SALT)[control]).all()
    next_cycle = control_arm(ids, expire + dt.timedelta(days=30), 0.10, DEFAULT_SALT)
    assert (next_cycle != control).mean() > 0.1
    units = hash_unit(ids, expire, DEFAULT_SALT)
    assert units.min() >= 0.0 and units.max() < 1.0
    assert not control_arm(ids, expire, 0.0, DEFAULT_SALT).any()
    with pytest.raises(ValueError, match="control share"):
        control_arm(ids, expire, 1.0, DEFAULT_SALT)


def test_rematerialising_a_week_never_redraws_the_control_group(con):
    world = _world()
    for week in WEEKS[:2]:
        _write_scores(con, world, week)
        _assign_week(con, week)
    before = _table(con)
    _assign_week(con, WEEKS[0])  # an earlier week again, after a later one exists
    _assign_week(con, WEEKS[1])
    after = _table(con)
    pd.testing.assert_frame_equal(before, after)  # same rows, same arms, byte for byte
    assert before.to_csv(index=False) == after.to_csv(index=False)
    # a re-score (new probabilities, new model) changes the scores carried, not the arms
    rescored = world.assign(churn_probability=1.0 - world["churn_probability"])
    _write_scores(con, rescored, WEEKS[1])
    _assign_week(con, WEEKS[1])
    redone = _table(con)
    assert list(redone["arm"]) == list(before["arm"]) and list(redone["msno"]) == list(before["msno"])
    assert not np.allclose(redone["churn_probability"], before["churn_probability"])


def test_two_consecutive_weeks_contact_once_and_csv_lists_once(con, tmp_path):
    world = _world()
    csv_rows = []
    for week in WEEKS:
        _write_scores(con, world, week)
        _assign_week(con, week)
        scores, week_treatments = read_week(con, SCORES_TABLE, week), read_week(con, TREATMENTS_TABLE, week)
        files = build_report(scores, None, week, tmp_path / str(week), treatments=week_treatments)
        csv = pd.read_csv(files.csv_path, dtype={"msno": str})
        assert list(csv.columns) == CSV_COLUMNS
        treated = week_treatments[week_treatments["arm"] == TREATED]
        assert sorted(csv["msno"]) == sorted(treated["msno"])  # new contacts of the treated arm only
        assert "held out as control" in files.markdown and "Retention experiment" in files.html_path.read_text()
        csv_rows.append(csv)
    listed = pd.concat(csv_rows, ignore_index=True)
    assert not listed.duplicated(["msno", "membership_expire_date"]).any()  # never twice in one cycle
    assert listed["msno"].is_unique  # one cycle each in this world: never twice at all
    # a member expiring on day 20 is scored in weeks 1-3 but contacted in week 1 only
    table = _table(con)
    member = world.loc[world["membership_expire_date"] == MONDAY + dt.timedelta(days=20), "msno"].iloc[0]
    scored_in = [w for w in WEEKS if member in set(read_week(con, SCORES_TABLE, w)["msno"])]
    assert scored_in == WEEKS[:3]
    assert list(pd.to_datetime(table.loc[table["msno"] == member, "week_start"]).dt.date) == [WEEKS[0]]
    controls = set(table.loc[table["arm"] == CONTROL, "msno"])
    assert controls and not controls & set(listed["msno"])  # the hold-out is never in the e-mail
    print(f"CSV rows over {len(WEEKS)} weeks: {len(listed)}, all distinct; control never listed: {len(controls)}")


def test_free_and_trial_members_get_no_discount():
    scores = _scores(_world(), MONDAY)
    rows = assign_treatments(scores, None)
    free = rows["free_or_trial"]
    paid = scores.set_index("msno").loc[rows["msno"], "last_amount_paid"].to_numpy()
    listed = scores.set_index("msno").loc[rows["msno"], "last_list_price"].to_numpy()
    assert (free.to_numpy() == ((paid == 0) | (listed == 0))).all() and free.any()
    assert (rows.loc[free, "discount_pct"] == 0).all()
    free_b = rows[free & (rows["bucket"] == "B") & (rows["arm"] == TREATED)]
    assert len(free_b) and (free_b["action"] == FREE_TRIAL_B_ACTION).all()
    free_a = rows[free & (rows["bucket"] == "A") & (rows["arm"] == TREATED)]
    assert len(free_a) and free_a["action"].str.startswith("call").all()  # still called
    paying_b = rows[~free & (rows["bucket"] == "B") & (rows["arm"] == TREATED)]
    assert (paying_b["discount_pct"] > 0).all()  # the offer stands for paying members
    control = rows[rows["arm"] == CONTROL]
    assert set(control["bucket"]) == {"A", "B", "C"}  # every bucket has a hold-out, C included
    assert (control["action"] == CONTROL_ACTION).all() and (control["discount_pct"] == 0).all()
    assert control["churn_probability"].notna().all()  # still scored
    print(f"free/trial: {int(free.sum())} of {len(rows)}, {len(free_b)} treated B reminded instead of a discount")


def test_balance_check_passes_random_and_fails_unbalanced():
    rng = np.random.default_rng(0)
    n = 20_000
    p = rng.uniform(0.0, 1.0, n)
    frame = pd.DataFrame({"churn_probability": p, "bucket": assign_buckets(p)})
    ids = pd.Series([f"x{i}" for i in range(n)])
    frame["arm"] = np.where(control_arm(ids, pd.Series([MONDAY] * n), 0.10, DEFAULT_SALT), CONTROL, TREATED)
    fair = control_balance(frame)
    assert fair.judged and fair.passed, fair.reasons
    assert fair.chi2_p is not None  # scipy is installed here
    # a hold-out drawn from the riskiest members: both tests fail
    skewed = frame.assign(arm=np.where(frame["churn_probability"].rank(pct=True) > 0.9, CONTROL, TREATED))
    unfair = control_balance(skewed)
    assert unfair.judged and not unfair.passed
    assert unfair.smd < -0.1 and unfair.chi2_p < 0.01, unfair.reasons
    # same mean probability, different bucket mix (a hold-out of A and C only): the chi-square catches it
    mix = frame.copy()
    mix.loc[mix["arm"] == CONTROL, "bucket"] = np.where(mix.loc[mix["arm"] == CONTROL, "churn_probability"] >= 0.5, "A", "C")
    mixed = control_balance(mix)
    assert abs(mixed.smd) < 0.1 and mixed.chi2_p < 0.01 and not mixed.passed
    print(f"balance: fair SMD {fair.smd:+.4f} p {fair.chi2_p:.3f}; skewed SMD {unfair.smd:+.2f}; "
          f"bucket mix p {mixed.chi2_p:.2e}")
    small = control_balance(frame.head(50))
    assert not small.judged and small.passed and "not judged" in small.reasons[0]
    both = experiment_to_date(frame.head(10), frame.tail(5))
    assert len(both) == 15 and list(both.columns) == ["arm", "bucket", "churn_probability"]


def _check(result) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == CONTROL_BALANCE and evaluation.asset_key == MARKETING_TREATMENTS
    return evaluation


def test_asset_over_two_weeks(tmp_path: Path, instance):
    db = tmp_path / "churn.duckdb"
    world = _world(8_000)
    with duckdb.connect(str(db)) as con:
        scored = {week: _write_scores(con, world, week) for week in WEEKS[:2]}
    resources = {"warehouse": Warehouse(database=str(db)), "storage": Storage(data_dir=str(tmp_path))}

    def run(week: dt.date):
        result = dg.materialize([treatments], partition_key=week.isoformat(), instance=instance, resources=resources)
        assert result.success
        [event] = result.asset_materializations_for_node("marketing__treatments")
        return {k: getattr(v, "value", v) for k, v in event.metadata.items()}, _check(result)

    first, first_check = run(WEEKS[0])
    assert first["suppressed"] == 0 and first["new_contacts"] == scored[WEEKS[0]]
    second, second_check = run(WEEKS[1])
    assert second["suppressed"] + second["new_contacts"] == second["scored"] == scored[WEEKS[1]]
    assert second["suppressed"] > 0
    for meta in (first, second):
        arms = sum(meta[f"{arm}_{b}"] for arm in (TREATED, CONTROL) for b in "ABC")
        assert arms == meta["new_contacts"] == meta["dagster/row_count"]
        assert min(meta[f"control_{b}"] for b in "ABC") > 0
    with duckdb.connect(str(db)) as con:
        before = _table(con)
    again, _ = run(WEEKS[0])  # re-materialised after the later week: same rows
    with duckdb.connect(str(db)) as con:
        pd.testing.assert_frame_equal(_table(con), before)
        table = _table(con)
    assert again["new_contacts"] == first["new_contacts"]
    assert not table.duplicated(["msno", "membership_expire_date"]).any()
    # the check judged the experiment to date: both weeks' rows in the second run
    assert second_check.severity == dg.AssetCheckSeverity.WARN
    assert second_check.metadata["n_treated"].value + second_check.metadata["n_control"].value == len(table)
    assert second_check.passed == control_balance(table).passed and second_check.metadata["judged"].value
    assert (tmp_path / "analytics" / "marketing" / "treatments").is_dir()  # published for analysts
    print(f"asset: week 1 new {first['new_contacts']}, week 2 scored {second['scored']}, new {second['new_contacts']}, "
          f"suppressed {second['suppressed']}; check {second_check.description}")


def test_asset_fails_clearly_without_scores(tmp_path, instance):
    resources = {"warehouse": Warehouse(database=str(tmp_path / "empty.duckdb")), "storage": Storage(data_dir=str(tmp_path))}
    result = dg.materialize([treatments], partition_key=MONDAY.isoformat(), instance=instance, resources=resources,
                            raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "materialise scoring/churn_scores" in failure.step_failure_data.user_failure_data.description
