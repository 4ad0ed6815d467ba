"""The serving log: what the model server was asked and what it answered, as immutable Parquet.

    <root>/date=YYYY-MM-DD/hour=HH/<UTC time>Z-<uuid>.parquet

One file per flush and UTC hour, written under a dot-prefixed temp name in the same directory,
fsynced, then renamed (os.replace, atomic on one filesystem): a reader, or a server killed
mid-write, only ever leaves whole files under a `.parquet` name. Temp files end in
`.<pid>.tmp`; readers skip them and a log opening removes those of dead processes.

A row is one scored row: `logged_at` (UTC), `request_id`, `row_in_request`, `model_version`,
`msno`, the FEATURE_COLUMNS of the model's feature spec, and the answer (churn_probability,
bucket, action, reason_1..3). Nothing else of a request is kept: headers never reach the model,
and any column outside the feature spec (a caller's api_key, token, free text) is dropped
before the row is built, so the log cannot record a secret a caller sends alongside.

Retention: day folders older than `retention_days` (CHURN_SERVING_LOG_RETENTION_DAYS, default
30) are deleted when a log opens and whenever a write moves the cut-off to a new day.
"""
from __future__ import annotations

import datetime as dt
import inspect
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn_assets.core.feature_spec import CATEGORICAL_COLUMNS, FEATURE_COLUMNS
from churn_assets.core.reasons import REASON_COLUMNS

RETENTION_ENV = "CHURN_SERVING_LOG_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30
ID_COLUMN = "msno"
RESPONSE_COLUMNS = ["churn_probability", "bucket", "action", *REASON_COLUMNS]
INPUT_COLUMNS = [ID_COLUMN, *FEATURE_COLUMNS]  # the only request fields ever logged

SCHEMA = pa.schema([
    pa.field("logged_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("request_id", pa.string()),
    pa.field("row_in_request", pa.int32()),
    pa.field("model_version", pa.string()),
    pa.field(ID_COLUMN, pa.string()),
    *[pa.field(c, pa.string() if c in CATEGORICAL_COLUMNS else pa.float64()) for c in FEATURE_COLUMNS],
    pa.field("churn_probability", pa.float64()),
    *[pa.field(c, pa.string()) for c in RESPONSE_COLUMNS[1:]],
])
LOG_COLUMNS: list[str] = SCHEMA.names
_TEXT_COLUMNS = [f.name for f in SCHEMA if pa.types.is_string(f.type)]
_NUMBER_COLUMNS = [f.name for f in SCHEMA if pa.types.is_floating(f.type)]
_TEMP = re.compile(r"^\..+\.parquet\.(?P<pid>\d+)\.tmp$")
_DAY_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")

_logger = logging.getLogger(__name__)


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def as_utc(moment) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken to be UTC already."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def retention_days_from_env() -> int:
    return int(os.environ.get(RETENTION_ENV) or DEFAULT_RETENTION_DAYS)


# ---------------------------------------------------------------- rows


def _text(values: pd.Series) -> pd.Series:
    return values.astype(str).astype(object).where(values.notna(), None)


def loggable_inputs(request) -> pd.DataFrame:
    """msno and the feature columns of a request (as the scoring server parsed it), copied
    before the model sees it; every other field is dropped here. Absent ones become null."""
    frame = request if isinstance(request, pd.DataFrame) else pd.DataFrame(request)
    return frame.reindex(columns=INPUT_COLUMNS).reset_index(drop=True).copy()


def log_rows(inputs: pd.DataFrame, response, model_version: str, at, request_id: str | None = None) -> pd.DataFrame:
    """The LOG_COLUMNS rows of one answered request: inputs (see `loggable_inputs`) beside the answer."""
    answer = (response if isinstance(response, pd.DataFrame) else pd.DataFrame(response)).reset_index(drop=True)
    if len(answer) != len(inputs):
        raise ValueError(f"{len(inputs)} request rows but {len(answer)} answers")
    rows = pd.concat([loggable_inputs(inputs), answer.reindex(columns=RESPONSE_COLUMNS)], axis=1)
    rows.insert(0, "model_version", str(model_version))
    rows.insert(0, "row_in_request", np.arange(len(rows), dtype="int32"))
    rows.insert(0, "request_id", request_id or uuid.uuid4().hex)
    rows.insert(0, "logged_at", as_utc(at).floor("us"))  # the file's resolution: no lossy cast on write
    for column in _NUMBER_COLUMNS:
        rows[column] = pd.to_numeric(rows[column], errors="coerce").astype("float64")
    for column in _TEXT_COLUMNS:
        rows[column] = _text(rows[column])
    return rows[LOG_COLUMNS]


# ---------------------------------------------------------------- files


def hour_dir(root: Path, moment) -> Path:
    stamp = as_utc(moment)
    return Path(root) / f"date={stamp:%Y-%m-%d}" / f"hour={stamp:%H}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(rows: pd.DataFrame, target: Path) -> Path:
    """Write `rows` to the temp name of `target` (same directory) and fsync it; returns the temp
    path. Until it is renamed, no reader sees it."""
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(pa.Table.from_pandas(rows[LOG_COLUMNS], schema=SCHEMA, preserve_index=False), temp,
                   compression="zstd")
    _fsync(temp)
    return temp


def write_log_file(rows: pd.DataFrame, root: Path) -> Path:
    """One immutable file for rows of one UTC hour (that of the first row): temp file + rename."""
    first = as_utc(rows["logged_at"].iloc[0])
    directory = hour_dir(root, first)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{first:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex}.parquet"
    temp = write_temp(rows, target)
    try:
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)  # only still there when the rename failed
    _fsync(directory)  # the rename itself survives a power cut
    return target


