"""Optuna search over the LightGBM recipe ("go back to experimentation").

Each trial trains on the older train months and is scored, and pruned, on the log loss of
the newest train month (the early-stopping set). The validation month is never looked at
here: it stays an honest hold-out for the gate. (The final fit of the winning recipe then refits
all train months for the hold-out model, and train + validation months for the deployable
one, see training.train_churn_model.)
"""
from __future__ import annotations

import datetime as dt

import optuna
import pandas as pd
from optuna_integration import LightGBMPruningCallback
from sklearn.metrics import log_loss

from churn_assets.core.feature_spec import TARGET
from churn_assets.model.pyfunc import prepare_features, training_categories
from churn_assets.model.training import DEFAULT_PARAMS, fit_booster, recipe, split_months

# name -> (low, high, log scale); integers where the bounds are ints
SEARCH_SPACE: dict[str, tuple[float, float, bool]] = {
    # centred on small regularised trees (the default recipe) for ~15-20k rows a month
    "learning_rate": (0.01, 0.1, True),
    "num_leaves": (4, 63, True),
    "min_child_samples": (50, 1000, True),
    "feature_fraction": (0.4, 1.0, False),
    "bagging_fraction": (0.5, 1.0, False),
    "lambda_l1": (1e-8, 10.0, True),
    "lambda_l2": (1e-3, 30.0, True),
    "cat_smooth": (1.0, 50.0, True),
}


def suggest_params(trial: optuna.Trial) -> dict:
    out = {}
    for name, (low, high, log) in SEARCH_SPACE.items():
        if isinstance(low, int) and isinstance(high, int):
            out[name] = trial.suggest_int(name, low, high, log=log)
        else:
            out[name] = trial.suggest_float(name, low, high, log=log)
    return out


def tune(
    frame: pd.DataFrame,
    train_months: list[dt.date],
    valid_month: dt.date,
    n_trials: int = 20,
    timeout_s: float | None = None,
    seed: int = 0,
    num_threads: int = 0,
) -> tuple[dict, pd.DataFrame]:
    """TPE search (seeded) with median pruning; returns (best params merged over
    DEFAULT_PARAMS, trials table). `valid_month` is only used to refuse overlaps.
    `num_threads` (0 = all cores) is a runtime setting, not part of the returned recipe."""
    fit, stop, _ = split_months(frame, train_months, valid_month)
    categories = training_categories(pd.concat([fit, stop]))
    y_stop = stop[TARGET].to_numpy()
    X_stop = prepare_features(stop, categories)

    def objective(trial: optuna.Trial) -> float:
        params = {**DEFAULT_PARAMS, **suggest_params(trial)}
        pruning = LightGBMPruningCallback(trial, "binary_logloss", valid_name="early_stop")
        booster = fit_booster(fit, stop, categories, params, seed, callbacks=[pruning], num_threads=num_threads)
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        return float(log_loss(y_stop, booster.predict(X_stop, num_iteration=booster.best_iteration), labels=[0, 1]))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20),
    )
    study.enqueue_trial({k: DEFAULT_PARAMS[k] for k in SEARCH_SPACE if k in DEFAULT_PARAMS})  # the incumbent recipe
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError("no Optuna trial completed; raise timeout_s or n_trials")
    trials = study.trials_dataframe(attrs=("number", "value", "state", "duration", "params", "user_attrs"))
    return recipe(study.best_params), trials
