"""Feature and prediction drift: Evidently's statistical tests for the numbers, its preset for the HTML.

Numbers. Per column, Evidently picks the test (`get_stattest`: by column type, reference
size and cardinality: normed Wasserstein / Jensen-Shannon distances above 1000 reference
rows, K-S / chi-square / Z p-values up to 1000) and computes it with its default or a
given threshold: the very calls `ValueDrift` makes. Going through `Report([ValueDrift...])`
instead costs ~1.3 s a week at 5k x 33 columns, because each ValueDrift builds its plotly
widgets whether HTML is wanted or not; the direct calls take well under 0.1 s. The method
of each column is resolved once on the reference sample, so a version's calibration and
all its weeks use the same test.

HTML. `render_drift_html` runs the DataDriftPreset on the same samples with the same
methods and per-column thresholds, so the page shows the verdicts the numbers gave; the
asset renders it only when the week asks for action (or on demand).

Weights and thresholds. A column's weight is its share of the production model's gain
(`feature_weights`); drift_share = sum of the drifted columns' weights. A column's
threshold is calibrated on stationary data of the model's own training window
(`calibrate_thresholds`): each training month scored against the rest, and the weeks
inside the window scored against the reference, with the column's method; the threshold
is max(Evidently's default, factor x the largest such score), so a column that is noisy
month to month, or that a Monday window shapes differently from a calendar month, does
not read as drift every week.

Both sides are sampled to `sample_size` rows (default 5000) with a fixed seed.

    methods = resolve_methods(reference, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS)
    calibration = calibrate_thresholds(reference, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, methods,
                                       stationary_weeks={week: frame})  # weeks inside the training window
    weights, source = feature_weights(evidence.feature_importance, FEATURE_COLUMNS)
    result = compute_drift(reference, current, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS, methods=methods,
                           thresholds=threshold_map(calibration), weights=weights)
    result.drift_share, result.column_share, result.columns.head()
"""
from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.calculations.stattests.registry import StatTestInvalidFeatureTypeError
from evidently.legacy.core import ColumnType

from churn_assets.dates import add_months
from churn_assets.sql import ident, replace_partition, table_exists

COLUMN_FIELDS = ["column_name", "method", "score", "threshold", "default_threshold", "drifted", "weight"]
PREDICTION_COLUMN = "churn_probability"
MONTH_COLUMN = "target_month"  # in the reference sample: the training month of each row
# A column null on one side only cannot be tested, but it has clearly moved
# (e.g. listening logs stopped arriving): reported as drifted under this method.
EMPTY_ONE_SIDE = "all null on one side"
EMPTY_BOTH = "all null on both sides"
# Evidently's tests whose score is a distance (larger = more drift); the others return
# p-values (smaller = more drift). Evidently says which only inside each test function.
DISTANCE_METHODS = frozenset({"wasserstein", "jensenshannon", "psi", "kl_div", "hellinger", "ed"})
THRESHOLDS_TABLE = "monitoring.drift_thresholds"
CALIBRATION_FIELDS = ["column_name", "method", "default_threshold", "month_noise", "week_noise", "noise",
                      "threshold", "months", "weeks"]
RENDER_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class DriftResult:
    n_columns: int
    n_drifted: int
    drift_share: float  # importance-weighted: sum of the drifted columns' weights
    column_share: float  # n_drifted / n_columns
    columns: pd.DataFrame  # COLUMN_FIELDS, drifted first (heaviest first), then by strength
    reference_rows: int  # rows compared, after sampling
    current_rows: int


# ---------------------------------------------------------------- inputs


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


def _features(numeric: list[str], categorical: list[str]) -> list[str]:
    features = list(numeric) + list(categorical)
    if not features or len(set(features)) != len(features):
        raise ValueError("numeric + categorical must name distinct columns, at least one")
    return features


