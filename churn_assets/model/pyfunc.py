"""The churn model as an MLflow pyfunc: LightGBM booster + probability calibration.

Everything the model needs travels inside it: the booster as a model string, the calibrator
as plain arrays (no sklearn object to unpickle across versions), the feature order and the
categories fixed at training time (unseen categories become missing, as LightGBM expects).
Importable from the installed package, so log_model needs no code_paths.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS
from churn_assets.core.buckets import A_THRESHOLD, B_THRESHOLD, actions_for, assign_buckets
from churn_assets.core.reasons import REASON_COLUMNS, top_reasons

_EPS = 1e-6


def predict_threads() -> int:
    """LightGBM threads for prediction: CHURN_PREDICT_THREADS, default 0 = every core. Training
    keeps its own setting (TrainConfig.num_threads, baked into the booster's params); prediction
    overrides it because it is embarrassingly parallel over rows: at 21 k scoring rows x 1000 trees,
    2 threads took 0.32 s instead of 0.63 s, and SHAP contributions of 8 k rows 1.7 s instead of 3.5 s."""
    return int(os.environ.get("CHURN_PREDICT_THREADS", "0"))
# what predict (and so the model server) returns per row, and the params it accepts
PREDICT_COLUMNS: list[str] = ["churn_probability", "bucket", "action", *REASON_COLUMNS]
PREDICT_PARAMS: dict[str, float] = {"a_threshold": A_THRESHOLD, "b_threshold": B_THRESHOLD}


@dataclass(frozen=True)
class Calibrator:
    """Maps the booster's raw probability to a calibrated one.

    method "isotonic": piecewise-linear through (x, y) knots; "sigmoid": Platt scaling
    sigmoid(a * margin + b) on the raw log-odds (monotone, keeps the ranking); "none": identity.
    """

    method: str = "none"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def __call__(self, raw_probability: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(raw_probability, dtype=float), _EPS, 1 - _EPS)
        if self.method == "isotonic":
            out = np.interp(p, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-(self.a * np.log(p / (1 - p)) + self.b)))
        elif self.method == "none":
            out = p
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        return np.clip(out, _EPS, 1 - _EPS)


def prepare_features(
    frame: pd.DataFrame,
    categories: dict[str, list[str]],
    feature_columns: list[str] = FEATURE_COLUMNS,
) -> pd.DataFrame:
    """The model matrix: feature columns in training order, numerics as float (inf -> NaN),
    categoricals as pandas category with the training categories. Raises ValueError naming
    the missing columns."""
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks feature columns: {', '.join(missing)}")
    out = pd.DataFrame(index=frame.index)
    for c in feature_columns:
        if c in categories:
            values = frame[c].astype("string").astype(object).where(frame[c].notna(), None)
            out[c] = pd.Categorical(values, categories=categories[c])
        else:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
    return out


def training_categories(frame: pd.DataFrame, columns: list[str] = CATEGORICAL_COLUMNS) -> dict[str, list[str]]:
    """Sorted distinct non-null values (as strings) of each categorical column."""
    return {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in columns}


@dataclass
class ChurnModel(mlflow.pyfunc.PythonModel):
    model_str: str
    calibrator: Calibrator
    categories: dict[str, list[str]]
    feature_columns: list[str] = field(default_factory=lambda: list(FEATURE_COLUMNS))
    params: dict = field(default_factory=dict)
    best_iteration: int = 0

    def __post_init__(self) -> None:
        self._booster: lgb.Booster | None = None

    # the booster is rebuilt from the string after unpickling instead of being pickled twice
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_booster"] = None
        return state

    @property
    def booster(self) -> lgb.Booster:
        if self._booster is None:
            self._booster = lgb.Booster(model_str=self.model_str)
        return self._booster

    def features(self, df: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(df, self.categories, self.feature_columns)

    def raw_probability(self, df: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self.features(df), num_iteration=self.best_iteration or None,
                                    num_threads=predict_threads())

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities, one per row, in (0, 1)."""
        return self.calibrator(self.raw_probability(df))

    def contributions(self, df: pd.DataFrame) -> pd.DataFrame:
        """Per-row SHAP values in raw-score (log-odds) space: FEATURE_COLUMNS + 'bias';
        each row sums to the booster's uncalibrated margin. ~0.3 ms/row: call it on the rows
        that need reasons only."""
        values = self.booster.predict(
            self.features(df), num_iteration=self.best_iteration or None, pred_contrib=True,
            num_threads=predict_threads(),
        )
        return pd.DataFrame(values, columns=[*self.feature_columns, "bias"], index=df.index)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """What a caller of the served model needs per row: churn_probability, bucket, action
        and reason_1..3 (the same rules as the weekly scores). Bucket thresholds come from
        `params` (PREDICT_PARAMS: a_threshold, b_threshold) when the signature declares them,
        else the defaults.
        Missing feature columns raise ValueError naming them."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        thresholds = {**PREDICT_PARAMS, **(params or {})}
        p = self.predict_proba(frame)
        buckets = assign_buckets(p, float(thresholds["a_threshold"]), float(thresholds["b_threshold"]))
        out = pd.DataFrame(
            {"churn_probability": p, "bucket": buckets, "action": actions_for(buckets)}, index=frame.index
        )
        # online batches are small: every row gets its reasons (~0.3 ms/row of SHAP)
        reasons = top_reasons(self.contributions(frame), frame, k=len(REASON_COLUMNS))
        out[REASON_COLUMNS] = reasons.to_numpy()
        return out[PREDICT_COLUMNS]
