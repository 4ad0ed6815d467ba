"""The two gates and the alias moves of churn_model.

`staging` = passed the automated tests (floors relative to the base rate, the logistic
baseline, schema), `production` = passed acceptance: a paired bootstrap non-inferiority test
against the incumbent on the challenger's validation month, which must be the newest final
labelled month (churn_assets.model.gate holds the maths). A version only ever gets
`production` while it carries the tag gate.automated=passed, re-read right before the alias
moves; a version trained on the same data and recipe as production (same
training_fingerprint) is refused. Every decision is written as version tags and (by the
caller, with promotion_log.record_promotion) as a row of ml.model_promotions.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, TARGET
from churn_assets.dates import as_date
from churn_assets.model import gate
from churn_assets.model.names import (
    FAILED,
    MODEL_NAME,
    PASSED,
    PRODUCTION,
    STAGING,
    TAG_ACCEPTANCE,
    TAG_AUTOMATED,
    TAG_FINGERPRINT,
)
from churn_assets.model.promotion_log import decision_time
from churn_assets.model.pyfunc import PREDICT_COLUMNS
from churn_assets.model.training import TrainingResult, evaluate
from churn_assets.model.versions import (
    TrainingEvidence,
    alias_version,
    load_pyfunc,
    load_version,
    set_version_tags,
    trained_through,
    validation_scores,
)


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]
    details: dict = field(default_factory=dict)  # challenger/incumbent metrics for ml.model_promotions


def _expected_type(column: str) -> str:
    return "string" if column in CATEGORICAL_COLUMNS else "double"


def _signature_problems(model: mlflow.pyfunc.PyFuncModel, sample: pd.DataFrame) -> list[str]:
    schema = model.metadata.get_input_schema()
    if schema is None:
        return ["model has no input signature"]
    spec = {c.name: str(c.type) for c in schema.inputs}
    problems = []
    if list(spec) != FEATURE_COLUMNS:
        problems.append(f"signature columns differ from FEATURE_COLUMNS: {sorted(set(spec) ^ set(FEATURE_COLUMNS))}")
    wrong = [f"{c}:{spec[c]}" for c in FEATURE_COLUMNS if c in spec and _expected_type(c) not in spec[c].lower()]
    if wrong:
        problems.append(f"signature types differ from the feature contract: {wrong}")
    try:  # the schema-enforcing pyfunc path must accept feature-store rows
        out = model.predict(sample)
        if list(out.columns) != PREDICT_COLUMNS or len(out) != len(sample):
            problems.append(f"pyfunc predict does not return one row of {PREDICT_COLUMNS} per input row")
    except Exception as exc:  # noqa: BLE001 - any failure here is a gate refusal, with its text
        problems.append(f"pyfunc predict rejects feature-store rows: {exc}")
    return problems


def _probability_problems(p: np.ndarray, where: str) -> list[str]:
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        return [f"no probabilities on {where}"]
    bad = int((~np.isfinite(p) | (p < 0) | (p > 1)).sum())
    return [f"{bad} missing or out-of-range probabilities on {where}"] if bad else []


def automated_tests(
    client: MlflowClient,
    version: str,
    result: TrainingResult | TrainingEvidence,
    min_auc_lift: float = gate.MIN_AUC_LIFT,
    min_log_loss_gain: float = gate.MIN_LOG_LOSS_GAIN,
    baseline_margin: float = 0.0,
) -> GateDecision:
    """Schema, sanity, floors and the baseline, on the registered artifact itself. Pass: tag
    gate.automated=passed and move alias `staging`; fail: tag failed with the reasons.
    Floors are relative to the validation month's base rate: log loss at least
    `min_log_loss_gain` (a fraction) below the constant forecast's, AUC above 0.5 +
    `min_auc_lift`. The AUC must exceed the baseline's + `baseline_margin` (0: strictly beat it)."""
    version = str(version)
    pyfunc_model = load_pyfunc(client, version)
    sample = result.reference_sample[FEATURE_COLUMNS].head(1000)  # the reference also has target_month
    reasons = _signature_problems(pyfunc_model, sample.head(50))
    validation = result.validation_predictions
    reasons += _probability_problems(validation["churn_probability"], "the validation month")
    p_loaded = pyfunc_model.unwrap_python_model().predict_proba(sample)
    reasons += _probability_problems(p_loaded, "the reference sample")
    in_memory = getattr(result, "model", None)
    if in_memory is not None and not np.allclose(p_loaded, in_memory.predict_proba(sample), atol=1e-9):
        reasons.append("the registered artifact does not reproduce the trained model's probabilities")
    auc, ll = result.metrics.get("auc", float("nan")), result.metrics.get("log_loss", float("nan"))
    base_auc = result.baseline_metrics.get("auc", float("nan"))
    y = validation["is_churn"].to_numpy(dtype=float)
    reasons += gate.floor_problems(auc, ll, y, min_auc_lift, min_log_loss_gain)
    if not auc > base_auc + baseline_margin:
        reasons.append(f"validation AUC {auc:.4f} does not beat the logistic baseline {base_auc:.4f}"
                       + (f" by {baseline_margin:+.3f}" if baseline_margin else ""))

    passed = not reasons
    details = {"challenger_auc": auc, "challenger_log_loss": ll, "baseline_auc": base_auc,
               "base_rate_log_loss": gate.base_rate_log_loss(y)}
    set_version_tags(client, version, {
        TAG_AUTOMATED: PASSED if passed else FAILED,
        f"{TAG_AUTOMATED}.reason": "; ".join(reasons) or "all automated tests passed",
        f"{TAG_AUTOMATED}.decided_at": decision_time().isoformat(),
    })
    if passed:
        client.set_registered_model_alias(MODEL_NAME, STAGING, version)
    return GateDecision(passed, reasons or ["all automated tests passed"], details)


