"""Evaluation against the simulator's oracle: how far the live scores are from the truth.

Only for synthetic worlds, and only here: the oracle (oracle/renewals.parquet: msno,
target_month, last_expire, true_churn_probability, is_churn) holds the probability the
simulator drew each renewal from, the best any model could score. No decision of the system
reads it (a real deployment has no such truth); the demo summary, bench_model and the weekly
report's AUC-vs-oracle chart (monitoring.history.find_oracle) do, for evaluation only.

The comparison is made on the SAME pairs the model is judged on (performance.lead_pairs):
per target month and lead band, the model's scores and the oracle's probabilities of the
same members, against the same labels. The oracle does not depend on the lead; the band
only chooses which members are compared.

    compare_with_oracle(con, paths.oracle)                  # warehouse + oracle parquet
    compare_pairs_with_oracle(pairs, oracle_frame)          # same, on frames
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from .performance import BAND_ORDER, HEADLINE_MIN_LEAD_DAYS, lead_pairs

ORACLE_COMPARISON_COLUMNS = [
    "target_month", "lead_band", "n_pairs", "churn_rate",
    "model_auc", "oracle_auc", "auc_vs_oracle",
    "model_log_loss", "oracle_log_loss", "log_loss_vs_oracle",
    "n_without_oracle", "oracle_label_mismatch",
]
_EPS = 1e-15


def read_oracle(path: Path | str) -> pd.DataFrame:
    """msno, target_month (Timestamp), true_churn_probability, is_churn of the oracle parquet."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no oracle at {path}: only a simulated world has one")
    oracle = pd.read_parquet(path, columns=["msno", "target_month", "true_churn_probability", "is_churn"])
    return oracle.assign(target_month=pd.to_datetime(oracle["target_month"]))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else np.nan


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1])) if len(y) else np.nan


def compare_pairs_with_oracle(pairs: pd.DataFrame, oracle: pd.DataFrame) -> pd.DataFrame:
    """ORACLE_COMPARISON_COLUMNS, one row per (target_month, lead_band) of `pairs` (every model
    version pooled: the scores marketing received). Both sides are scored against the labels of
    `pairs`; pairs the oracle lacks are left out and counted (n_without_oracle), and labels the
    oracle disagrees with are counted (oracle_label_mismatch, 0 when the label rule matches)."""
    truth = oracle[["msno", "target_month", "true_churn_probability", "is_churn"]].rename(
        columns={"is_churn": "oracle_is_churn"}).assign(target_month=lambda f: pd.to_datetime(f["target_month"]))
    joined = pairs.assign(target_month=pd.to_datetime(pairs["target_month"])).merge(
        truth, on=["msno", "target_month"], how="left", validate="many_to_one")
    rows = []
    for (month, band), g in joined.groupby(["target_month", "lead_band"], sort=True):
        known = g[g["true_churn_probability"].notna()]
        y = known["is_churn"].to_numpy(int)
        model, best = known["churn_probability"].to_numpy(float), known["true_churn_probability"].to_numpy(float)
        model_auc, oracle_auc = _auc(y, model), _auc(y, best)
        model_ll, oracle_ll = _log_loss(y, model), _log_loss(y, best)
        rows.append({
            "target_month": month, "lead_band": band, "n_pairs": len(known),
            "churn_rate": float(y.mean()) if len(y) else np.nan,
            "model_auc": model_auc, "oracle_auc": oracle_auc, "auc_vs_oracle": model_auc / oracle_auc,
            "model_log_loss": model_ll, "oracle_log_loss": oracle_ll, "log_loss_vs_oracle": model_ll / oracle_ll,
            "n_without_oracle": int(len(g) - len(known)),
            "oracle_label_mismatch": int((known["oracle_is_churn"].astype(int) != known["is_churn"].astype(int)).sum()),
        })
    out = pd.DataFrame(rows, columns=ORACLE_COMPARISON_COLUMNS)
    rank = out["lead_band"].map({b: i for i, b in enumerate(BAND_ORDER)})
    return out.assign(_rank=rank).sort_values(["target_month", "_rank"]).drop(columns="_rank").reset_index(drop=True)


def compare_with_oracle(
    con: duckdb.DuckDBPyConnection,
    oracle_path: Path | str,
    target_month: dt.date | None = None,
    labels: str = "features.labels",
    scores: str = "scoring.churn_scores",
    min_lead_days: int = HEADLINE_MIN_LEAD_DAYS,
) -> pd.DataFrame:
    """The live scores of the warehouse against the oracle at `oracle_path`, per target month
    (all of them when None) and lead band, on the pairs monitoring/model_performance judges.
    Pass final months only: a month whose labels are not final yet is compared as it stands."""
    oracle = read_oracle(oracle_path)
    pairs = lead_pairs(con, target_month, labels, scores, min_lead_days)
    return compare_pairs_with_oracle(pairs, oracle)