def log_files(root: Path, first_day: dt.date | None = None, last_day: dt.date | None = None) -> list[Path]:
    """The complete log files (never temp files) of the day folders in [first_day, last_day]."""
    files = []
    for day_dir in sorted(Path(root).glob("date=*")):
        day = _day_of(day_dir)
        if day is None or (first_day and day < first_day) or (last_day and day > last_day):
            continue
        files += [f for f in sorted(day_dir.glob("hour=*/*.parquet")) if not f.name.startswith(".")]
    return files


def read_log(root: Path, start=None, end=None) -> pd.DataFrame:
    """LOG_COLUMNS rows logged in [start, end) (UTC; None: unbounded), oldest first."""
    start, end = (None if t is None else as_utc(t) for t in (start, end))
    files = log_files(root, start.date() if start is not None else None, end.date() if end is not None else None)
    frames = [pq.ParquetFile(f).read().to_pandas() for f in files]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in LOG_COLUMNS})
    rows = pd.concat([f.reindex(columns=LOG_COLUMNS) for f in frames], ignore_index=True)
    keep = pd.Series(True, index=rows.index)
    if start is not None:
        keep &= rows["logged_at"] >= start
    if end is not None:
        keep &= rows["logged_at"] < end
    return rows[keep].sort_values(["logged_at", "request_id", "row_in_request"], kind="stable").reset_index(drop=True)


def _dtype(column: str) -> str:
    if column == "logged_at":
        return "datetime64[ns, UTC]"
    return "float64" if column in _NUMBER_COLUMNS else ("int32" if column == "row_in_request" else "object")


def _day_of(path: Path) -> dt.date | None:
    match = _DAY_DIR.match(path.name)
    try:
        return dt.date.fromisoformat(match.group(1)) if match else None
    except ValueError:
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another log of this process may be mid-write
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Delete temp files whose writer is gone (a crash between write and rename); a live
    writer's (another worker of the server) are left alone."""
    removed = []
    for temp in Path(root).glob("date=*/hour=*/.*.tmp"):
        match = _TEMP.match(temp.name)
        if match and not _alive(int(match.group("pid"))):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def retention_cutoff(now, retention_days: int) -> dt.date:
    """Day folders before this day hold only rows older than `retention_days`."""
    return (as_utc(now) - pd.Timedelta(days=retention_days)).date()


def prune(root: Path, retention_days: int, now) -> list[Path]:
    """Delete the day folders whose every row is older than `retention_days` days before `now`."""
    cutoff = retention_cutoff(now, retention_days)
    removed = []
    for day_dir in sorted(Path(root).glob("date=*")):
        day = _day_of(day_dir)
        if day is not None and day < cutoff:
            shutil.rmtree(day_dir, ignore_errors=True)
            removed.append(day_dir)
    return removed


# ---------------------------------------------------------------- the log


class ServingLog:
    """Appends answered requests to the log under `root`.

    Rows are buffered and written once `flush_rows` are waiting (and on flush/close). The
    server uses flush_rows=1: each request is written before its answer leaves, so an
    answered row is never lost to a crash and nothing sits in memory between requests (no
    timer thread needed); a request is already a batch, so files are not row-sized. A
    replay of many small requests can buffer more. Thread-safe: MLflow's server predicts in
    worker threads. `clock` gives "now" (logged_at and the retention cut-off): the wall
    clock when serving, the simulated day in a replay."""

    def __init__(self, root: Path, retention_days: int = DEFAULT_RETENTION_DAYS, flush_rows: int = 1,
                 clock: Callable[[], pd.Timestamp] = utc_now):
        if retention_days < 1:
            raise ValueError(f"retention_days must be >= 1, got {retention_days}")
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be >= 1, got {flush_rows}")
        self.root, self.retention_days, self.flush_rows, self.clock = Path(root), retention_days, flush_rows, clock
        self.root.mkdir(parents=True, exist_ok=True)
        self._buffer: list[pd.DataFrame] = []
        self._buffered = 0
        self._lock = threading.Lock()
        self._cutoff: dt.date | None = None
        remove_stale_temp_files(self.root)
        self._prune()

    def append(self, inputs: pd.DataFrame, response, model_version: str, at=None,
               request_id: str | None = None) -> int:
        """Log one answered request (its rows); returns the rows logged."""
        rows = log_rows(inputs, response, model_version, self.clock() if at is None else at, request_id)
        with self._lock:
            self._buffer.append(rows)
            self._buffered += len(rows)
            if self._buffered >= self.flush_rows:
                self._flush_locked()
        return len(rows)

    def flush(self) -> list[Path]:
        with self._lock:
            return self._flush_locked()

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ServingLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _flush_locked(self) -> list[Path]:
        if not self._buffer:
            return []
        rows = pd.concat(self._buffer, ignore_index=True)
        hours = rows["logged_at"].dt.floor("h")
        written = [write_log_file(group, self.root) for _, group in rows.groupby(hours, sort=True)]
        self._buffer, self._buffered = [], 0
        self._prune()
        return written

    def _prune(self) -> None:
        cutoff = retention_cutoff(self.clock(), self.retention_days)
        if cutoff != self._cutoff:  # folders are whole days: once per new cut-off day is enough
            prune(self.root, self.retention_days, self.clock())
            self._cutoff = cutoff