def promote(client: MlflowClient, version: str, alias: str = PRODUCTION) -> bool:
    """Move `alias` to `version` only if the version is tagged gate.automated=passed, read
    fresh from the registry right before the move (a racing run cannot slip a failed one in)."""
    fresh = client.get_model_version(MODEL_NAME, str(version))
    if fresh.tags.get(TAG_AUTOMATED) != PASSED:
        return False
    client.set_registered_model_alias(MODEL_NAME, alias, str(version))
    return True


def _incumbent_predictions(
    client: MlflowClient, incumbent: str, month: dt.date, rows: pd.DataFrame, frame: pd.DataFrame | None
) -> tuple[pd.Series | None, str]:
    """The incumbent's probabilities on the challenger's validation rows (aligned on `rows`,
    NaN where it has none), and where they come from; (None, reason) when no fair pairing
    exists. Out of sample either way: a version that learned only months before `month` is
    scored on its feature rows; a version validated on `month` itself (it was refit on it
    after) contributes its own logged hold-out predictions."""
    tags = client.get_model_version(MODEL_NAME, incumbent).tags
    through, valid = as_date(trained_through(tags)), as_date(tags.get("valid_month"))
    if through is not None and through < month:
        if frame is None or frame.empty or "msno" not in frame:
            return None, f"no feature rows of {month} to score production v{incumbent} on"
        features = frame.drop_duplicates("msno").set_index("msno")
        present = rows["msno"].isin(features.index).to_numpy()
        p = pd.Series(np.nan, index=rows.index)
        if present.any():
            scored = features.loc[rows["msno"].to_numpy()[present]].reset_index(drop=True)
            p.iloc[np.flatnonzero(present)] = load_version(client, incumbent).predict_proba(scored)
        return p, f"production v{incumbent} (trained through {through}) scored on {month}"
    if valid == month:
        logged = validation_scores(client, incumbent).drop_duplicates("msno").set_index("msno")["churn_probability"]
        return pd.Series(logged.reindex(rows["msno"]).to_numpy(), index=rows.index), \
            f"production v{incumbent}'s own hold-out predictions of {month}"
    return None, (f"stale window: production v{incumbent} already learned through {through} (validated on "
                  f"{valid}), the challenger is validated on {month}: comparing there would grade production "
                  "on data it learned")


def population_weights(rows: pd.DataFrame, frame: pd.DataFrame | None) -> np.ndarray:
    """Each validation row's sample_weight in `frame` (model.data: the hold-out of the intervened
    buckets standing for the members an action reached), 1 where the frame has none."""
    if frame is None or "sample_weight" not in frame or frame.empty:
        return np.ones(len(rows))
    weight = frame.drop_duplicates("msno").set_index("msno")["sample_weight"]
    return weight.reindex(rows["msno"]).fillna(1.0).to_numpy(float)


