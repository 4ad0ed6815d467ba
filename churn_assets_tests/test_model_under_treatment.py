"""The churn model stays honest under treatment.

A toy feature world where marketing calls the members a previous score ranks as risky
(observable probability >= 0.3); the calls truly keep half of the manual payers and a tenth
of the others who would have left, and a 10 % hash-drawn control (in every bucket) gets
nothing. Three models are judged one month ahead on the control group's outcomes, which are
the untreated outcomes: one trained as the pipeline does (load_training_frame leaves out the
called members), one trained on every label as if the calls did nothing (naive), and one
trained on the same world without any treatment. The pipeline's must not be worse than the
untreated world's, beyond noise.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn_assets.core.buckets import ACTIONS
from churn_assets.marketing.treatments import control_arm
from churn_assets.model.data import load_training_frame, treated_candidates
from churn_assets.model.training import train_churn_model
from churn_assets_tests.toy_world import write_toy_world

MONTHS = [dt.date(2017, m, 1) for m in range(1, 6)]
TRAIN, VALID = MONTHS[1:4], MONTHS[4]
MEMBERS = 12_000


def _treat(con: duckdb.DuckDBPyConnection, oracle: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Call the risky members of every month, except the control; the call keeps some
    would-be churners. Rewrites features.labels and writes marketing.treatments."""
    rng = np.random.default_rng(seed)
    labels = con.execute("SELECT * FROM features.labels").df()
    auto = con.execute("SELECT msno, as_of AS target_month, last_is_auto_renew FROM features.member_features").df()
    month = {"target_month": lambda f: pd.to_datetime(f["target_month"])}
    frame = (labels.assign(**month)
             .merge(oracle[["msno", "target_month", "observable_churn_probability"]].assign(**month),
                    on=["msno", "target_month"])
             .merge(auto.assign(**month), on=["msno", "target_month"]))
    control = control_arm(frame["msno"], frame["last_expire"], 0.10, "toy")
    called = (frame["observable_churn_probability"].to_numpy() >= 0.3) & ~control
    keep = np.where(frame["last_is_auto_renew"].to_numpy() == 0, 0.5, 0.1)
    kept = called & (frame["is_churn"].to_numpy() == 1) & (rng.random(len(frame)) < keep)
    new = frame.assign(is_churn=np.where(kept, 0, frame["is_churn"]))
    con.register("new_labels", new[labels.columns].assign(target_month=new["target_month"].dt.date))
    con.execute("DELETE FROM features.labels")
    con.execute("INSERT INTO features.labels SELECT * FROM new_labels")
    con.unregister("new_labels")
    contacted = frame[(frame["observable_churn_probability"] >= 0.3) | control]
    arm = np.where(control[contacted.index], "control", "treated")
    bucket = np.where(contacted["observable_churn_probability"] >= 0.3, "A", "C")
    treatments = pd.DataFrame({"msno": contacted["msno"], "membership_expire_date": contacted["last_expire"],
                               "arm": arm, "bucket": bucket, "discount_pct": 0,
                               "action": np.where(arm == "treated", ACTIONS["A"], "none")})
    con.execute("CREATE SCHEMA IF NOT EXISTS marketing")
    con.register("t", treatments)
    con.execute("CREATE TABLE marketing.treatments AS SELECT * FROM t")
    con.unregister("t")
    return frame.assign(control=control, called=called, kept=kept)


def _one_month_ahead(frame: pd.DataFrame):
    """The model that learned the train months only, so judging it on VALID is one month ahead
    (the deployable one would have learned VALID's labels too); without the deployable refit."""
    return train_churn_model(frame, {"refit": False}, TRAIN, VALID, seed=0).holdout_model


def _auc(model, frame: pd.DataFrame, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, model.predict_proba(frame)))


@pytest.mark.slow
def test_control_group_auc_is_not_worse_than_without_treatments():
    untreated = duckdb.connect()
    oracle = write_toy_world(untreated, MONTHS, MEMBERS, seed=11)
    treated = duckdb.connect()
    write_toy_world(treated, MONTHS, MEMBERS, seed=11)
    truth = _treat(treated, oracle)

    valid_all = load_training_frame(untreated, [VALID])                  # untreated labels of every member
    valid_rows = truth["target_month"] == pd.Timestamp(VALID)
    in_control = valid_all["msno"].isin(truth.loc[truth["control"] & valid_rows, "msno"])
    judge, y = valid_all[in_control], valid_all.loc[in_control, "is_churn"].to_numpy()
    assert len(judge) > 1000 and y.sum() > 50

    honest_frame = load_training_frame(treated, [*TRAIN, VALID])
    assert treated_candidates(treated, [*TRAIN, VALID]) == len(load_training_frame(untreated, [*TRAIN, VALID])) \
        - len(honest_frame) == int(truth["called"][truth["target_month"].isin(pd.to_datetime([*TRAIN, VALID]))].sum())
    honest = _one_month_ahead(honest_frame)
    baseline = _one_month_ahead(load_training_frame(untreated, [*TRAIN, VALID]))
    treated.execute("DROP TABLE marketing.treatments")                # naive: every label, calls ignored
    naive = _one_month_ahead(load_training_frame(treated, [*TRAIN, VALID]))

    auc = {name: _auc(m, judge, y) for name, m in (("honest", honest), ("untreated world", baseline), ("naive", naive))}
    assert auc["honest"] >= auc["untreated world"] - 0.015, auc
    # the naive model learned that the called are safe: it under-rates them on the control group
    score = truth[valid_rows].set_index("msno")["observable_churn_probability"]
    risky = judge.index[score.reindex(judge["msno"]).to_numpy() >= 0.3]
    mean_p = {name: float(m.predict_proba(judge.loc[risky]).mean()) for name, m in (("honest", honest), ("naive", naive))}
    assert mean_p["naive"] < mean_p["honest"] - 0.02, mean_p
