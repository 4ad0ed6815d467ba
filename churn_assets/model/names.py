"""Names in the MLflow store: experiment, registered model, aliases, version tags, artifacts.

Plain constants without an MLflow import, so Dagster definitions, the CLI and the server
wrapper use them without paying MLflow's import time.

Aliases replace MLflow's deprecated stages: `staging` = passed the automated tests,
`production` = passed acceptance against the previous production version.
"""
from __future__ import annotations

EXPERIMENT = "churn"
MODEL_NAME = "churn_model"
STAGING, PRODUCTION = "staging", "production"

TAG_AUTOMATED = "gate.automated"
TAG_ACCEPTANCE = "gate.acceptance"
PASSED, FAILED = "passed", "failed"
# The data a version learned: the newest labelled month in its training window (validation
# month included once the recipe is refit on it), and a fingerprint of data + parameters
# (two versions with the same one are the same model).
TAG_TRAINED_THROUGH = "trained_through"
TAG_FINGERPRINT = "training_fingerprint"

# artifacts of a training run, relative to the run's artifact root
REFERENCE_FEATURES = "reference/reference_features.parquet"
VALIDATION_SCORES = "reference/validation_scores.parquet"
FEATURE_IMPORTANCE = "evaluation/feature_importance.csv"
CALIBRATION_CURVE = "evaluation/calibration_curve.csv"
PARAMS = "params.json"


def model_uri(version: str) -> str:
    return f"models:/{MODEL_NAME}/{version}"
