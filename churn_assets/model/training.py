"""Train, calibrate and evaluate the churn model with a temporal hold-out, then refit the
recipe on every final month so the deployed model has learned the newest cohort.

Months, oldest to newest: [train ... train, early-stop] + [validation]
- stage 1: a booster fits the older train months, early-stopped on the newest train month;
  its out-of-sample predictions of that month fit the calibrator;
- stage 2 (the hold-out model): a booster refits all train months for the stage-1 iteration
  count scaled by the row ratio, and the stage-1 calibrator maps its raw probabilities; it
  is scored on the validation month (the newest final labelled month), which it never saw.
  Its metrics are the run's metrics and what the gate judges;
- deployable model: the same recipe refit on the train months plus the validation month
  (iterations scaled by the row ratio again, same calibrator). It is what gets registered
  and served: the newest final cohort is learned as soon as its labels are final, instead
  of waiting one more label month. Its quality is vouched for by the hold-out model of the
  same recipe (one month less of data), and by the realised performance later.
A logistic-regression baseline is trained on all train months and scored beside the
hold-out model, so a model that does not beat a straight line is visible (and refused).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from churn_assets.core.buckets import A_THRESHOLD
from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS, TARGET
from churn_assets.core.metrics import calibration_table, classification_metrics
from churn_assets.model.pyfunc import Calibrator, ChurnModel, prepare_features, training_categories

REFERENCE_ROWS = 20_000

# The production recipe when there is no production model yet. Keys other than LightGBM's
# (num_boost_round, early_stopping_rounds, calibration) are consumed here, not passed on.
DEFAULT_PARAMS: dict = {
    "objective": "binary",
    # ~15-20k rows a month and a mostly additive churn logit: small, strongly regularised trees
    # learned slowly beat deep ones (31 leaves / 50 rows stopped after ~70 rounds and lost to the
    # logistic baseline); measured on the simulator world, benchmarks/bench_model.py
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "cat_smooth": 10.0,
    "min_data_per_group": 200,   # categorical levels (city, method) need this many rows to split alone
    "num_boost_round": 2000,
    "early_stopping_rounds": 100,
    "calibration": "sigmoid",
    "refit": True,               # stage 2: refit on all train months (False: ship the stage-1 booster)
}
_NOT_LGB = ("num_boost_round", "early_stopping_rounds", "calibration", "refit")
# Runtime settings, not part of the recipe: dropped from params (and so from params.json,
# which the next refit inherits) and from the training fingerprint. The thread count comes
# from TrainConfig.num_threads.
RUNTIME_PARAMS = ("num_threads", "n_jobs", "num_thread", "nthread", "nthreads")


@dataclass
class TrainingResult:
    model: ChurnModel  # deployable: train months + validation month (registered and served)
    holdout_model: ChurnModel  # train months only, evaluated on the validation month
    metrics: dict[str, float]  # hold-out model on the validation month
    baseline_metrics: dict[str, float]
    params: dict  # the recipe (no runtime settings such as num_threads)
    best_iteration: int  # the deployable booster's rounds
    feature_importance: pd.DataFrame  # feature, gain, split of the deployable booster (by gain, descending)
    reference_sample: pd.DataFrame  # FEATURE_COLUMNS + target_month, up to REFERENCE_ROWS rows the deployable learned
    validation_predictions: pd.DataFrame  # msno, churn_probability, is_churn (hold-out model)
    calibration_curve: pd.DataFrame  # bin, lower, upper, count, mean_predicted, observed_rate (hold-out)
    train_months: list[dt.date]
    valid_month: dt.date
    trained_through: dt.date  # newest labelled month the deployable model learned
    fingerprint: str  # training_fingerprint(window, data, recipe, seed)
    holdout_iteration: int = 0  # the hold-out booster's rounds
    num_threads: int = 0  # LightGBM threads actually used (runtime, not recipe)


# ---------------------------------------------------------------- metrics

def evaluate(y: np.ndarray, p: np.ndarray, a_threshold: float = A_THRESHOLD) -> dict[str, float]:
    """A training run's validation metrics: core.metrics.classification_metrics (NaN where undefined)."""
    return classification_metrics(y, p, a_threshold)


# ---------------------------------------------------------------- training

