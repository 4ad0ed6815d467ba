"""Soak: a generated world of BENCH_SCALE x 200 k members over 12 months through
ingestion, labels, training features, one training and four weeks of scoring, with
per-stage seconds, peak RSS and the row accounting asserted at every stage.

The world is generated in a subprocess (its own peak RSS); the pipeline runs in this
process on a file-backed DuckDB, so "peak RSS" after a stage is the process high-water
mark so far. Baseline for the ingest stage: DuckDB's bare read_csv count of the same
files (parse only: no typing, checks, quarantine or transaction).

    .venv/bin/python -m benchmarks.bench_soak          # BENCH_SCALE=0.05 for a quick run
"""
from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

MEMBERS = 200_000
START, MONTHS = "2016-07", 12
SOURCES = ("members", "transactions", "user_logs", "churn_labels")


def _rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _months() -> list[dt.date]:
    first = dt.date.fromisoformat(START + "-01")
    from churn_assets.dates import add_months

    return [add_months(first, i) for i in range(MONTHS)]


class Stages:
    def __init__(self):
        self.rows: list[dict] = []

    def record(self, stage: str, seconds: float, rows: int, note: str = "", rss: float | None = None,
               baseline: float | None = None) -> None:
        self.rows.append({"stage": stage, "seconds": round(seconds, 2), "rows": rows,
                          "peak_rss_mb": round(rss if rss is not None else _rss_mb(), 0),
                          "baseline_s": None if baseline is None else round(baseline, 2),
                          "ratio": None if not baseline else round(seconds / baseline, 2), "note": note})


def generate(out: Path, members: int) -> dict:
    code = ("import json, sys; from churn_assets.synthetic.simulator import generate_world; "
            f"s = generate_world(sys.argv[1], members={members}, start='{START}', months={MONTHS}, seed=5, "
            "scenarios=[('none', '" + START + "')], progress=False); print(json.dumps(len(str(s))))")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, stdout=subprocess.DEVNULL)
    return {}


def ingest(con, landing: Path, stages: Stages) -> pd.DataFrame:
    from churn_assets.ingest.loading import find_source_file, load_drop_file

    accounting, started, files = [], time.perf_counter(), []
    for month in _months():
        for source in SOURCES:
            path = find_source_file(landing / f"{month:%Y-%m}", source)
            if path is None:
                continue
            r = load_drop_file(con, source, path, month)
            assert r.rows_in == r.rows_loaded + r.rows_quarantined, r
            assert r.rows_quarantined == sum(r.quarantine_reasons.values()), r
            accounting.append({"source": source, "month": month, "rows_in": r.rows_in, "loaded": r.rows_loaded,
                               "quarantined": r.rows_quarantined, "skipped": bool(r.skipped)})
            files.append(path)
    seconds = time.perf_counter() - started
    t = time.perf_counter()
    with duckdb.connect() as bare:
        parsed = sum(bare.execute("SELECT count(*) FROM read_csv(?, all_varchar = true)", [str(p)]).fetchone()[0]
                     for p in files)
    baseline = time.perf_counter() - t
    acc = pd.DataFrame(accounting)
    assert parsed == acc["rows_in"].sum(), (parsed, acc["rows_in"].sum())

    # the tables hold exactly what was loaded: members is the latest snapshot only
    for source, table in (("transactions", "raw.transactions"), ("user_logs", "raw.user_logs"),
                          ("churn_labels", "raw.churn_labels")):
        if (acc["source"] == source).any():
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == acc.loc[acc.source == source, "loaded"].sum()
    last_members = acc[acc.source == "members"].iloc[-1]
    assert con.execute("SELECT count(*) FROM raw.members").fetchone()[0] == last_members["loaded"]
    quarantined = dict(con.execute("SELECT source, count(*) FROM raw.quarantine GROUP BY 1").fetchall())
    for source in ("transactions", "user_logs", "churn_labels"):
        assert quarantined.get(source, 0) == acc.loc[acc.source == source, "quarantined"].sum()
    assert quarantined.get("members", 0) == last_members["quarantined"]
    stages.record("ingest (load_drop_file x all)", seconds, int(acc["rows_in"].sum()),
                  f"{len(acc)} files", baseline=baseline)
    return acc