# ---------------------------------------------------------------- the server's path


def predict_and_log(predict: Callable[[object], object], request, log: ServingLog, model_version: str,
                    at=None) -> object:
    """Answer `request` with `predict`, then log it. The inputs are copied first (the model may
    coerce its frame). A failed prediction logs nothing (the caller gets the error); a failed
    log write is reported but does not fail an answer already computed: monitoring must not
    take scoring down."""
    try:
        inputs = loggable_inputs(request)
    except (ValueError, TypeError):  # not a table: nothing to log by column
        inputs = None
    response = predict(request)
    if inputs is not None:
        try:
            log.append(inputs, response, model_version, at=at)
        except Exception:  # noqa: BLE001 - reported, the answer still goes out
            _logger.exception("serving log: could not record a request of %d rows", len(inputs))
    return response


def _predictor(model) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """model.predict as the server calls it: a pyfunc takes the frame, a PythonModel (what
    ModelRegistry.load_production returns) also takes a context first."""
    if "context" in inspect.signature(model.predict).parameters:
        return lambda frame: model.predict(None, frame)
    return model.predict


def replay_requests(model, frame: pd.DataFrame, log_dir: Path, at, model_version: str, *, sample: int = 2000,
                    batch_rows: int = 50, span: dt.timedelta = dt.timedelta(hours=10), seed: int = 0,
                    retention_days: int | None = None) -> int:
    """Online traffic for a replay: up to `sample` rows of `frame` (msno + FEATURE_COLUMNS, e.g.
    a week's scored members) sent as requests of `batch_rows` through `predict_and_log`, the
    server's own path, spread over `span` from `at` (the simulated UTC time, which is also
    the log's clock for retention). Returns the rows logged."""
    rows = frame.sample(n=min(sample, len(frame)), random_state=seed) if len(frame) else frame
    batches = [rows.iloc[i:i + batch_rows] for i in range(0, len(rows), batch_rows)]
    start = as_utc(at)
    step = span / max(len(batches), 1)
    now = {"at": start}
    predict = _predictor(model)
    retention = retention_days_from_env() if retention_days is None else retention_days
    logged = 0
    with ServingLog(log_dir, retention, flush_rows=max(sample, 1), clock=lambda: now["at"]) as log:
        for k, batch in enumerate(batches):
            now["at"] = start + k * step
            predict_and_log(predict, batch.reset_index(drop=True), log, model_version)
            logged += len(batch)
    return logged


def week_requests(con, week: dt.date) -> pd.DataFrame:
    """msno + FEATURE_COLUMNS of the members scored for `week` (scoring.scoring_features)."""
    from churn_assets.monitoring.queries import SCORING_FEATURES_TABLE

    columns = ", ".join(INPUT_COLUMNS)
    return con.execute(f"SELECT {columns} FROM {SCORING_FEATURES_TABLE} WHERE week_start = ? ORDER BY msno",
                       [week]).df()


def replay_scored_week(paths, week: dt.date, *, hour: int = 8, sample: int = 2000, seed: int = 0) -> int:
    """For the demo: the production model answers a sample of `week`'s scored members as online
    requests on its Monday from `hour` UTC, logged under paths.serving_logs. Returns rows logged
    (0 when the week was not scored or there is no production model)."""
    import duckdb

    from churn_assets.model.versions import load_production

    if not Path(paths.duckdb_path).exists():
        return 0
    with duckdb.connect(str(paths.duckdb_path), read_only=True) as con:
        try:
            frame = week_requests(con, week)
        except duckdb.CatalogException:  # scoring never ran
            return 0
    if frame.empty:
        return 0
    try:
        model, version = load_production(paths.mlflow_tracking_uri)
    except LookupError:
        return 0
    at = dt.datetime.combine(week, dt.time(hour), tzinfo=dt.timezone.utc)
    return replay_requests(model, frame, paths.serving_logs, at, version, sample=sample,
                           seed=seed + week.toordinal())  # other members each week