def _prepare(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numeric columns as float (nullable ints and decimals confuse the tests),
    categorical ones as strings with missing values kept missing."""
    out = frame[list(numeric) + list(categorical)].copy()
    out[numeric] = out[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    for column in categorical:
        values = out[column]
        out[column] = values.astype(str).astype(object).where(values.notna(), None)
    return out


def _values(frame: pd.DataFrame, column: str) -> pd.Series:
    """The column as Evidently's ValueDrift tests it: infinities and missing values dropped."""
    return frame[column].replace([-np.inf, np.inf], np.nan).dropna()


def _type(column: str, numeric: list[str]) -> ColumnType:
    return ColumnType.Numerical if column in numeric else ColumnType.Categorical


def _samples(reference, current, numeric, categorical, sample_size, seed) -> tuple[pd.DataFrame, pd.DataFrame]:
    features = _features(numeric, categorical)
    _checked(reference, features, "reference")
    _checked(current, features, "current")
    return (_prepare(sample_rows(reference, sample_size, seed), numeric, categorical),
            _prepare(sample_rows(current, sample_size, seed), numeric, categorical))


# ---------------------------------------------------------------- Evidently's tests


def is_distance(method: str) -> bool:
    return method in DISTANCE_METHODS


def resolve_methods(
    reference: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    num_method: str | None = None,
    cat_method: str | None = None,
    sample_size: int = 5000,
    seed: int = 0,
) -> dict[str, str]:
    """{column: Evidently test name} as Evidently chooses it for the reference sample (or the
    forced num_method / cat_method). Columns all null in the reference are left out."""
    features = _features(numeric, categorical)
    _checked(reference, features, "reference")
    ref = _prepare(sample_rows(reference, sample_size, seed), numeric, categorical)
    methods = {}
    for column in features:
        values = _values(ref, column)
        if values.empty:
            continue
        forced = num_method if column in numeric else cat_method
        methods[column] = get_stattest(values, values, _type(column, numeric), forced).name
    return methods


def _stat_test(method: str, column_type: ColumnType):
    """Evidently's test by name. Evidently's own choice for a numeric column of <= 5 values
    at <= 1000 rows is chi-square or Z, registered for categorical columns only: looked up
    there (ValueDrift calls the same function object)."""
    empty = pd.Series(dtype=float)
    try:
        return get_stattest(empty, empty, column_type, method)
    except StatTestInvalidFeatureTypeError:
        return get_stattest(empty, empty, ColumnType.Categorical, method)


def _applicable(method: str, column_type: ColumnType) -> bool:
    try:
        get_stattest(pd.Series(dtype=float), pd.Series(dtype=float), column_type, method)
    except StatTestInvalidFeatureTypeError:
        return False
    return True


def _score(ref: pd.Series, cur: pd.Series, column_type: ColumnType, method: str, threshold: float | None):
    """(score, threshold used, drifted) by Evidently's test `method`."""
    with warnings.catch_warnings():  # scipy warns on degenerate samples; the score still stands
        warnings.simplefilter("ignore")
        result = _stat_test(method, column_type)(ref, cur, column_type, threshold)
    return float(result.drift_score), float(result.actual_threshold), bool(result.drifted)


def default_threshold(method: str, column_type: ColumnType) -> float:
    return float(_stat_test(method, column_type).default_threshold)


# ---------------------------------------------------------------- weights and thresholds


def feature_weights(importance: pd.DataFrame | None, columns: list[str]) -> tuple[pd.Series, str]:
    """(weight per column summing to 1, source). Weights are the columns' share of the
    model's total gain ('gain'); a column without importance weighs 0. Without usable
    importance (None, no gain column, zero total), every column weighs the same ('equal')."""
    columns = list(columns)
    equal = pd.Series(1.0 / len(columns), index=columns, name="weight")
    if importance is None or not {"feature", "gain"} <= set(importance.columns):
        return equal, "equal"
    gain = pd.to_numeric(importance.set_index("feature")["gain"], errors="coerce").clip(lower=0)
    gain = gain.groupby(level=0).sum().reindex(columns).fillna(0.0)
    total = float(gain.sum())
    if not total > 0:
        return equal, "equal"
    return (gain / total).rename("weight"), "gain"


def reference_months(reference: pd.DataFrame, month_column: str = MONTH_COLUMN) -> list[dt.date]:
    """The training months the reference sample holds ([] without `month_column`)."""
    if month_column not in reference.columns:
        return []
    return sorted({pd.Timestamp(m).date() for m in reference[month_column].dropna().unique()})


def window_weeks(months: list[dt.date], window_days: int = 30) -> list[dt.date]:
    """The Mondays whose scoring window [Monday, Monday + window_days) lies inside the
    training months: weeks the model learned, stationary for it by construction."""
    if not months:
        return []
    first, last = min(months), max(months)
    end = add_months(last, 1)
    monday = first + dt.timedelta(days=(7 - first.weekday()) % 7)
    weeks = []
    while monday + dt.timedelta(days=window_days) <= end:
        weeks.append(monday)
        monday += dt.timedelta(days=7)
    return weeks


def _noise(method: str, scores: list[float]) -> float:
    """The most drift-like of the scores: the largest distance, the smallest p-value."""
    seen = [s for s in scores if np.isfinite(s)]
    if not seen:
        return np.nan
    return max(seen) if is_distance(method) else min(seen)


def calibrate_thresholds(
    reference: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    methods: Mapping[str, str],
    factor: float = 1.5,
    sample_size: int = 5000,
    seed: int = 0,
    month_column: str = MONTH_COLUMN,
    stationary_weeks: Mapping[dt.date, pd.DataFrame] | None = None,
) -> pd.DataFrame | None:
    """Per-column thresholds from stationary data, or None when there is none (the reference
    has no `month_column` or a single month, and no stationary weeks: use Evidently's defaults).

    Stationary data: each training month scored against the other months, and each of
    `stationary_weeks` (scoring populations of weeks inside the training window) scored
    against the reference, with the column's method, both sides sampled to `sample_size`.
    Months catch month-to-month noise; weeks also catch what a Monday window differs from a
    calendar month in (days_to_expiry, days_since_last_txn), which no month split shows.
    For a distance the threshold is max(default, factor x the largest score); for a p-value
    test min(default, the smallest p-value / factor).
    Columns: column_name, method, default_threshold, month_noise, week_noise, noise, threshold,
    months, weeks."""
    if factor < 1:
        raise ValueError(f"calibration factor must be >= 1, got {factor}")
    months = reference_months(reference, month_column)
    weeks = dict(stationary_weeks or {})
    if len(months) < 2 and not weeks:
        return None
    month_scores: dict[str, list[float]] = {c: [] for c in methods}
    week_scores: dict[str, list[float]] = {c: [] for c in methods}

    def score_into(store, ref_frame, cur_frame, k):
        ref = _prepare(sample_rows(ref_frame, sample_size, seed + k), numeric, categorical)
        cur = _prepare(sample_rows(cur_frame, sample_size, seed + k), numeric, categorical)
        for column, method in methods.items():
            r, c = _values(ref, column), _values(cur, column)
            if not (r.empty or c.empty):
                store[column].append(_score(r, c, _type(column, numeric), method, None)[0])

    if len(months) >= 2:
        month_of = pd.to_datetime(reference[month_column]).dt.date
        for k, month in enumerate(months):
            score_into(month_scores, reference[month_of != month], reference[month_of == month], k)
    for k, frame in enumerate(weeks.values()):
        if len(frame):
            score_into(week_scores, reference, frame, len(months) + k)

    rows = []
    for column, method in methods.items():
        default = default_threshold(method, _type(column, numeric))
        by_month, by_week = _noise(method, month_scores[column]), _noise(method, week_scores[column])
        noise = _noise(method, [by_month, by_week])
        if not np.isfinite(noise):
            threshold = default
        elif is_distance(method):
            threshold = max(default, factor * noise)
        else:
            threshold = min(default, noise / factor)
        rows.append({"column_name": column, "method": method, "default_threshold": default,
                     "month_noise": by_month, "week_noise": by_week, "noise": noise, "threshold": float(threshold),
                     "months": len(months) if len(months) >= 2 else 0, "weeks": len(weeks)})
    return pd.DataFrame(rows, columns=CALIBRATION_FIELDS)


def threshold_map(calibration: pd.DataFrame | None) -> dict[str, float]:
    return {} if calibration is None else dict(zip(calibration["column_name"], calibration["threshold"]))


# ---------------------------------------------------------------- drift


def _sort_most_drifted(columns: pd.DataFrame) -> pd.DataFrame:
    """Drifted first, the heaviest first, then by strength of evidence relative to the
    column's own threshold, so p-value tests and distances compare."""
    score, threshold = columns["score"], columns["threshold"]
    distance = columns["method"].map(is_distance).astype(bool)
    strength = np.where(distance, score / threshold, threshold / score.clip(lower=1e-300))
    key = pd.Series(strength, index=columns.index).fillna(np.inf).where(columns["method"] != EMPTY_BOTH, -np.inf)
    drifted = columns["drifted"].to_numpy(bool)
    weight = np.where(drifted, columns["weight"].to_numpy(float), 0.0)
    order = np.lexsort((-key.to_numpy(), -weight, ~drifted))
    return columns.iloc[order].reset_index(drop=True)


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    sample_size: int = 5000,
    seed: int = 0,
    num_method: str | None = None,
    cat_method: str | None = None,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    weights: pd.Series | Mapping[str, float] | None = None,
) -> DriftResult:
    """Per-column drift of `current` against `reference` over the given columns.

    Both sides are sampled to `sample_size` rows with `seed`. `methods` fixes each column's
    Evidently test (default: `resolve_methods` with num_method / cat_method, e.g. "wasserstein",
    "psi"; None lets Evidently choose). `thresholds` overrides a column's threshold (default:
    the test's own). `weights` (default: equal) give drift_share = sum of drifted weights;
    column_share = drifted columns / columns either way."""
    features = _features(numeric, categorical)
    ref, cur = _samples(reference, current, numeric, categorical, sample_size, seed)
    if methods is None:
        methods = resolve_methods(ref, numeric, categorical, num_method, cat_method, sample_size, seed)
    thresholds = thresholds or {}
    weight = (pd.Series(1.0 / len(features), index=features) if weights is None
              else pd.Series(weights, dtype=float).reindex(features).fillna(0.0))

    rows = []
    for column in features:
        ref_values, cur_values = _values(ref, column), _values(cur, column)
        row = {"column_name": column, "weight": float(weight[column])}
        if ref_values.empty or cur_values.empty or column not in methods:
            # Evidently refuses empty columns; decide those here
            both = ref_values.empty and cur_values.empty
            rows.append({**row, "method": EMPTY_BOTH if both else EMPTY_ONE_SIDE, "score": np.nan,
                         "threshold": np.nan, "default_threshold": np.nan, "drifted": not both})
            continue
        method, column_type = methods[column], _type(column, numeric)
        score, used, drifted = _score(ref_values, cur_values, column_type, method, thresholds.get(column))
        rows.append({**row, "method": method, "score": score, "threshold": used,
                     "default_threshold": default_threshold(method, column_type), "drifted": drifted})

    columns = pd.DataFrame(rows, columns=COLUMN_FIELDS).astype(
        {"score": float, "threshold": float, "default_threshold": float, "drifted": bool, "weight": float})
    columns = _sort_most_drifted(columns)
    n_drifted = int(columns["drifted"].sum())
    return DriftResult(
        n_columns=len(features),
        n_drifted=n_drifted,
        drift_share=float(min(1.0, columns.loc[columns["drifted"], "weight"].sum())),
        column_share=n_drifted / len(features),
        columns=columns,
        reference_rows=len(ref),
        current_rows=len(cur),
    )


