"""marketing/retention_effect: churn of the treated arm against the hold-out, once labels are final.

Hand-built frames for the statistics (planted effects from seeded draws), a real DuckDB file
for the join and the asset; a month is made final by hand-written raw transactions that take
the data watermark past it (as in test_features_assets)."""
from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.core.buckets import ACTIONS
from churn_assets.defs.marketing.assets import retention_effect
from churn_assets.defs.resources import Storage, Warehouse
from churn_assets.demo_story import RETENTION_TITLE
from churn_assets.marketing.effect import SUMMARY_COLUMNS, retention_table
from churn_assets.marketing.effect import (
    ALL, BUCKET, EFFECT_COLUMNS, INPUT_COLUMNS, MONTH, NEWCOMBE, RUNG, WALD, criterion_held, criterion_history,
    criterion_streak, fieller_relative_reduction, measure_effect, newcombe_interval, wilson_interval,
)
from churn_assets.marketing.queries import EFFECT_TABLE, LABELS_TABLE, TREATMENTS_TABLE, read_effect_inputs, read_month_summaries
from churn_assets.marketing.treatments import CONTROL, CONTROL_ACTION, FREE_TRIAL_B_ACTION, TREATED, TREATMENT_COLUMNS
from churn_assets.scoring.queries import FEATURES_TABLE, SCORES_TABLE
from churn_assets.sql import replace_partition

MARCH = dt.date(2017, 3, 1)
MONDAY = dt.date(2017, 2, 20)
DISCOUNT = ACTIONS["B"]


def _arm(n: int, p: float, arm: str, rng: np.random.Generator, bucket: str = "B", action: str = DISCOUNT,
         discount: int = 10, tag: str = "", free: bool = False) -> pd.DataFrame:
    """INPUT_COLUMNS rows of n members of one arm with churn drawn at rate p (all matched).
    action / discount: the treated arm's, and what the control arm's score proposed."""
    return pd.DataFrame({
        "week_start": MONDAY, "msno": [f"{arm}-{bucket}-{action[:4]}-{discount}-{tag}{i}" for i in range(n)],
        "membership_expire_date": MARCH + dt.timedelta(days=9), "bucket": bucket, "arm": arm,
        "action": action if arm == TREATED else CONTROL_ACTION, "discount_pct": discount if arm == TREATED else 0,
        "free_or_trial": free, "scored_action": action, "scored_discount_pct": discount,
        "last_list_price": 149.0, "last_plan_days": 30.0,
        "is_churn": (rng.random(n) < p).astype(float), "matched": True,
    })[INPUT_COLUMNS]


def _row(rows: pd.DataFrame, level: str, bucket: str = ALL, discount: int | None = None, action: str | None = None):
    pick = (rows["level"] == level) & (rows["bucket"] == bucket)
    if discount is not None:
        pick &= rows["discount_pct"] == discount
    if action is not None:
        pick &= rows["action"] == action
    [index] = np.flatnonzero(pick.fillna(False).to_numpy(dtype=bool))
    return rows.iloc[index]


def test_planted_effect_is_covered_and_excludes_zero():
    rng = np.random.default_rng(14)
    inputs = pd.concat([_arm(6_000, 0.30, TREATED, rng), _arm(1_000, 0.40, CONTROL, rng)], ignore_index=True)
    result = measure_effect(inputs, MARCH)
    assert list(result.rows.columns) == EFFECT_COLUMNS
    assert list(result.rows["level"]) == [RUNG, BUCKET, MONTH]
    rung = _row(result.rows, RUNG, "B", 10)
    assert rung["n_treated"] == 6_000 and rung["n_control"] == 1_000 and rung["ci_method"] == NEWCOMBE
    assert rung["ci_low"] < 0.10 < rung["ci_high"] and rung["ci_low"] > 0  # covers the truth, excludes 0
    assert abs(rung["effect"] - (rung["churn_rate_control"] - rung["churn_rate_treated"])) < 1e-12
    assert rung["rr_ci_low"] < 0.25 < rung["rr_ci_high"] and rung["rr_ci_low"] > 0  # (0.40 - 0.30) / 0.40
    assert rung["incremental_retained"] == pytest.approx(rung["effect"] * 6_000)
    # 6 months of 149 a month from each of the 6,000, the effect paying 90 %, minus 10 % to the stayers
    expected = 6 * 149.0 * 6_000 * (rung["effect"] * 0.9 - (1 - rung["churn_rate_control"]) * 0.1)
    assert rung["net_revenue"] == pytest.approx(expected)
    month = result.summary
    assert month["ci_method"] == WALD and month["ci_low"] < 0.10 < month["ci_high"] and month["ci_low"] > 0
    assert month["net_revenue"] == pytest.approx(rung["net_revenue"])  # the sum of its one rung
    assert result.rows_in == result.matched == 7_000 and result.unmatched == 0
    print(f"planted 0.10: effect {rung['effect']:.4f} CI [{rung['ci_low']:.4f}, {rung['ci_high']:.4f}] (Newcombe), "
          f"month [{month['ci_low']:.4f}, {month['ci_high']:.4f}] (Wald); relative reduction {rung['relative_reduction']:.3f} "
          f"[{rung['rr_ci_low']:.3f}, {rung['rr_ci_high']:.3f}] (planted 0.25); net revenue {rung['net_revenue']:.0f}")