def split_months(
    frame: pd.DataFrame, train_months: list[dt.date], valid_month: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(fit, early-stop, validation) frames by target_month; refuses overlapping windows."""
    months = sorted(train_months)
    if len(months) < 2:
        raise ValueError("need at least 2 train months: the newest one is the early-stopping/calibration set")
    if valid_month in months or valid_month <= months[-1]:
        raise ValueError(f"validation month {valid_month} must be newer than every train month {months}")
    by = frame["target_month"]
    parts = frame[by.isin(months[:-1])], frame[by == months[-1]], frame[by == valid_month]
    for name, part in zip(("fit", "early-stopping", "validation"), parts, strict=True):
        if part.empty or part[TARGET].nunique() < 2:
            raise ValueError(f"the {name} month(s) have no rows or a single class; cannot train")
    return parts


def recipe(params: dict | None) -> dict:
    """DEFAULT_PARAMS overlaid with `params`, without runtime-only settings."""
    return {k: v for k, v in {**DEFAULT_PARAMS, **(params or {})}.items() if k not in RUNTIME_PARAMS}


def resolve_threads(num_threads: int = 0) -> int:
    """`num_threads` if positive, else every core this process may run on (resolved now,
    on the machine doing the work)."""
    if num_threads > 0:
        return int(num_threads)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def lgb_params(params: dict, seed: int, num_threads: int = 0) -> dict:
    out = {k: v for k, v in params.items() if k not in _NOT_LGB and k not in RUNTIME_PARAMS}
    out.update({"objective": "binary", "metric": "binary_logloss", "verbose": -1, "seed": seed,
                "num_threads": resolve_threads(num_threads)})
    return out


def training_fingerprint(
    frame: pd.DataFrame, train_months: list[dt.date], valid_month: dt.date, params: dict | None, seed: int = 0
) -> str:
    """Stable hash of what a training run learns from: the window (train months, validation
    month), the content of those months' rows (keys, features, labels; sorted by
    target_month, msno so row order does not matter), the recipe and the seed. Runtime
    settings (threads) are left out. Same data and recipe -> same fingerprint."""
    months = [*sorted(train_months), valid_month]
    rows = frame[frame["target_month"].isin(months)].sort_values(["target_month", "msno"], kind="stable")
    columns = ["msno", "target_month", *FEATURE_COLUMNS, TARGET]
    if "sample_weight" in rows and (rows["sample_weight"] != 1.0).any():  # unweighted frames keep their hash
        columns.append("sample_weight")
    header = json.dumps(
        {"train_months": [m.isoformat() for m in months[:-1]], "valid_month": valid_month.isoformat(),
         "params": recipe(params), "seed": int(seed)},
        sort_keys=True, default=str,
    )
    digest = hashlib.sha256(header.encode())
    digest.update(pd.util.hash_pandas_object(rows[columns], index=False).to_numpy().tobytes())
    return digest.hexdigest()[:20]


def weights(frame: pd.DataFrame) -> np.ndarray | None:
    """The rows' sample_weight (model.data: the hold-out standing for the intervened), if any."""
    return frame["sample_weight"].to_numpy(float) if "sample_weight" in frame else None


def fit_booster(
    fit: pd.DataFrame,
    stop: pd.DataFrame,
    categories: dict[str, list[str]],
    params: dict,
    seed: int = 0,
    callbacks: list | None = None,
    num_threads: int = 0,
) -> lgb.Booster:
    """LightGBM on `fit`, early-stopped on log loss of `stop` (valid name 'early_stop')."""
    full = recipe(params)
    train_set = lgb.Dataset(prepare_features(fit, categories), label=fit[TARGET].to_numpy(), weight=weights(fit),
                            free_raw_data=False)
    stop_set = lgb.Dataset(prepare_features(stop, categories), label=stop[TARGET].to_numpy(), weight=weights(stop),
                           reference=train_set)
    return lgb.train(
        lgb_params(full, seed, num_threads),
        train_set,
        num_boost_round=int(full["num_boost_round"]),
        valid_sets=[stop_set],
        valid_names=["early_stop"],
        callbacks=[lgb.early_stopping(int(full["early_stopping_rounds"]), verbose=False), *(callbacks or [])],
    )


def refit_booster(
    frame: pd.DataFrame, categories: dict[str, list[str]], params: dict, rounds: int, seed: int = 0,
    num_threads: int = 0,
) -> lgb.Booster:
    """LightGBM on all of `frame` for a fixed number of rounds (found by early stopping before)."""
    full = recipe(params)
    train_set = lgb.Dataset(prepare_features(frame, categories), label=frame[TARGET].to_numpy(), weight=weights(frame))
    return lgb.train(lgb_params(full, seed, num_threads), train_set, num_boost_round=max(1, int(rounds)))


def fit_calibrator(y: np.ndarray, raw_p: np.ndarray, method: str, weight: np.ndarray | None = None) -> Calibrator:
    p = np.clip(raw_p, 1e-6, 1 - 1e-6)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y, sample_weight=weight)
        return Calibrator("isotonic", x=tuple(iso.X_thresholds_), y=tuple(iso.y_thresholds_))
    if method == "sigmoid":
        margin = np.log(p / (1 - p)).reshape(-1, 1)
        lr = LogisticRegression(C=1e6).fit(margin, y, sample_weight=weight)  # ~unregularised Platt scaling
        return Calibrator("sigmoid", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
    if method == "none":
        return Calibrator("none")
    raise ValueError(f"calibration must be isotonic, sigmoid or none, got {method!r}")


def baseline_pipeline() -> Pipeline:
    """Impute, scale numerics, one-hot categoricals, logistic regression."""
    numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", min_frequency=20),
    )
    columns = ColumnTransformer([("num", numeric, NUMERIC_COLUMNS), ("cat", categorical, CATEGORICAL_COLUMNS)])
    return make_pipeline(columns, LogisticRegression(max_iter=2000))