def labels_and_features(con, stages: Stages) -> list[dt.date]:
    from churn_assets.features.labels import compute_labels
    from churn_assets.features.member_features import build_member_features
    from churn_assets.sql import replace_partition

    months = _months()
    targets = months[1:-1]  # a history month before, a finalising month after
    started, n = time.perf_counter(), 0
    for month in targets:
        frame = compute_labels(con, month)
        assert frame["msno"].is_unique and set(frame["is_churn"].unique()) <= {0, 1}
        assert replace_partition(con, "features.labels", frame, "target_month", month) == len(frame) > 0
        n += len(frame)
    published = con.execute("""
        SELECT count(*), coalesce(avg((l.is_churn = p.is_churn)::INT), 1) FROM raw.churn_labels p
        JOIN features.labels l USING (msno, target_month)""").fetchone()
    assert published[1] == 1.0, f"labels disagree with the published ones: {published}"
    stages.record("labels (official rule)", time.perf_counter() - started, n,
                  f"{len(targets)} months, {published[0]} matched published labels")

    started, n = time.perf_counter(), 0
    for month in targets:
        con.execute("CREATE OR REPLACE TEMP TABLE _candidates AS SELECT msno FROM features.labels WHERE target_month = ?",
                    [month])
        frame = build_member_features(con, month, members="_candidates")
        n_labels = con.execute("SELECT count(*) FROM _candidates").fetchone()[0]
        assert len(frame) == n_labels and frame["msno"].is_unique, (month, len(frame), n_labels)
        replace_partition(con, "features.member_features", frame, "as_of", month)
        n += len(frame)
    stages.record("training features (as-of)", time.perf_counter() - started, n, f"{len(targets)} months")
    return targets


def train(con, targets: list[dt.date], stages: Stages):
    from churn_assets.model.data import load_training_frame
    from churn_assets.model.training import train_churn_model

    train_months, valid_month = targets[-4:-1], targets[-1]
    started = time.perf_counter()
    frame = load_training_frame(con, [*train_months, valid_month])
    expected = con.execute("SELECT count(*) FROM features.labels WHERE target_month >= ?", [train_months[0]]).fetchone()[0]
    assert len(frame) == expected, (len(frame), expected)
    result = train_churn_model(frame, None, train_months, valid_month)
    assert np.isfinite(list(result.metrics.values())).all() and len(result.validation_predictions) == int(
        (frame["as_of"] == valid_month).sum())
    stages.record("training (LightGBM, 3 months)", time.perf_counter() - started, len(frame),
                  f"valid AUC {result.metrics['auc']:.3f} vs baseline {result.baseline_metrics['auc']:.3f}")
    return result.model, valid_month


def score(con, model, month: dt.date, stages: Stages) -> None:
    from churn_assets.scoring.queries import build_scoring_features
    from churn_assets.scoring.scores import score_members
    from churn_assets.sql import replace_partition

    first = month + dt.timedelta(days=(7 - month.weekday()) % 7)
    weeks = [first + dt.timedelta(weeks=i) for i in range(4)]
    started, n = time.perf_counter(), 0
    for week in weeks:
        features = build_scoring_features(con, week)
        expiring = con.execute("SELECT count(*) FROM scoring_population").fetchone()[0]
        assert len(features) == expiring > 0 and features["msno"].is_unique
        scores = score_members(features, model, "soak", week)
        assert len(scores) == len(features) and scores["bucket"].isin(["A", "B", "C"]).all()
        assert scores["churn_probability"].between(0, 1).all()
        replace_partition(con, "scoring.churn_scores", scores.drop(columns=["scored_at"], errors="ignore"),
                          "week_start", week)
        n += len(scores)
    assert con.execute("SELECT count(*) FROM scoring.churn_scores").fetchone()[0] == n
    stages.record("weekly scoring (4 weeks)", time.perf_counter() - started, n, f"weeks from {weeks[0]}")


def main() -> None:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    members = max(1000, int(MEMBERS * scale))
    stages = Stages()
    with tempfile.TemporaryDirectory(prefix="bench_soak_") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        generate(root / "world", members)
        stages.record(f"generate world ({members} members)", time.perf_counter() - started,
                      sum(1 for _ in (root / "world" / "landing").rglob("*.csv")), "csv files (subprocess)",
                      rss=_rss_mb(resource.RUSAGE_CHILDREN))
        os.environ.setdefault("CHURN_DATA_DIR", str(root))  # replace_partition publishes beside it
        with duckdb.connect(str(root / "soak.duckdb")) as con:
            from churn_assets.ingest.loading import ensure_raw_schema

            ensure_raw_schema(con)
            acc = ingest(con, root / "world" / "landing", stages)
            targets = labels_and_features(con, stages)
            model, valid_month = train(con, targets, stages)
            from churn_assets.dates import add_months

            score(con, model, add_months(valid_month, 1), stages)
        db_mb = (root / "soak.duckdb").stat().st_size / 1e6

    print(f"\nbench_soak: BENCH_SCALE={scale}, {members} members x {MONTHS} months, warehouse {db_mb:.0f} MB\n")
    print(pd.DataFrame(stages.rows).to_string(index=False))
    per_source = acc.groupby("source")[["rows_in", "loaded", "quarantined"]].sum()
    per_source["in = loaded + quarantined"] = per_source["rows_in"] == per_source["loaded"] + per_source["quarantined"]
    print("\nrows per source (all months):\n" + per_source.to_string())
    print(json.dumps({"total_seconds": round(sum(r["seconds"] for r in stages.rows), 1),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in stages.rows)}))


if __name__ == "__main__":
    main()