def test_zero_effect_interval_covers_zero():
    rng = np.random.default_rng(15)
    inputs = pd.concat([_arm(6_000, 0.30, TREATED, rng), _arm(1_000, 0.30, CONTROL, rng)], ignore_index=True)
    result = measure_effect(inputs, MARCH)
    for row in (_row(result.rows, RUNG, "B", 10), _row(result.rows, BUCKET, "B"), result.summary):
        assert row["ci_low"] < 0 < row["ci_high"]
        assert row["rr_ci_low"] < 0 < row["rr_ci_high"]
    month = result.summary
    print(f"zero effect: effect {month['effect']:+.4f} CI [{month['ci_low']:+.4f}, {month['ci_high']:+.4f}], "
          f"relative reduction {month['relative_reduction']:+.3f} [{month['rr_ci_low']:+.3f}, {month['rr_ci_high']:+.3f}]")


def test_interval_coverage_over_200_simulations():
    sims = 200
    rng = np.random.default_rng(2017)
    k_t, k_c = rng.binomial(6_000, 0.30, sims), rng.binomial(1_000, 0.40, sims)
    low, high = newcombe_interval(k_c, 1_000, k_t, 6_000)
    coverage = float(((low <= 0.10) & (0.10 <= high)).mean())
    r_t, r_c = k_t / 6_000, k_c / 1_000
    _, rr_low, rr_high = fieller_relative_reduction(r_t, r_t * (1 - r_t) / 6_000, r_c, r_c * (1 - r_c) / 1_000)
    rr_coverage = float(((rr_low <= 0.25) & (0.25 <= rr_high)).mean())
    # a small rung: 400 treated at 5 %, 50 control at 8 %, where Wald's interval is too narrow
    s_t, s_c = rng.binomial(400, 0.05, sims), rng.binomial(50, 0.08, sims)
    s_low, s_high = newcombe_interval(s_c, 50, s_t, 400)
    small = float(((s_low <= 0.03) & (0.03 <= s_high)).mean())
    p_t, p_c = s_t / 400, s_c / 50
    half = 1.959964 * np.sqrt(p_t * (1 - p_t) / 400 + p_c * (1 - p_c) / 50)
    wald = float((np.abs(p_c - p_t - 0.03) <= half).mean())
    # the whole measurement, month row (Wald, bucket-weighted) included, on two buckets
    month_hits = rung_hits = 0
    template = pd.concat([_arm(1_500, 0.30, TREATED, rng), _arm(250, 0.40, CONTROL, rng),
                          _arm(1_500, 0.10, TREATED, rng, bucket="C", action=ACTIONS["C"], discount=0),
                          _arm(250, 0.15, CONTROL, rng, bucket="C", action=ACTIONS["C"], discount=0)], ignore_index=True)
    truth = np.repeat([0.30, 0.40, 0.10, 0.15], [1_500, 250, 1_500, 250])
    for seed in range(sims):
        churned = (np.random.default_rng(seed).random(len(template)) < truth).astype(float)
        result = measure_effect(template.assign(is_churn=churned), MARCH)
        month, rung = result.summary, _row(result.rows, RUNG, "B", 10)
        month_hits += month["ci_low"] <= 0.075 <= month["ci_high"]  # 0.5 x 0.10 + 0.5 x 0.05
        rung_hits += rung["ci_low"] <= 0.10 <= rung["ci_high"]
    print(f"coverage over {sims} simulations: Newcombe {coverage:.3f}, Fieller relative reduction {rr_coverage:.3f}, "
          f"small rung Newcombe {small:.3f} (Wald {wald:.3f}); measure_effect month row {month_hits / sims:.3f}, "
          f"rung row {rung_hits / sims:.3f}")
    for value in (coverage, rr_coverage, small, month_hits / sims, rung_hits / sims):
        assert 0.90 <= value <= 0.99


