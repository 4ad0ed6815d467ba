"""Feature and prediction drift with Evidently 0.7, on fixed-seed samples.

One `DataDriftPreset` report (with tests, which carry the per-column drift
verdicts) gives the numbers and the HTML. Evidently picks each column's test by
type and sample size (K-S / chi-square p-values up to 1000 rows, Wasserstein /
Jensen-Shannon distances above). Both sides are sampled to `sample_size` rows
(default 5000): a report takes seconds whatever the population, and above
1000 rows the verdicts are effect sizes, not significance that any large
sample would reach. Below that, ~5% of stable columns flag by chance.

    result = compute_drift(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS,
                           html_path=Path("data/reports/drift/2017-03-06.html"))
    result.drift_share, result.columns.head()
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

COLUMN_FIELDS = ["column_name", "method", "score", "threshold", "drifted"]
PREDICTION_COLUMN = "churn_probability"
# A column null on one side only cannot be tested, but it has clearly moved
# (e.g. listening logs stopped arriving): reported as drifted under this method.
EMPTY_ONE_SIDE = "all null on one side"
EMPTY_BOTH = "all null on both sides"


@dataclass(frozen=True)
class DriftResult:
    n_columns: int
    n_drifted: int
    drift_share: float
    columns: pd.DataFrame  # COLUMN_FIELDS, most drifted first
    reference_rows: int  # rows compared, after sampling
    current_rows: int
    html_path: Path | None = None


def sample_rows(frame: pd.DataFrame, sample_size: int, seed: int) -> pd.DataFrame:
    """At most `sample_size` rows, drawn without replacement with a fixed seed."""
    if sample_size < 1:
        raise ValueError(f"sample_size must be positive, got {sample_size}")
    if len(frame) <= sample_size:
        return frame.reset_index(drop=True)
    return frame.sample(n=sample_size, random_state=seed).reset_index(drop=True)


def _checked(frame: pd.DataFrame, columns: list[str], side: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{side} frame lacks columns {missing}")
    if frame.empty:
        raise ValueError(f"{side} frame is empty: nothing to compare")


def _prepare(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numeric columns as float (nullable ints and decimals confuse the tests),
    categorical ones as strings with missing values kept missing."""
    out = frame[numeric + categorical].copy()
    out[numeric] = out[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    for column in categorical:
        values = out[column]
        out[column] = values.astype(str).astype(object).where(values.notna(), None)
    return out


def _sort_most_drifted(columns: pd.DataFrame) -> pd.DataFrame:
    """Drifted first, then by strength of evidence relative to the column's own
    threshold, so p-value tests and distances compare. A p-value test drifts
    below its threshold and a distance at or above it, so the verdict tells
    which kind each row is without a table of method names."""
    score, threshold, drifted = columns["score"], columns["threshold"], columns["drifted"]
    p_value = drifted == (score < threshold)
    strength = np.where(p_value, threshold / score.clip(lower=1e-300), score / threshold)
    key = pd.Series(strength, index=columns.index).fillna(np.inf).where(columns["method"] != EMPTY_BOTH, -np.inf)
    order = np.lexsort((-key.to_numpy(), ~drifted.to_numpy(bool)))
    return columns.iloc[order].reset_index(drop=True)


def _value_drifts(snapshot) -> pd.DataFrame:
    """One row per ValueDrift metric of a snapshot: column, method, score,
    threshold, and the verdict of its test (FAIL = drift detected)."""
    data = snapshot.dict()
    verdicts = {t["metric_config"]["metric_id"]: getattr(t["status"], "value", t["status"]) for t in data["tests"]}
    rows = [
        {
            "column_name": m["config"]["column"],
            "method": m["config"]["method"],
            "score": float(m["value"]),
            "threshold": np.nan if m["config"].get("threshold") is None else float(m["config"]["threshold"]),
            "drifted": verdicts[m["id"]] == "FAIL",
        }
        for m in data["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    ]
    return pd.DataFrame(rows, columns=COLUMN_FIELDS)


def _evidently_drift(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    num_method: str | None,
    cat_method: str | None,
    html_path: Path | None,
) -> pd.DataFrame:
    """Run one DataDriftPreset report over the columns; per-column rows, HTML saved."""
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    preset = DataDriftPreset(columns=columns, num_method=num_method, cat_method=cat_method)
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(cur[columns], data_definition=definition),
        Dataset.from_pandas(ref[columns], data_definition=definition),
    )
    if html_path is not None:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    return _value_drifts(snapshot)


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    sample_size: int = 5000,
    seed: int = 0,
    html_path: Path | None = None,
    num_method: str | None = None,
    cat_method: str | None = None,
) -> DriftResult:
    """Per-column drift of `current` against `reference` over the given columns.

    Both sides are sampled to `sample_size` rows with `seed`. `num_method` /
    `cat_method` force an Evidently stat test (e.g. "wasserstein", "psi");
    None lets Evidently choose by type and size. The HTML report is written to
    `html_path` when given. drift_share = drifted columns / columns.
    """
    features = list(numeric) + list(categorical)
    if not features or len(set(features)) != len(features):
        raise ValueError("numeric + categorical must name distinct columns, at least one")
    _checked(reference, features, "reference")
    _checked(current, features, "current")
    ref = _prepare(sample_rows(reference, sample_size, seed), numeric, categorical)
    cur = _prepare(sample_rows(current, sample_size, seed), numeric, categorical)

    # Evidently refuses all-null columns; decide those here.
    ref_empty, cur_empty = ref.isna().all(), cur.isna().all()
    skipped = [c for c in features if ref_empty[c] or cur_empty[c]]
    tested_num = [c for c in numeric if c not in skipped]
    tested_cat = [c for c in categorical if c not in skipped]
    rows = [
        {"column_name": c, "method": EMPTY_BOTH if ref_empty[c] and cur_empty[c] else EMPTY_ONE_SIDE,
         "score": np.nan, "threshold": np.nan, "drifted": not (ref_empty[c] and cur_empty[c])}
        for c in skipped
    ]
    frames = [pd.DataFrame(rows, columns=COLUMN_FIELDS)] if rows else []

    if tested_num or tested_cat:
        frames.insert(0, _evidently_drift(ref, cur, tested_num, tested_cat, num_method, cat_method, html_path))
    else:
        html_path = None  # nothing Evidently could render

    columns = pd.concat(frames, ignore_index=True).astype({"score": float, "threshold": float, "drifted": bool})
    columns = _sort_most_drifted(columns)
    n_drifted = int(columns["drifted"].sum())
    return DriftResult(
        n_columns=len(features),
        n_drifted=n_drifted,
        drift_share=n_drifted / len(features),
        columns=columns,
        reference_rows=len(ref),
        current_rows=len(cur),
        html_path=html_path,
    )


def prediction_drift(
    reference_scores: pd.DataFrame | pd.Series,
    current_scores: pd.DataFrame | pd.Series,
    column: str = PREDICTION_COLUMN,
    sample_size: int = 5000,
    seed: int = 0,
    method: str | None = None,
    html_path: Path | None = None,
) -> dict:
    """Drift of the model's output distribution, tested like a numeric feature.
    Returns one drift row as a dict (COLUMN_FIELDS). Reported beside, never
    counted in, the feature drift share."""
    ref, cur = (
        (s.to_frame(column) if isinstance(s, pd.Series) else s)[[column]].dropna()
        for s in (reference_scores, current_scores)
    )
    _checked(ref, [column], "reference scores")
    _checked(cur, [column], "current scores")
    ref = _prepare(sample_rows(ref, sample_size, seed), [column], [])
    cur = _prepare(sample_rows(cur, sample_size, seed), [column], [])
    return _evidently_drift(ref, cur, [column], [], method, None, html_path).iloc[0].to_dict()