def render_wanted(mode: str, decision: str) -> bool:
    """'auto': render the HTML only for a week that asks for action; 'always' / 'never'."""
    if mode not in RENDER_MODES:
        raise ValueError(f"render_html must be one of {RENDER_MODES}, got {mode!r}")
    return mode == "always" or (mode == "auto" and decision != "none")


def render_drift_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    result: DriftResult,
    html_path: Path,
    sample_size: int = 5000,
    seed: int = 0,
):
    """Evidently's DataDriftPreset HTML over the samples `compute_drift` compared, with the
    same per-column methods and thresholds (its verdicts are the result's). Returns the
    snapshot, or None when no column could be tested."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    tested = result.columns[~result.columns["method"].isin([EMPTY_ONE_SIDE, EMPTY_BOTH])]
    if tested.empty:
        return None
    ref, cur = _samples(reference, current, numeric, categorical, sample_size, seed)
    num = [c for c in numeric if c in set(tested["column_name"])]
    cat = [c for c in categorical if c in set(tested["column_name"])]
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    # a method Evidently cannot look up by name for the column's type is left to its own choice
    methods = {c: m for c, m in zip(tested["column_name"], tested["method"]) if _applicable(m, _type(c, numeric))}
    preset = DataDriftPreset(
        columns=num + cat,
        per_column_method=methods,
        per_column_threshold=dict(zip(tested["column_name"], tested["threshold"].astype(float))),
    )
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(cur[num + cat], data_definition=definition),
        Dataset.from_pandas(ref[num + cat], data_definition=definition),
    )
    Path(html_path).parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    return snapshot


def value_drifts(snapshot) -> pd.DataFrame:
    """One row per ValueDrift metric of an Evidently snapshot: column_name, method, score,
    threshold and the verdict of its test (FAIL = drift detected)."""
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
    return pd.DataFrame(rows, columns=["column_name", "method", "score", "threshold", "drifted"])


def prediction_drift(
    reference_scores: pd.DataFrame | pd.Series,
    current_scores: pd.DataFrame | pd.Series,
    column: str = PREDICTION_COLUMN,
    sample_size: int = 5000,
    seed: int = 0,
    method: str | None = None,
) -> dict:
    """Drift of the model's output distribution, tested like a numeric feature (Evidently's
    choice of test, or `method`). Returns one drift row as a dict (COLUMN_FIELDS, weight 0).
    Reported beside, never counted in, the feature drift share."""
    ref, cur = (
        (s.to_frame(column) if isinstance(s, pd.Series) else s)[[column]].dropna()
        for s in (reference_scores, current_scores)
    )
    result = compute_drift(ref, cur, [column], [], sample_size=sample_size, seed=seed, num_method=method,
                           weights={column: 0.0})
    return result.columns.iloc[0].to_dict()


# ---------------------------------------------------------------- monitoring tables


def add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> list[str]:
    """Add to an existing `table` the columns of `frame` it lacks (tables written before a
    column existed), typed from the frame. Returns the added names."""
    if not table_exists(con, table):
        return []
    schema, _, name = ident(table).rpartition(".")
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [schema or "main", name]).fetchall()}
    missing = [c for c in frame.columns if c not in have]
    if missing:
        con.register("_shape", frame[missing].head(100))  # object columns are typed from their values
        try:
            types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM _shape)").fetchall())
        finally:
            con.unregister("_shape")
        for column in missing:
            con.execute(f"ALTER TABLE {ident(table)} ADD COLUMN {ident(column)} {types[column]}")
    return missing


def previous_week_row(
    con: duckdb.DuckDBPyConnection, week: dt.date, table: str = "monitoring.drift_reports"
) -> dict | None:
    """The drift_reports row of the week before `week` (None: not scored)."""
    if not table_exists(con, table):
        return None
    frame = con.execute(f"SELECT * FROM {ident(table)} WHERE week_start = ?", [week - dt.timedelta(days=7)]).df()
    return None if frame.empty else frame.iloc[0].to_dict()


def cached_thresholds(
    con: duckdb.DuckDBPyConnection, model_version: str, methods: Mapping[str, str], factor: float, sample_size: int
) -> pd.DataFrame | None:
    """The calibration stored for `model_version`, if it was made with the same methods,
    factor and sample size (else None: calibrate again)."""
    if not table_exists(con, THRESHOLDS_TABLE):
        return None
    stored = con.execute(f"SELECT * FROM {THRESHOLDS_TABLE} WHERE model_version = ?", [str(model_version)]).df()
    if stored.empty or dict(zip(stored["column_name"], stored["method"])) != dict(methods):
        return None
    if not (np.allclose(stored["factor"], factor) and (stored["sample_size"] == sample_size).all()):
        return None
    return stored.drop(columns=["model_version", "factor", "sample_size", "calibrated_at"]).reset_index(drop=True)


def store_thresholds(
    con: duckdb.DuckDBPyConnection, model_version: str, calibration: pd.DataFrame, factor: float, sample_size: int
) -> None:
    frame = calibration.assign(model_version=str(model_version), factor=float(factor), sample_size=int(sample_size),
                               calibrated_at=pd.Timestamp.now(tz="UTC").tz_localize(None))
    frame = frame[["model_version", *calibration.columns, "factor", "sample_size", "calibrated_at"]]
    replace_partition(con, THRESHOLDS_TABLE, frame, "model_version", str(model_version))