# ---------------------------------------------------------------- the retention effect's truth

EFFECT_TRUTH_COLUMNS = ["target_month", "bucket", "n_treated", "true_effect", "effect", "ci_low", "ci_high", "covered"]


def true_effects(treatments: pd.DataFrame, oracle: pd.DataFrame) -> pd.DataFrame:
    """target_month, bucket, n_treated, true_effect: per month and bucket, the treated members'
    average of p_untreated - p_treated (what the action truly removed from their churn
    probability, 0 for a contact that came too late). Treatments join the oracle on msno and
    expiry (oracle last_expire = membership_expire_date), as the effect asset joins labels."""
    truth = oracle[["msno", "target_month", "last_expire", "p_untreated", "p_treated"]]
    treated = treatments[treatments["arm"] == "treated"]
    joined = treated.assign(last_expire=pd.to_datetime(treated["membership_expire_date"])).merge(
        truth.assign(last_expire=pd.to_datetime(truth["last_expire"])), on=["msno", "last_expire"], how="inner")
    joined = joined.assign(target_month=pd.to_datetime(joined["target_month"]),
                           removed=joined["p_untreated"] - joined["p_treated"])
    return (joined.groupby(["target_month", "bucket"], as_index=False)
            .agg(n_treated=("removed", "size"), true_effect=("removed", "mean")))