def test_wilson_and_newcombe_edges():
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and 0.0 < high < 0.1  # no event: still an upper bound
    assert np.isnan(wilson_interval(0, 0)[0])
    low, high = newcombe_interval(0, 20, 0, 200)
    assert low < 0 < high
    reduction, rr_low, rr_high = fieller_relative_reduction(0.01, 1e-5, 0.01, 0.01 * 0.99 / 3)  # control of 3
    assert reduction == pytest.approx(0.0) and np.isnan(rr_low) and np.isnan(rr_high)  # unbounded: not reported


def test_rows_in_equal_matched_plus_unmatched_and_rungs_against_their_own_control():
    rng = np.random.default_rng(3)
    unmatched = lambda frame: frame.assign(is_churn=np.nan, matched=False)  # noqa: E731
    parts = {
        "t10": _arm(300, 0.3, TREATED, rng, discount=10), "t10_lost": unmatched(_arm(5, 0.3, TREATED, rng, discount=10, tag="x")),
        "t20": _arm(200, 0.4, TREATED, rng, discount=20), "t20_lost": unmatched(_arm(3, 0.4, TREATED, rng, discount=20, tag="x")),
        "t_free": _arm(20, 0.3, TREATED, rng, action=FREE_TRIAL_B_ACTION, discount=0, free=True),
        "c10": _arm(40, 0.3, CONTROL, rng, discount=10), "c10_lost": unmatched(_arm(2, 0.3, CONTROL, rng, discount=10, tag="x")),
        "c20": _arm(30, 0.4, CONTROL, rng, discount=20),
        # a free member of B whose score proposed 10 %: assign_treatments would have sent the reminder
        "c_free": _arm(5, 0.3, CONTROL, rng, discount=10, free=True, tag="f"),
        "c_unscored": _arm(4, 0.3, CONTROL, rng, tag="u").assign(scored_action=None, scored_discount_pct=np.nan),
        "t_c": _arm(100, 0.1, TREATED, rng, bucket="C", action=ACTIONS["C"], discount=0),  # C without a hold-out
    }
    inputs = pd.concat(parts.values(), ignore_index=True)
    result = measure_effect(inputs, MARCH)
    rows = result.rows
    assert result.rows_in == len(inputs) == result.matched + result.unmatched
    assert result.unmatched == 10
    r10, r20 = _row(rows, RUNG, "B", 10), _row(rows, RUNG, "B", 20)
    reminder = _row(rows, RUNG, "B", 0, FREE_TRIAL_B_ACTION)
    assert (r10["n_treated"], r10["n_control"], r10["n_unmatched_treated"], r10["n_unmatched_control"]) == (300, 40, 5, 2)
    assert (r20["n_treated"], r20["n_control"], r20["n_unmatched_treated"]) == (200, 30, 3)
    assert (reminder["n_treated"], reminder["n_control"]) == (20, 5)
    bucket_b = _row(rows, BUCKET, "B")
    assert bucket_b["n_treated"] == 520 and bucket_b["n_control"] == 40 + 30 + 5 + 4  # the unscored count here
    assert bucket_b["n_unmatched_treated"] == 8 and bucket_b["n_unmatched_control"] == 2
    assert bucket_b["net_revenue"] == pytest.approx(r10["net_revenue"] + r20["net_revenue"] + reminder["net_revenue"])
    c_row = _row(rows, BUCKET, "C")
    assert c_row["n_control"] == 0 and np.isnan(c_row["effect"]) and np.isnan(_row(rows, RUNG, "C", 0)["net_revenue"])
    month = result.summary
    assert month["n_treated"] == 520 and month["n_control"] == 79  # C has no control: left out, and said so
    assert result.unmeasured == 100
    assert month["n_treated"] + month["n_control"] + result.unmeasured == result.matched
    assert month["n_unmatched_treated"] + month["n_unmatched_control"] == result.unmatched
    notes = " ".join(result.notes)
    assert "bucket C" in notes and "10 of 709 treatments have no label" in notes and "4 control members" in notes
    print(f"rows in {result.rows_in} = matched {result.matched} + unmatched {result.unmatched}; notes: {result.notes}")


