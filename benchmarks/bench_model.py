"""Benchmark: one refit and one 20-trial retune of the churn model on the simulator world,
against the simulator's oracle.

World: churn_assets.synthetic generate_world with its defaults scaled by BENCH_SCALE
(20k members), start 2016-05, 12 months, channel_shift from 2017-02 (the demo world). The drops
are loaded with the ingestion loader into an in-memory DuckDB, labels come from the official
rule and features from build_member_features(as_of = first day of the target month), exactly
as the assets compute them. Train on 2016-12..2017-02 (2 fit months + 1 early-stop/calibration
month, then a refit on all 3; every as_of has >= 3 months of data before it), validate on 2017-03.

Quality is compared on the same hold-out cohort (msno, target_month) with the oracle
(data/oracle/renewals.parquet true_churn_probability, read only here, by evaluation code) and
with the logistic baseline trained in the same run. Targets: AUC >= 0.98 x oracle, log loss
<= 1.05 x oracle, ECE <= 0.02; the gate also wants LightGBM AUC > baseline AUC.

At the lead: the hold-out models (never trained on the validation month) then score the
validation month's members as weekly scoring does (every Monday, members expiring in the next
30 days, features as of the Monday), and each label is paired with its cycle's scores exactly
as monitoring/model_performance pairs them: `first_score` (the first score of the cycle, >= 21
days ahead, the one marketing acts on) and the lead bands. Model and oracle are compared on
the same pairs (churn_assets.monitoring.oracle_evaluation); the targets apply to first_score.
The models did learn the train months' labels, some of which a live system would not have
had final at these Mondays, so this is the recipe's quality at the lead, not a replay.

    .venv/bin/python -m benchmarks.bench_model
    BENCH_SCALE=0.25 BENCH_TRIALS=5 .venv/bin/python -m benchmarks.bench_model
    BENCH_VALID=2017-02 ...   (validate on another month; train on the 3 before it)
"""
from __future__ import annotations

import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from churn_assets.core.feature_spec import FEATURE_COLUMNS
from churn_assets.features.labels import compute_labels
from churn_assets.features.member_features import build_member_features
from churn_assets.ingest.loading import load_drop_file
from churn_assets.model.training import evaluate, train_churn_model
from churn_assets.model.tuning import tune
from churn_assets.monitoring.oracle_evaluation import compare_pairs_with_oracle, read_oracle
from churn_assets.monitoring.performance import FIRST_SCORE, pairs_from_frames
from churn_assets.dates import add_months, month_end
from churn_assets.scoring.queries import SCORING_WINDOW_DAYS, build_scoring_features
from churn_assets.scoring.scores import churn_probability
from churn_assets.synthetic.simulator import generate_world

START, MONTHS, SCENARIOS = "2016-05", 12, [("channel_shift", "2017-02")]
TARGET_AUC, TARGET_LL, TARGET_ECE = 0.98, 1.05, 0.02
DROP_FILES = (("members", "members_profile.csv"), ("transactions", "transactions_logs.csv"),
              ("user_logs", "userlogs.csv"))


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def world_frame(out_dir: Path, members: int, months: list[dt.date], seed: int = 7
                ) -> tuple[pd.DataFrame, duckdb.DuckDBPyConnection]:
    """Generate the world into `out_dir`, load every drop into DuckDB and return the training
    frame (msno, as_of, membership_expire_date, features, is_churn, target_month) of `months`
    and the open in-memory warehouse (raw.* of every drop)."""
    generate_world(out_dir, members=members, start=START, months=MONTHS, seed=seed, scenarios=SCENARIOS,
                   progress=False)
    con = duckdb.connect()
    for folder in sorted((out_dir / "landing").iterdir()):
        month = dt.date.fromisoformat(folder.name + "-01")
        for source, file in DROP_FILES:
            load_drop_file(con, source, folder / file, month)
    parts = []
    for month in months:
        labels = compute_labels(con, month, "raw.transactions")
        con.register("candidates_df", labels[["msno"]])
        con.execute("CREATE OR REPLACE TEMP TABLE candidates AS SELECT * FROM candidates_df")
        part = build_member_features(con, month, members="candidates").merge(
            labels[["msno", "is_churn"]], on="msno", validate="one_to_one")
        parts.append(part.assign(is_churn=part["is_churn"].astype("int64"), target_month=month))
    return pd.concat(parts, ignore_index=True), con