def effects_against_truth(measured: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """EFFECT_TRUTH_COLUMNS: the bucket rows of marketing.retention_effect beside the truth;
    covered is whether the measured interval holds the true average effect."""
    rows = measured[measured["level"] == "bucket"][["target_month", "bucket", "effect", "ci_low", "ci_high"]]
    out = rows.assign(target_month=pd.to_datetime(rows["target_month"])).merge(
        truth, on=["target_month", "bucket"], how="left")
    out["covered"] = (out["ci_low"] <= out["true_effect"]) & (out["true_effect"] <= out["ci_high"])
    return out[EFFECT_TRUTH_COLUMNS].sort_values(["target_month", "bucket"]).reset_index(drop=True)


def compare_effects_with_oracle(con: duckdb.DuckDBPyConnection, oracle_path: Path | str) -> pd.DataFrame:
    """effects_against_truth of the warehouse's marketing tables and the oracle parquet."""
    oracle = pd.read_parquet(oracle_path, columns=["msno", "target_month", "last_expire", "p_untreated", "p_treated"])
    treatments = con.execute("SELECT msno, membership_expire_date, bucket, arm FROM marketing.treatments").df()
    measured = con.execute("SELECT * FROM marketing.retention_effect").df()
    return effects_against_truth(measured, true_effects(treatments, oracle))


# ---------------------------------------------------------------- the offer policy against the truth

# an uplift table {discount %: share kept}, or members -> each member's discount %
OfferPolicy = Mapping[int, float] | Callable[[pd.DataFrame], np.ndarray]
OFFER_POLICY_COLUMNS = ["policy", "members", "offers", "mean_discount_pct", "net_revenue", "vs_oracle_optimal"]
_RUNGS = (10, 20, 30)   # the oracle's counterfactual discount rungs (p_discount_10, ...)


# The ceiling of a policy that decides on the score: "oracle-optimal" knows each member's true
# churn probability and true effect per rung (latent engagement, price sensitivity, the day's
# noise), which the score only estimates, so on thin margins it is far out of any model's reach.
BEST_ON_SCORE = "best on the score (truth-fitted)"
# the same with the true churn probability in place of the score: what a perfect churn model
# reaches when the effect per member is unknown (one rung per risk decile)
BEST_ON_TRUE_RISK = "best on the true risk (truth-fitted)"
SCORE_BINS = 10


def best_rung_per_score_bin(score: np.ndarray, net: np.ndarray, bins: int = SCORE_BINS) -> np.ndarray:
    """Per member, the rung (0, *_RUNGS) whose true net revenue summed over the member's score
    decile is largest: the best one-rung-per-decile policy, fitted in-sample on the truth, an
    upper bound for a policy that decides on the score alone. `net`: (n, 1 + len(_RUNGS))."""
    rungs = np.asarray((0, *_RUNGS))
    if len(score) == 0:
        return np.zeros(0, dtype=int)
    edges = np.unique(np.quantile(score, np.linspace(0, 1, bins + 1)[1:-1]))
    decile = np.searchsorted(edges, score, side="right")
    sums = np.zeros((len(edges) + 1, net.shape[1]))
    np.add.at(sums, decile, net)
    return rungs[sums.argmax(axis=1)][decile]


def offer_policy_revenue(members: pd.DataFrame, policies: dict[str, OfferPolicy],
                         horizon_months: float) -> pd.DataFrame:
    """OFFER_POLICY_COLUMNS: the true net revenue of each discount policy on the same members.

    `members`: churn_probability (the model's score the policy sees), monthly_price,
    active_days_30d, p_untreated and p_discount_10/20/30 (the oracle's truth with each rung).
    A policy is an uplift table for offers.choose_discount, or a function of `members` giving
    each member's discount (marketing.offer_model); "oracle-optimal" picks each member's best
    rung from the truth itself, BEST_ON_TRUE_RISK the best rung of each decile of the true churn
    probability (a perfect churn model without the effect per member), and BEST_ON_SCORE the
    best rung of each score decile (what a policy that sees the score could reach at most).
    Net revenue against no offer, over the horizon:
    V * ((1 - p_d) * (1 - d) - (1 - p_untreated)), V = monthly price * horizon."""
    from churn_assets.scoring.offers import choose_discount

    value = members["monthly_price"].to_numpy(float) * horizon_months
    stay = {0: 1.0 - members["p_untreated"].to_numpy(float)}
    stay.update({d: 1.0 - members[f"p_discount_{d}"].to_numpy(float) for d in _RUNGS})
    net = {d: value * (stay[d] * (1 - d / 100) - stay[0]) for d in stay}
    table = np.column_stack([net[d] for d in (0, *_RUNGS)])
    best = np.asarray((0, *_RUNGS))[table.argmax(axis=1)]
    chosen = {"oracle-optimal": best,
              BEST_ON_TRUE_RISK: best_rung_per_score_bin(members["p_untreated"].to_numpy(float), table),
              BEST_ON_SCORE: best_rung_per_score_bin(members["churn_probability"].to_numpy(float), table)}
    for name, policy in policies.items():
        chosen[name] = (np.asarray(policy(members), dtype=int) if callable(policy) else
                        choose_discount(members["churn_probability"].to_numpy(float),
                                        members["monthly_price"].to_numpy(float), (0, *_RUNGS), policy, horizon_months))
    rows = []
    for name, d in chosen.items():
        revenue = float(sum(net[r][d == r].sum() for r in stay))
        rows.append({"policy": name, "members": len(d), "offers": int((d > 0).sum()),
                     "mean_discount_pct": float(d[d > 0].mean()) if (d > 0).any() else 0.0, "net_revenue": revenue})
    out = pd.DataFrame(rows)
    optimum = out.loc[out["policy"] == "oracle-optimal", "net_revenue"].iloc[0]
    out["vs_oracle_optimal"] = out["net_revenue"] / optimum if optimum else np.nan
    return out[OFFER_POLICY_COLUMNS]


_OFFER_MEMBERS_SQL = """
SELECT t.msno, t.membership_expire_date, t.churn_probability, f.last_list_price, f.last_plan_days, f.active_days_30d
FROM marketing.treatments t
JOIN scoring.scoring_features f ON f.week_start = t.week_start AND f.msno = t.msno
WHERE t.bucket = 'B' AND NOT t.free_or_trial
"""


def compare_offers_with_oracle(con: duckdb.DuckDBPyConnection, oracle_path: Path | str,
                               policies: dict[str, OfferPolicy], horizon_months: float) -> pd.DataFrame:
    """offer_policy_revenue on every paying bucket-B contact (both arms) whose expiry the oracle
    knows: each policy's true net revenue on the same members."""
    from churn_assets.scoring.offers import monthly_price

    truth = pd.read_parquet(oracle_path, columns=["msno", "last_expire", "p_untreated",
                                                  *(f"p_discount_{d}" for d in _RUNGS)])
    members = con.execute(_OFFER_MEMBERS_SQL).df()
    members = members.assign(last_expire=pd.to_datetime(members["membership_expire_date"]),
                             monthly_price=monthly_price(members["last_list_price"], members["last_plan_days"]))
    joined = members.merge(truth.assign(last_expire=pd.to_datetime(truth["last_expire"])), on=["msno", "last_expire"])
    return offer_policy_revenue(joined, policies, horizon_months)