def test_criterion_over_three_months():
    def months(*reductions, start=dt.date(2017, 1, 1)):
        return pd.DataFrame({"target_month": [start.replace(month=start.month + i) for i in range(len(reductions))],
                             "relative_reduction": list(reductions)})

    held = months(0.021, 0.05, 0.03)
    assert criterion_held(held) and criterion_streak(held) == 3
    assert not criterion_held(held, threshold=0.04)  # configurable
    broken = months(0.05, 0.01, 0.03)
    assert not criterion_held(broken) and criterion_streak(broken) == 1
    assert not criterion_held(months(0.05, 0.04))  # fewer than three months
    assert not criterion_held(months(0.05, 0.04, np.nan))  # a month without an estimate breaks it
    gap = months(0.05, 0.04, 0.03, 0.03).drop(index=2)  # March not measured: April is no third month
    assert not criterion_held(gap) and criterion_streak(gap) == 1
    recovered = months(0.05, 0.01, 0.03, 0.03, 0.04)
    assert criterion_held(recovered) and not criterion_held(recovered, through=dt.date(2017, 4, 1))
    history = criterion_history(recovered)
    assert list(history["criterion_met"]) == [True, False, True, True, True]
    # a reduction whose interval includes no effect does not count: noise is not "because of the actions"
    noisy = held.assign(rr_ci_low=[0.001, -0.02, 0.004])
    assert not criterion_held(noisy) and criterion_streak(noisy) == 1
    assert criterion_held(held.assign(rr_ci_low=[0.001, 0.01, 0.004]))
    assert list(history["criterion_held"]) == [False, False, False, False, True]
    assert not criterion_held(months())


# ---------------------------------------------------------------- DuckDB: the join and the asset


def _treatment(msno: str, expire: str, arm: str = TREATED, bucket: str = "B", discount: int = 10) -> dict:
    expire_day = dt.date.fromisoformat(expire)
    week = expire_day - dt.timedelta(days=expire_day.weekday() + 7)
    return {"week_start": week, "msno": msno, "membership_expire_date": expire_day,
            "days_to_expiry": (expire_day - week).days, "bucket": bucket, "arm": arm,
            "action": ACTIONS[bucket] if arm == TREATED else CONTROL_ACTION,
            "discount_pct": discount if arm == TREATED else 0, "churn_probability": 0.5, "free_or_trial": False,
            "model_version": "3", "scored_at": pd.Timestamp(week)}


def _write(con, treatments: pd.DataFrame, labels: pd.DataFrame, with_scores: bool = True) -> None:
    for week, rows in treatments.groupby("week_start"):
        replace_partition(con, TREATMENTS_TABLE, rows[TREATMENT_COLUMNS], "week_start", week,
                          dates=["week_start", "membership_expire_date"])
        if with_scores:
            scores = rows.assign(action=[ACTIONS[b] for b in rows["bucket"]],
                                 discount_pct=np.where(rows["bucket"] == "B", rows["intended"], 0).astype("int32"))
            replace_partition(con, SCORES_TABLE, scores[["week_start", "msno", "action", "discount_pct"]],
                              "week_start", week, dates=["week_start"])
            features = rows.assign(last_list_price=149, last_plan_days=30)
            replace_partition(con, FEATURES_TABLE, features[["week_start", "msno", "last_list_price", "last_plan_days"]],
                              "week_start", week, dates=["week_start"])
    for month, rows in labels.groupby("target_month"):
        replace_partition(con, LABELS_TABLE, rows, "target_month", month, dates=["target_month", "last_expire"])


