"""The measured retention effect against the world's truth, at two seeds.

A stepped world with the default (heterogeneous) effects is treated Monday by Monday with
the real assignment (assign_treatments: hold-out by hash, suppression, no discount for free
members) from a rule-based score of delivered data: members who switched auto-renew off are
bucket A, manual payers B (20 % when on a monthly plan, else 10 %), the rest C. The effect is
measured with measure_effect on the official labels (the oracle's is_churn: the label rule
applied to the world's transactions), pooled over the final months per bucket and rung, and
each 95 % interval must hold the oracle's true average effect on the treated members.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn_assets.core.buckets import actions_for
from churn_assets.marketing.effect import BUCKET, RUNG, measure_effect
from churn_assets.marketing.treatments import assign_treatments
from churn_assets.monitoring.oracle_evaluation import effects_against_truth, true_effects
from churn_assets.synthetic.effects import Effects
from churn_assets_tests.treated_world import run_treated_world

WORLD = dict(members=8_000, start="2016-07", months=8, scenarios=())
FIRST_MONDAY = dt.date(2016, 9, 5)
POOLED = dt.date(2016, 10, 1)          # measure_effect's month label for the pooled months


def _rule_scores(due: pd.DataFrame, monday: dt.date) -> pd.DataFrame:
    """scoring.churn_scores-like rows from the due members' last transaction."""
    p = np.select([due["is_cancel"] == 1, due["is_auto_renew"] == 0], [0.75, 0.45], 0.05)
    bucket = np.select([p >= 0.7, p >= 0.3], ["A", "B"], "C").astype(object)
    discount = np.where(bucket == "B", np.where(due["payment_plan_days"] <= 31, 20, 10), 0)
    return pd.DataFrame({
        "week_start": monday, "msno": due["msno"], "membership_expire_date": due["membership_expire_date"],
        "days_to_expiry": (pd.to_datetime(due["membership_expire_date"]) - pd.Timestamp(monday)).dt.days,
        "bucket": bucket, "action": actions_for(bucket), "discount_pct": discount, "churn_probability": p,
        "model_version": "rule", "scored_at": pd.Timestamp(monday),
        "last_amount_paid": due["actual_amount_paid"], "last_list_price": due["plan_list_price"],
        "last_plan_days": due["payment_plan_days"]})


def _measured(seed: int, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(pooled effect rows, effect rows of each final month, treatments, oracle)."""
    scored: list[pd.DataFrame] = []

    def choose(due: pd.DataFrame, monday: dt.date) -> pd.DataFrame:
        scores = _rule_scores(due, monday)
        scored.append(scores)
        earlier = pd.concat(chosen) if chosen else None
        chosen.append(assign_treatments(scores, earlier))
        return chosen[-1][["msno", "membership_expire_date", "week_start", "action", "discount_pct"]]

    chosen: list[pd.DataFrame] = []
    world, _ = run_treated_world(tmp_path / f"seed{seed}", {**WORLD, "seed": seed}, Effects(), choose, FIRST_MONDAY)
    treatments = pd.concat(chosen, ignore_index=True)
    scores = pd.concat(scored, ignore_index=True)[["week_start", "msno", "action", "discount_pct", "last_list_price",
                                                   "last_plan_days"]]
    oracle = world.oracle().to_pandas()
    labels = oracle[["msno", "last_expire", "is_churn", "target_month"]].assign(
        last_expire=lambda f: pd.to_datetime(f["last_expire"]))
    inputs = (treatments.assign(membership_expire_date=pd.to_datetime(treatments["membership_expire_date"]))
              .merge(scores.rename(columns={"action": "scored_action", "discount_pct": "scored_discount_pct"}),
                     on=["week_start", "msno"], how="left")
              .merge(labels, left_on=["msno", "membership_expire_date"], right_on=["msno", "last_expire"], how="left"))
    inputs["matched"] = inputs["is_churn"].notna()
    final = inputs[inputs["target_month"].notna()]
    assert len(final) > 7_000                         # rows in = matched + unmatched, per measure_effect
    result = measure_effect(final, POOLED)
    assert result.rows_in == len(final) == result.matched + result.unmatched
    monthly = pd.concat([measure_effect(g, pd.Timestamp(m).date()).rows for m, g in final.groupby("target_month")],
                        ignore_index=True)
    return result.rows, monthly, treatments, oracle


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 11])
def test_measured_effect_intervals_cover_the_true_effect(seed, tmp_path):
    rows, monthly, treatments, oracle = _measured(seed, tmp_path)
    by_month = true_effects(treatments, oracle)
    truth = by_month.assign(target_month=pd.Timestamp(POOLED))
    pooled = truth.groupby(["target_month", "bucket"], as_index=False).apply(
        lambda g: pd.Series({"n_treated": g["n_treated"].sum(),
                             "true_effect": np.average(g["true_effect"], weights=g["n_treated"])}),
        include_groups=False)
    buckets = effects_against_truth(rows, pooled)
    assert list(buckets["bucket"]) == ["A", "B", "C"]
    assert buckets["covered"].all(), buckets
    assert buckets.set_index("bucket")["true_effect"]["A"] > 0.02            # a call works on its pain points

    # rungs with enough members: the treated rung's truth inside the rung's interval
    rung_truth = (treatments[treatments["arm"] == "treated"]
                  .assign(last_expire=lambda f: pd.to_datetime(f["membership_expire_date"]))
                  .merge(oracle[["msno", "last_expire", "p_untreated", "p_treated"]]
                         .assign(last_expire=lambda f: pd.to_datetime(f["last_expire"])), on=["msno", "last_expire"])
                  .assign(removed=lambda f: f["p_untreated"] - f["p_treated"])
                  .groupby(["bucket", "discount_pct"])["removed"].mean())
    rungs = rows[(rows["level"] == RUNG) & (rows["n_control"] >= 150)]
    assert len(rungs) >= 2
    for r in rungs.itertuples():
        true = rung_truth[(r.bucket, int(r.discount_pct))]
        assert r.ci_low <= true <= r.ci_high, (r.bucket, r.discount_pct, r.ci_low, true, r.ci_high)
    assert (rows[rows["level"] == BUCKET]["n_control"] > 0).all()

    # month by month (what marketing.retention_effect publishes): 4 months x 3 buckets, a 95 %
    # interval misses about 1 in 20; intervals half as wide as they should be would miss 1 in 3
    per_month = effects_against_truth(monthly, by_month)
    assert len(per_month) == 12 and per_month["true_effect"].notna().all(), per_month
    assert per_month["covered"].sum() >= 10, per_month
