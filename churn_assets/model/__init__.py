"""Model domain, pure code (the Dagster assets, check and jobs are in churn_assets.defs.model):

- data.py: training frames and windows from the feature store
- training.py, tuning.py, pyfunc.py: fit, calibrate, evaluate; Optuna; the served model class
- gate.py: the statistics of the two gates (floors, paired bootstrap non-inferiority)
- names.py: experiment, model, alias, tag and artifact names in MLflow (no MLflow import)
- versions.py: reading the registry (client, a version's model, tags, recipe, evidence)
- mlflow_logging.py: writing a training run and registering its version
- promotion.py: the automated tests and acceptance gates, moving the aliases
- promotion_log.py: the ml.model_promotions table
"""
import os

# LightGBM's OpenMP threads spin at every barrier by default. With TrainConfig.num_threads > 1
# and another process holding a core (ops side by side, a shared machine), a 2-thread fit of
# 10k rows took 20-39 s instead of 1.8 s; passive waiting keeps it at ~2.3 s. libgomp reads
# this once, when lightgbm first loads it, so it is set before any model import (override:
# set OMP_WAIT_POLICY yourself).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