def test_join_matches_on_member_and_cycle(tmp_path):
    treatments = pd.DataFrame([
        _treatment("kept", "2017-03-05"), _treatment("moved", "2017-03-10"), _treatment("unlabelled", "2017-03-20"),
        _treatment("april", "2017-04-02"), _treatment("held-out", "2017-03-15", arm=CONTROL),
    ]).assign(intended=20)
    labels = pd.DataFrame({
        "msno": ["kept", "moved", "held-out", "not-treated"], "target_month": [MARCH] * 4,
        # a cancellation pulled "moved"'s expiry to 2 March: another cycle than the one contacted
        "last_expire": [dt.date(2017, 3, 5), dt.date(2017, 3, 2), dt.date(2017, 3, 15), dt.date(2017, 3, 8)],
        "renewal_gap_days": [3, None, None, 1], "is_churn": [0, 1, 1, 0],
    })
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert read_effect_inputs(con, MARCH) is None  # no treatments yet
        _write(con, treatments, labels)
        inputs = read_effect_inputs(con, MARCH)
        assert list(inputs.columns) == INPUT_COLUMNS
        assert sorted(inputs["msno"]) == ["held-out", "kept", "moved", "unlabelled"]  # April's is not March's
        by = inputs.set_index("msno")
        assert by.loc["kept", "matched"] and by.loc["held-out", "matched"] and by.loc["held-out", "is_churn"] == 1
        assert not by.loc["moved", "matched"] and not by.loc["unlabelled", "matched"] and pd.isna(by.loc["moved", "is_churn"])
        assert by.loc["held-out", "scored_action"] == DISCOUNT and by.loc["held-out", "scored_discount_pct"] == 20
        assert by.loc["kept", "last_list_price"] == 149
        result = measure_effect(inputs, MARCH)
        assert (result.rows_in, result.matched, result.unmatched) == (4, 2, 2)
        # a score row twice for one member would count them twice: refused
        extra = con.execute(f"SELECT * FROM {SCORES_TABLE} WHERE msno = 'kept'").df()
        con.register("extra", extra)
        con.execute(f"INSERT INTO {SCORES_TABLE} SELECT * FROM extra")
        with pytest.raises(ValueError, match="not unique"):
            read_effect_inputs(con, MARCH)
    with duckdb.connect(str(tmp_path / "no_scores.duckdb")) as con:
        _write(con, treatments, labels, with_scores=False)
        inputs = read_effect_inputs(con, MARCH)
        assert len(inputs) == 4 and inputs["scored_action"].isna().all() and inputs["last_list_price"].isna().all()