def lead_pairs_of(con: duckdb.DuckDBPyConnection, models: dict, valid: dt.date) -> tuple[dict, list[dt.date]]:
    """{name: label-score pairs at the lead} for the labels of `valid`, each model scoring
    every Monday whose 30-day window reaches into `valid` (features as of the Monday)."""
    first = valid - dt.timedelta(days=SCORING_WINDOW_DAYS - 1)
    first += dt.timedelta(days=-first.weekday() % 7)  # the next Monday
    mondays = [first + dt.timedelta(weeks=k) for k in range((month_end(valid) - first).days // 7 + 1)]
    features = pd.concat([build_scoring_features(con, monday) for monday in mondays], ignore_index=True)
    keys = features[["week_start", "msno", "membership_expire_date"]].assign(
        week_start=lambda f: pd.to_datetime(f["week_start"]),
        membership_expire_date=lambda f: pd.to_datetime(f["membership_expire_date"]))
    labels = compute_labels(con, valid, "raw.transactions")[["msno", "target_month", "last_expire", "is_churn"]]
    pairs = {
        name: pairs_from_frames(labels, keys.assign(churn_probability=churn_probability(model, features[FEATURE_COLUMNS]),
                                                    model_version=name))
        for name, model in models.items()
    }
    return pairs, mondays


def oracle_for_evaluation(out_dir: Path, cohort: pd.DataFrame) -> pd.DataFrame:
    """The simulator's true churn probability for the rows of `cohort` (msno, target_month),
    in cohort order. Evaluation only: the model never sees this file."""
    oracle = pd.read_parquet(out_dir / "oracle" / "renewals.parquet")
    oracle["target_month"] = pd.to_datetime(oracle["target_month"]).dt.date
    out = cohort[["msno", "target_month", "is_churn"]].merge(
        oracle[["msno", "target_month", "true_churn_probability", "is_churn"]],
        on=["msno", "target_month"], how="left", suffixes=("", "_oracle"), validate="one_to_one")
    if out["true_churn_probability"].isna().any() or (out["is_churn"] != out["is_churn_oracle"]).any():
        raise RuntimeError("oracle and labels disagree on the validation cohort")
    return out


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    trials = int(os.environ.get("BENCH_TRIALS", "20"))
    valid = dt.date.fromisoformat(os.environ.get("BENCH_VALID", "2017-03") + "-01")
    train = [add_months(valid, k) for k in (-3, -2, -1)]
    members = max(1000, int(20_000 * scale))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "world"
        (frame, con), t_world = _timed(world_frame, out, members, [*train, valid])
        refit, t_refit = _timed(train_churn_model, frame, None, train, valid)
        (best, study), t_tune = _timed(tune, frame, train, valid, trials, None, 0)
        retuned, t_retrain = _timed(train_churn_model, frame, best, train, valid)
        cohort = frame[frame["target_month"] == valid].reset_index(drop=True)
        truth = oracle_for_evaluation(out, cohort)
        # the hold-out models: the deployable ones have learned the validation month
        (lead, mondays), t_lead = _timed(lead_pairs_of, con, {"lightgbm refit": refit.holdout_model,
                                                              "lightgbm retune": retuned.holdout_model}, valid)
        con.close()
        oracle = read_oracle(out / "oracle" / "renewals.parquet")
        at_lead = {name: compare_pairs_with_oracle(pairs, oracle) for name, pairs in lead.items()}

    assert (truth["msno"].to_numpy() == refit.validation_predictions["msno"].to_numpy()).all()
    ceiling = evaluate(truth["is_churn"], truth["true_churn_probability"])
    rows = [
        ("oracle (true p)", ceiling, float("nan")),
        ("logistic baseline", refit.baseline_metrics, float("nan")),
        ("lightgbm refit", refit.metrics, t_refit),
        (f"lightgbm retune ({trials} trials)", retuned.metrics, t_tune + t_retrain),
    ]
    n_fit = int(frame["target_month"].isin(train[:-1]).sum())
    print(f"model benchmark: simulator world {members} members, {START} + {MONTHS} months, {SCENARIOS} "
          f"(BENCH_SCALE={scale}); train {train[0]:%Y-%m}..{train[-1]:%Y-%m} ({n_fit} fit rows), "
          f"validate {valid:%Y-%m} ({len(cohort)} rows); world + load + features {t_world:.1f} s")
    print(f"{'model':<28} {'auc':>7} {'auc/or':>7} {'logloss':>8} {'ll/or':>6} {'ece':>6} {'brier':>7} {'seconds':>8}")
    for name, m, secs in rows:
        print(f"{name:<28} {m['auc']:7.4f} {m['auc'] / ceiling['auc']:7.3f} {m['log_loss']:8.4f} "
              f"{m['log_loss'] / ceiling['log_loss']:6.3f} {m['ece']:6.4f} {m['brier']:7.4f} {secs:8.1f}")
    print(f"refit {t_refit:.1f} s (best iteration {refit.best_iteration}, includes the baseline); "
          f"retune search {t_tune:.1f} s ({len(study)} trials, {(study['state'] == 'PRUNED').sum()} pruned) "
          f"+ final fit {t_retrain:.1f} s")
    for name, m in (("refit", refit.metrics), ("retune", retuned.metrics)):
        print(f"targets {name}: auc>={TARGET_AUC}x oracle {m['auc'] >= TARGET_AUC * ceiling['auc']}, "
              f"logloss<={TARGET_LL}x oracle {m['log_loss'] <= TARGET_LL * ceiling['log_loss']}, "
              f"ece<={TARGET_ECE} {m['ece'] <= TARGET_ECE}, beats baseline auc {m['auc'] > refit.baseline_metrics['auc']}")
    print(f"at the lead: {valid:%Y-%m} labels paired with the scores of {len(mondays)} weekly scorings "
          f"{mondays[0]}..{mondays[-1]} ({t_lead:.1f} s); model and oracle on the same pairs")
    print(f"{'model':<20} {'lead_band':<12} {'pairs':>6} {'auc':>7} {'oracle':>7} {'auc/or':>7} "
          f"{'logloss':>8} {'oracle':>7} {'ll/or':>6}")
    for name, table in at_lead.items():
        for r in table.itertuples(index=False):
            print(f"{name:<20} {r.lead_band:<12} {r.n_pairs:6d} {r.model_auc:7.4f} {r.oracle_auc:7.4f} "
                  f"{r.auc_vs_oracle:7.3f} {r.model_log_loss:8.4f} {r.oracle_log_loss:7.4f} {r.log_loss_vs_oracle:6.3f}")
        head = table[table["lead_band"] == FIRST_SCORE].iloc[0]
        print(f"targets {name} at the lead (first_score): auc>={TARGET_AUC}x oracle {head.auc_vs_oracle >= TARGET_AUC}, "
              f"logloss<={TARGET_LL}x oracle {head.log_loss_vs_oracle <= TARGET_LL}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