def acceptance(
    client: MlflowClient,
    version: str,
    frame: pd.DataFrame | None,
    acceptance_month: dt.date | None = None,
    auc_margin: float = gate.AUC_MARGIN,
    log_loss_margin: float = gate.LOG_LOSS_MARGIN,
    n_bootstrap: int = gate.N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = gate.CONFIDENCE,
) -> GateDecision:
    """Challenger vs the current production version on the challenger's validation month V,
    which must be `acceptance_month`, the newest final labelled month (default: the newest
    target_month of `frame`, that month's feature rows). The challenger's predictions are its
    logged hold-out predictions; the incumbent's see _incumbent_predictions. Promote when the
    paired bootstrap (gate.non_inferiority) bounds the losses within the margins; refuse a
    stale window or a version identical to production (same training_fingerprint). The first
    model is promoted when it passed the automated tests. Tags the version with the decision."""
    version = str(version)
    incumbent = alias_version(client, PRODUCTION)
    tags = client.get_model_version(MODEL_NAME, version).tags
    month = as_date(tags.get("valid_month"))
    if acceptance_month is None and frame is not None and len(frame):
        acceptance_month = as_date(max(frame["target_month"]))
    challenger = validation_scores(client, version)
    y = challenger[TARGET].to_numpy(dtype=float)
    own = evaluate(y, challenger["churn_probability"].to_numpy())
    details: dict = {
        "challenger_auc": own["auc"], "challenger_log_loss": own["log_loss"],
        "incumbent_version": incumbent, "incumbent_auc": None, "incumbent_log_loss": None,
        "acceptance_month": (acceptance_month or month).isoformat() if (acceptance_month or month) else None,
        "challenger_trained_through": trained_through(tags) or None,
        "delta_auc_low": None, "delta_log_loss_high": None,
    }
    reasons: list[str] = []
    result: gate.NonInferiority | None = None
    if tags.get(TAG_AUTOMATED) != PASSED:
        reasons.append("the version did not pass the automated tests")
    elif incumbent == version:
        return GateDecision(True, [f"version {version} is already production"], details)
    elif incumbent is not None:
        inc_tags = client.get_model_version(MODEL_NAME, incumbent).tags
        fingerprint = tags.get(TAG_FINGERPRINT)
        if fingerprint and fingerprint == inc_tags.get(TAG_FINGERPRINT):
            reasons.append(f"identical to production v{incumbent}: same training data and parameters "
                           f"(training_fingerprint {fingerprint})")
        elif month is None or acceptance_month is None or month != acceptance_month:
            reasons.append(f"stale window: validated on {month}, but the newest final labelled month is "
                           f"{acceptance_month}; retrain on the newest months")
        else:
            p_inc, source = _incumbent_predictions(client, incumbent, month, challenger, frame)
            paired = None if p_inc is None else p_inc.notna().to_numpy()
            if p_inc is None:
                reasons.append(source)
            elif paired.sum() < 0.9 * len(challenger) or len(np.unique(y[paired])) < 2:
                reasons.append(f"only {int(paired.sum())} of the challenger's {len(challenger)} validation rows "
                               f"have a prediction from {source}")
            else:
                yp, pc, pi = y[paired], challenger["churn_probability"].to_numpy()[paired], p_inc.to_numpy()[paired]
                wp = population_weights(challenger, frame)[paired]
                result = gate.non_inferiority(yp, pc, pi, auc_margin, log_loss_margin, n_bootstrap, seed, confidence,
                                              weights=wp)
                (auc_c, ll_c), (auc_i, ll_i) = (gate.weighted_auc_log_loss(yp, p, wp) for p in (pc, pi))
                details.update(challenger_auc=auc_c, challenger_log_loss=ll_c, incumbent_auc=auc_i,
                               incumbent_log_loss=ll_i, weighted=bool((wp != 1.0).any()),
                               delta_auc_low=result.delta_auc_low, delta_log_loss_high=result.delta_log_loss_high)
                verdict = "non-inferior to" if result.passed else "inferior to"
                weighting = ", hold-out weighted for the intervened" if details["weighted"] else ""
                reasons.append(f"{verdict} production v{incumbent} on {month} ({source}{weighting}): "
                               f"{result.describe()}")
    passed = not reasons or (result is not None and result.passed)
    if passed and not promote(client, version, PRODUCTION):
        passed, reasons = False, ["the version lost its gate.automated=passed tag before promotion"]
    if passed and incumbent is None:
        reasons = ["first production model"]
    set_version_tags(client, version, {
        TAG_ACCEPTANCE: PASSED if passed else FAILED,
        f"{TAG_ACCEPTANCE}.reason": "; ".join(reasons),
        f"{TAG_ACCEPTANCE}.decided_at": decision_time().isoformat(),
        f"{TAG_ACCEPTANCE}.month": details["acceptance_month"] or "unknown",
        f"{TAG_ACCEPTANCE}.auc": round(details["challenger_auc"], 6),
        f"{TAG_ACCEPTANCE}.log_loss": round(details["challenger_log_loss"], 6),
        **({f"{TAG_ACCEPTANCE}.delta_auc_low": round(result.delta_auc_low, 6),
            f"{TAG_ACCEPTANCE}.delta_log_loss_high": round(result.delta_log_loss_high, 6)} if result else {}),
    })
    return GateDecision(passed, reasons, details)