def _month_world(month: dt.date, rng: np.random.Generator, n: int = 4_000, control_share: float = 0.15,
                 p_treated: float = 0.30, p_control: float = 0.40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Treatments and labels of members expiring in `month`: buckets A / B (10 % and 20 %) / C, a
    planted effect of 0.10 in every bucket, and every 100th treated cycle moved (unmatched)."""
    i = np.arange(n)
    bucket = np.array(["A", "B", "C"])[i % 3]
    intended = np.where(i % 2 == 0, 10, 20)
    arm = np.where(rng.random(n) < control_share, CONTROL, TREATED)
    rows = [_treatment(f"{month:%y%m}-{k}", (month + dt.timedelta(days=int(k % 28))).isoformat(), arm[k], bucket[k],
                       int(intended[k]) if bucket[k] == "B" else 0) for k in i]
    treatments = pd.DataFrame(rows).assign(intended=intended)
    churn = (rng.random(n) < np.where(arm == TREATED, p_treated, p_control)).astype(int)
    moved = (i % 100 == 0) & (arm == TREATED)
    labels = pd.DataFrame({
        "msno": treatments["msno"], "target_month": month,
        "last_expire": pd.to_datetime(treatments["membership_expire_date"]) - pd.to_timedelta(np.where(moved, 1, 0), unit="D"),
        "renewal_gap_days": np.where(churn == 1, None, 5), "is_churn": churn,
    })
    return treatments, labels


def _final_through(con, last_drop: dt.date) -> None:
    """raw.transactions with one row on the last day of every drop month from 2016-12 to
    `last_drop`: the data watermark reaches the day after it."""
    from churn_assets_tests.test_labels import RAW_SCHEMA

    con.execute(RAW_SCHEMA.read_text())
    month = dt.date(2016, 12, 1)
    while month <= last_drop:
        day = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        con.execute("INSERT INTO raw.transactions VALUES ('watermark', 41, 30, 99, 99, 1, ?, ?, 0, ?)",
                    [day, day + dt.timedelta(days=30), month])
        month = (month + dt.timedelta(days=32)).replace(day=1)


def test_asset_writes_a_final_month_and_nothing_for_one_not_final(tmp_path, instance):
    db = tmp_path / "churn.duckdb"
    months = [dt.date(2017, 1, 1), dt.date(2017, 2, 1), MARCH, dt.date(2017, 4, 1)]
    rng = np.random.default_rng(11)
    worlds = {m: _month_world(m, rng) for m in months}
    with duckdb.connect(str(db)) as con:
        _final_through(con, dt.date(2017, 4, 1))  # the April drop reaches 30 April: March is final, April is not
        # one write of every month: a contact week can hold the expiries of two months
        _write(con, *(pd.concat(parts, ignore_index=True) for parts in zip(*worlds.values())))
        for m in months[:2]:  # the two months before, measured by the pure code
            replace_partition(con, EFFECT_TABLE, measure_effect(read_effect_inputs(con, m), m).rows, "target_month", m,
                              dates=["target_month"])
    resources = {"warehouse": Warehouse(database=str(db)), "storage": Storage(data_dir=str(tmp_path))}

    result = dg.materialize([retention_effect], partition_key=MARCH.isoformat(), instance=instance, resources=resources)
    assert result.success
    [event] = result.asset_materializations_for_node("marketing__retention_effect")
    meta = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    march = worlds[MARCH][0]
    moved = int(((np.arange(len(march)) % 100 == 0) & (march["arm"] == TREATED).to_numpy()).sum())
    assert meta["rows_in"] == len(march) == meta["matched"] + meta["unmatched"] and meta["unmatched"] == moved
    for name in ("churn_rate_treated", "churn_rate_control", "effect", "relative_reduction", "rr_ci_low",
                 "rr_ci_high", "incremental_retained", "net_revenue"):
        assert isinstance(event.metadata[name], dg.FloatMetadataValue), name
    assert meta["ci_low"] < 0.10 < meta["ci_high"] and meta["rr_ci_low"] > 0.02  # planted 0.10, i.e. 25 %
    assert meta["criterion_held_3_months"] is True and meta["criterion_streak_months"] == 3
    assert meta["chart"].startswith("![treated vs control churn](data:image/png;base64,")
    assert (tmp_path / "reports" / "retention" / "2017-03.png").stat().st_size > 1000
    assert "| level" in meta["effects"]
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(f"SELECT * FROM {EFFECT_TABLE} WHERE target_month = ?", [MARCH]).df()
        summaries = read_month_summaries(con)
    assert set(EFFECT_COLUMNS) <= set(rows.columns) and sorted(set(rows["level"])) == [BUCKET, MONTH, RUNG]
    assert len(rows[rows["level"] == RUNG]) == 4  # A, B 10 %, B 20 %, C
    assert list(pd.to_datetime(summaries["target_month"]).dt.date) == months[:3]
    assert any((tmp_path / "analytics" / "marketing" / "retention_effect").glob("*.parquet"))  # published

    # April: treatments and labels are there, but its renewals can still arrive: nothing written
    april = dg.materialize([retention_effect], partition_key="2017-04-01", instance=instance, resources=resources)
    assert april.success and not april.asset_materializations_for_node("marketing__retention_effect")
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {EFFECT_TABLE} WHERE target_month = '2017-04-01'").fetchone()[0] == 0
    table = retention_table(summaries)
    assert list(table["held 3 months"]) == ["no", "no", "yes"] and "answers each week" in RETENTION_TITLE
    assert table["detectable (80 % power)"].str.endswith("%").all()
    print(f"asset, March: rows in {meta['rows_in']} (unmatched {meta['unmatched']}), treated {meta['churn_rate_treated']:.3f} "
          f"vs control {meta['churn_rate_control']:.3f}, relative reduction {meta['relative_reduction']:.3f} "
          f"[{meta['rr_ci_low']:.3f}, {meta['rr_ci_high']:.3f}], net revenue {meta['net_revenue']:.0f}\n{table.to_string(index=False)}")


def test_weekly_report_shows_the_reduction_of_the_months_final_by_its_week(tmp_path):
    from churn_assets.marketing.effect import months_final_by
    from churn_assets.scoring.report import build_report

    summaries = pd.DataFrame({
        "target_month": [dt.date(2017, 1, 1), dt.date(2017, 2, 1)], "n_treated": [900, 950], "n_control": [100, 105],
        "churn_rate_treated": [0.10, 0.09], "churn_rate_control": [0.12, 0.12], "relative_reduction": [0.167, 0.25],
        "rr_ci_low": [0.01, 0.05], "rr_ci_high": [0.3, 0.4]})
    # February's labels are final on 30 March: a report of 27 March knows January only
    assert list(months_final_by(summaries, dt.date(2017, 3, 27))["target_month"]) == [dt.date(2017, 1, 1)]
    assert len(months_final_by(summaries, dt.date(2017, 4, 3))) == 2
    scores = pd.DataFrame({"week_start": [dt.date(2017, 4, 3)] * 2, "msno": ["a", "b"],
                           "membership_expire_date": [dt.date(2017, 4, 20)] * 2, "days_to_expiry": [17, 17],
                           "churn_probability": [0.8, 0.1], "bucket": ["A", "C"],
                           "action": ["call to understand the pain points", "send an appreciation e-mail"],
                           "discount_pct": [0, 0], "reason_1": ["x", None], "reason_2": [None, None],
                           "reason_3": [None, None], "model_version": ["1", "1"]})
    treatments = scores.assign(arm=["treated", "control"], free_or_trial=False)
    table = retention_table(months_final_by(summaries, dt.date(2017, 4, 3)))
    files = build_report(scores, None, dt.date(2017, 4, 3), tmp_path, treatments=treatments, effects=table)
    page = files.html_path.read_text()
    assert "Churn-rate reduction against the control group" in page and "2017-02" in page and "+25.0 %" in page
    empty = build_report(scores, None, dt.date(2017, 4, 3), tmp_path / "e", treatments=treatments, effects=None)
    assert "No month is final and measured yet" in empty.html_path.read_text()


def test_detectable_reduction_is_what_the_arms_detect_with_80_percent_power():
    """Arms of 9,000 treated and 1,000 control at a 6 % control churn: a true reduction equal to
    the detectable one is found (95 % Wald interval above zero, the formula's) in ~80 % of draws;
    Newcombe's interval, which the bucket rows use, finds it at least as often."""
    from churn_assets.marketing.effect import detectable_reduction, newcombe_interval

    n_t, n_c, c = 9_000, 1_000, 0.06
    var = c * (1 - c)
    mde = float(detectable_reduction(c, var / n_t, var / n_c))
    assert 0.35 < mde < 0.5                              # a 10 % hold-out this size cannot see 2 %
    rng = np.random.default_rng(0)
    k_t = rng.binomial(n_t, c * (1 - mde), 4000)
    k_c = rng.binomial(n_c, c, 4000)
    rt, rc = k_t / n_t, k_c / n_c
    wald_low = rc - rt - 1.959964 * np.sqrt(rt * (1 - rt) / n_t + rc * (1 - rc) / n_c)
    assert 0.75 < np.mean(wald_low > 0) < 0.85
    low, _ = newcombe_interval(k_c, n_c, k_t, n_t)
    assert np.mean(low > 0) >= np.mean(wald_low > 0) - 0.02
    assert np.isnan(detectable_reduction(0.0, 0.0, 0.0))


def test_a_table_of_an_earlier_shape_gains_the_new_column_and_keeps_its_months():
    """marketing.retention_effect written before detectable_reduction existed: the next month's
    write adds the column (NULL for the old month) and the summaries read both months."""
    from churn_assets.marketing.queries import EFFECT_TABLE, read_month_summaries
    from churn_assets.sql import replace_partition

    con = duckdb.connect()
    old = pd.DataFrame({c: [1.0] for c in SUMMARY_COLUMNS if c not in ("target_month", "detectable_reduction")})
    old = old.assign(target_month=dt.date(2017, 1, 1), level=MONTH)
    replace_partition(con, EFFECT_TABLE, old, "target_month", dt.date(2017, 1, 1), dates=["target_month"])
    assert read_month_summaries(con)["detectable_reduction"].isna().all()
    new = old.assign(target_month=dt.date(2017, 2, 1), detectable_reduction=0.3)
    replace_partition(con, EFFECT_TABLE, new, "target_month", dt.date(2017, 2, 1), dates=["target_month"])
    got = read_month_summaries(con)
    assert len(got) == 2 and got["detectable_reduction"].isna().tolist() == [True, False]
    assert retention_table(got)["detectable (80 % power)"].tolist() == ["", "30.0 %"]