def _baseline_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    X = frame[FEATURE_COLUMNS].copy()
    X[NUMERIC_COLUMNS] = X[NUMERIC_COLUMNS].astype(float).replace([np.inf, -np.inf], np.nan)
    X[CATEGORICAL_COLUMNS] = X[CATEGORICAL_COLUMNS].astype(object).where(X[CATEGORICAL_COLUMNS].notna(), "missing").astype(str)
    return X


def _importance(model: ChurnModel) -> pd.DataFrame:
    booster, best = model.booster, model.best_iteration
    return pd.DataFrame({
        "feature": model.feature_columns,
        "gain": booster.feature_importance("gain", iteration=best),
        "split": booster.feature_importance("split", iteration=best),
    }).sort_values("gain", ascending=False, ignore_index=True)


def _refit_model(frame: pd.DataFrame, categories: dict[str, list[str]], params: dict, stage1_rounds: int,
                 stage1_rows: int, calibrator: Calibrator, seed: int, threads: int) -> ChurnModel:
    """The recipe refit on all of `frame` with the stage-1 calibrator: more rows support
    proportionally more rounds at the same learning rate."""
    rounds = max(1, round(stage1_rounds * len(frame) / stage1_rows))
    booster = refit_booster(frame, categories, params, rounds, seed, threads)
    return ChurnModel(model_str=booster.model_to_string(num_iteration=rounds), calibrator=calibrator,
                      categories=categories, params=params, best_iteration=rounds)


def train_churn_model(
    frame: pd.DataFrame,
    params: dict | None,
    train_months: list[dt.date],
    valid_month: dt.date,
    seed: int = 0,
    num_threads: int = 0,
) -> TrainingResult:
    """Fit booster + calibrator + baseline on `train_months` and evaluate them on
    `valid_month` (the hold-out model), then refit the same recipe on train months +
    validation month (the deployable model). `num_threads` 0 = all cores."""
    params = recipe(params)
    threads = resolve_threads(num_threads)
    fit, stop, valid = split_months(frame, train_months, valid_month)
    train_all = pd.concat([fit, stop])
    categories = training_categories(train_all)

    booster = fit_booster(fit, stop, categories, params, seed, num_threads=threads)
    stage1 = int(booster.best_iteration or booster.current_iteration())
    raw_stop = booster.predict(prepare_features(stop, categories), num_iteration=stage1)
    calibrator = fit_calibrator(stop[TARGET].to_numpy(), raw_stop, params["calibration"], weights(stop))
    refit = bool(params.get("refit", True))
    if refit:
        holdout = _refit_model(train_all, categories, params, stage1, len(fit), calibrator, seed, threads)
    else:
        holdout = ChurnModel(model_str=booster.model_to_string(num_iteration=stage1), calibrator=calibrator,
                             categories=categories, params=params, best_iteration=stage1)

    p_valid = holdout.predict_proba(valid)
    y_valid = valid[TARGET].to_numpy()
    baseline = baseline_pipeline().fit(_baseline_matrix(train_all), train_all[TARGET].to_numpy())
    p_base = baseline.predict_proba(_baseline_matrix(valid))[:, 1]

    if refit:  # deployable: the same recipe on every month, the validation month included
        learned = pd.concat([train_all, valid])
        # categories from every learned month: a category new in the newest month is kept
        model = _refit_model(learned, training_categories(learned), params, stage1, len(fit),
                                             calibrator, seed, threads)
        trained_through = valid_month
    else:  # refit=False ships the stage-1 booster as it is: it learned the train months only
        learned, model, trained_through = train_all, holdout, sorted(train_months)[-1]

    reference = learned[[*FEATURE_COLUMNS, "target_month"]].sample(
        n=min(REFERENCE_ROWS, len(learned)), random_state=seed
    ).reset_index(drop=True)
    predictions = pd.DataFrame({
        "msno": valid["msno"].to_numpy(),
        "churn_probability": p_valid,
        "is_churn": y_valid.astype("int64"),
    })
    return TrainingResult(
        model=model,
        holdout_model=holdout,
        metrics=evaluate(y_valid, p_valid),
        baseline_metrics=evaluate(y_valid, p_base),
        params=params,
        best_iteration=model.best_iteration,
        feature_importance=_importance(model),
        reference_sample=reference,
        validation_predictions=predictions,
        calibration_curve=calibration_table(y_valid, p_valid),
        train_months=sorted(train_months),
        valid_month=valid_month,
        trained_through=trained_through,
        fingerprint=training_fingerprint(frame, train_months, valid_month, params, seed),
        holdout_iteration=holdout.best_iteration,
        num_threads=threads,
    )
