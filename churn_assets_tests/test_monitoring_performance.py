"""Realised performance: last score before expiry, metrics checked by hand."""
from __future__ import annotations

import datetime as dt
import math

import duckdb
import pandas as pd
import pytest

from churn_assets.monitoring.performance import (
    PERFORMANCE_COLUMNS, realised_performance, score_label_pairs,
)

MARCH = dt.date(2017, 3, 1)


def d(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


LABELS = pd.DataFrame(
    [  # msno, target_month, last_expire, is_churn
        ("m1", d("2017-03-01"), d("2017-03-10"), 1),
        ("m2", d("2017-03-01"), d("2017-03-20"), 0),
        ("m3", d("2017-03-01"), d("2017-03-05"), 1),
        ("m4", d("2017-03-01"), d("2017-03-25"), 0),
        ("m5", d("2017-03-01"), d("2017-03-15"), 0),  # never scored: left out
        ("m6", d("2017-03-01"), d("2017-03-28"), 0),  # scored by version 2 only
    ],
    columns=["msno", "target_month", "last_expire", "is_churn"],
)

SCORES = pd.DataFrame(
    [  # week_start, msno, membership_expire_date, churn_probability, model_version
        (d("2017-02-13"), "m1", d("2017-03-10"), 0.20, "1"),
        (d("2017-03-06"), "m1", d("2017-03-10"), 0.80, "1"),  # last before expiry
        (d("2017-03-13"), "m1", d("2017-04-10"), 0.10, "1"),  # after expiry: next cycle
        (d("2017-02-20"), "m2", d("2017-03-20"), 0.60, "1"),
        (d("2017-03-13"), "m2", d("2017-03-20"), 0.30, "1"),  # last
        (d("2017-02-06"), "m3", d("2017-03-05"), 0.90, "1"),  # last of this cycle
        (d("2017-01-09"), "m3", d("2017-02-05"), 0.05, "1"),  # previous cycle
        (d("2017-03-20"), "m4", d("2017-03-25"), 0.85, "1"),
        (d("2017-03-27"), "m6", d("2017-03-28"), 0.40, "2"),
    ],
    columns=["week_start", "msno", "membership_expire_date", "churn_probability", "model_version"],
)


def test_last_score_before_expiry_and_hand_computed_metrics():
    perf = realised_performance(LABELS, SCORES, a_threshold=0.7)
    assert list(perf.columns) == PERFORMANCE_COLUMNS
    assert list(perf["model_version"]) == ["1", "2"]
    v1 = perf.iloc[0]
    # used: m1 0.80 (churn), m2 0.30, m3 0.90 (churn), m4 0.85
    assert v1["n_scored"] == 4 and v1["churn_rate"] == 0.5
    # positive > negative pairs: (0.8,0.3) (0.9,0.3) (0.9,0.85) yes, (0.8,0.85) no -> 3/4
    assert v1["auc"] == pytest.approx(0.75)
    # ranking 0.9(1) 0.85(0) 0.8(1) 0.3(0): AP = 0.5*1 + 0.5*(2/3)
    assert v1["pr_auc"] == pytest.approx(0.5 + 1 / 3)
    expected_ll = -(math.log(0.8) + math.log(0.7) + math.log(0.9) + math.log(0.15)) / 4
    assert v1["log_loss"] == pytest.approx(expected_ll)
    assert v1["recall_a"] == 1.0                        # both churners at p >= 0.7
    assert v1["precision_a"] == pytest.approx(2 / 3)    # A = m1, m3, m4
    v2 = perf.iloc[1]                                   # one negative only
    assert v2["n_scored"] == 1 and math.isnan(v2["auc"]) and math.isnan(v2["recall_a"]) and math.isnan(v2["precision_a"])


def test_sql_on_warehouse_tables_filters_the_month():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA features; CREATE SCHEMA scoring")
    con.execute("CREATE TABLE features.labels AS SELECT msno, CAST(target_month AS DATE) target_month, "
                "CAST(last_expire AS DATE) last_expire, is_churn FROM LABELS")
    con.execute("INSERT INTO features.labels VALUES ('m1', DATE '2017-04-01', DATE '2017-04-10', 0)")
    con.execute("CREATE TABLE scoring.churn_scores AS SELECT CAST(week_start AS DATE) week_start, msno, "
                "CAST(membership_expire_date AS DATE) membership_expire_date, churn_probability, model_version FROM SCORES")
    pairs = score_label_pairs(con, MARCH)
    assert set(pairs["target_month"].dt.date) == {MARCH}
    chosen = pairs.set_index("msno")["churn_probability"].to_dict()
    assert chosen == {"m1": 0.80, "m2": 0.30, "m3": 0.90, "m4": 0.85, "m6": 0.40}
    april = score_label_pairs(con, dt.date(2017, 4, 1))
    assert april.set_index("msno")["churn_probability"].to_dict() == {"m1": 0.10}


def test_invalid_threshold():
    with pytest.raises(ValueError):
        realised_performance(LABELS, SCORES, a_threshold=1.5)
