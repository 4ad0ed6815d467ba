"""`generate_world`: run the simulator and write monthly landing drops plus the oracle.

Layout written under `out_dir`:
  landing/YYYY-MM/members_profile.csv      current members file (registered by month end)
  landing/YYYY-MM/transactions_logs.csv    transactions dated in the month
  landing/YYYY-MM/userlogs.csv             daily listening rows of the month
  landing/YYYY-MM/churn_logs.csv           labels of target month M (see `label_targets`)
  oracle/renewals.parquet                  every labelled candidate with the true probability

Labels come from the official rule (`features.labels.compute_labels`) applied to the
generated transactions; the oracle joins each candidate to the simulator decision
behind it, so `true_churn_probability` is the probability the simulator drew from.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from churn_assets.features.labels import compute_labels
from churn_assets.synthetic.catalog import CHANNELS
from churn_assets.synthetic.listening import month_logs
from churn_assets.synthetic.world import History, simulate

SCENARIOS = ("none", "channel_shift", "engagement_drop", "price_rise")

TX_COLUMNS = ("payment_method_id", "payment_plan_days", "plan_list_price", "actual_amount_paid",
              "is_auto_renew", "transaction_date", "membership_expire_date", "is_cancel")
ORACLE_COLUMNS = ("msno", "target_month", "last_expire", "true_churn_probability", "is_churn")
WORKERS = max(2, min(4, os.cpu_count() or 1))   # numpy and pyarrow release the GIL in the heavy parts
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=1 << 16, quoting_style="none")

_ORACLE_SQL = """
-- the decision behind a candidate: its period's opening transaction (expiring at last_expire) or
-- its cancellation (expiring at last_expire) is the latest such row in the history window
SELECT l.msno, CAST(l.target_month AS DATE) AS target_month, CAST(l.last_expire AS DATE) AS last_expire,
       d.p AS true_churn_probability, l.is_churn, d.churn AS decided_churn
FROM labels l
LEFT JOIN decisions d
  ON d.msno = l.msno
 AND ((d.expire = l.last_expire AND d.txn_day >= l.target_month - INTERVAL 1 MONTH AND d.txn_day < l.target_month)
   OR (d.expire_eff = l.last_expire AND d.cancel_day >= l.target_month - INTERVAL 1 MONTH
       AND d.cancel_day < l.target_month))
QUALIFY row_number() OVER (
    PARTITION BY l.msno, l.target_month
    ORDER BY CASE WHEN d.expire_eff = l.last_expire AND d.cancel_day < l.target_month
                  THEN d.cancel_day ELSE d.txn_day END DESC) = 1
ORDER BY l.target_month, l.msno
"""


def parse_scenarios(scenarios: list[tuple[str, str]] | None) -> dict[str, int]:
    """[(name, 'YYYY-MM')] -> {name: first day number of that month}; 'none' is dropped."""
    out: dict[str, int] = {}
    for name, month in scenarios or []:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose from {SCENARIOS}")
        if name != "none":
            out[name] = int(np.datetime64(month, "M").astype("datetime64[D]").astype(np.int64))
    return out


def scenario_arg(text: str) -> tuple[str, str]:
    """'NAME@YYYY-MM' (the command-line form) -> (name, 'YYYY-MM'), validated."""
    name, sep, month = text.partition("@")
    if not sep or name not in SCENARIOS or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise ValueError(f"expected NAME@YYYY-MM with NAME in {SCENARIOS}, got {text!r}")
    return name, month


def msno_array(rng: np.random.Generator, n: int) -> pa.StringArray:
    """KKBox-like ids: base64 of 32 random bytes (44 chars ending in '='), built in one pass."""
    raw = np.frombuffer(rng.bytes(33 * n), dtype=np.uint8).reshape(n, 33).copy()
    raw[:, 32] = 0                                   # 33-byte blocks encode to exactly 44 chars
    chars = np.frombuffer(base64.b64encode(raw.tobytes()), dtype=np.uint8).reshape(n, 44).copy()
    chars[:, 43] = ord("=")                          # the padding a 32-byte id ends with
    offsets = np.arange(n + 1, dtype=np.int32) * 44
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


class _Calendar:
    """Day number -> YYYYMMDD integer by table look-up."""

    def __init__(self, lo: int, hi: int):
        d = np.arange(lo, hi + 1).astype("datetime64[D]")
        m = d.astype("datetime64[M]")
        self.lo = lo
        self.ymd = ((m.astype("datetime64[Y]").astype(np.int64) + 1970) * 10000
                    + (m.astype(np.int64) % 12 + 1) * 100 + (d - m).astype(np.int64) + 1)

    def __call__(self, days: np.ndarray) -> np.ndarray:
        return self.ymd[days - self.lo]


def _date32(days: np.ndarray) -> pa.Array:
    return pa.array(days.astype(np.int32)).view(pa.date32())


def _write_csv(table: pa.Table, path: Path) -> None:
    """Plain CSV like the public files: unquoted header (pyarrow would quote it), empty nulls."""
    with pa.OSFile(str(path), "wb") as f:
        f.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, f, write_options=_CSV_OPTIONS)


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by mid-ranks (ties share their average rank)."""
    if y.min() == y.max():
        return float("nan")
    order = np.argsort(p, kind="stable")
    ps = p[order]
    ranks = np.empty(len(p))
    first = np.r_[0, np.nonzero(np.diff(ps))[0] + 1]
    last = np.r_[first[1:], len(p)]
    ranks[order] = np.repeat((first + last + 1) / 2.0, last - first)
    n1 = y.sum()
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def label_targets(month_keys: np.ndarray) -> list[dt.date]:
    """Target months M whose labels are final inside the data: M-1 (history) exists and the data
    reaches 29 days past the end of M (the latest non-churn renewal; one day into March for a
    January target, so the last month must be more than just M+1 when M+1 is February)."""
    days = month_keys.astype("datetime64[D]")
    last_day = days[-1] - 1
    return [dt.date.fromisoformat(str(month_keys[k]) + "-01")
            for k in range(1, len(month_keys) - 1) if days[k + 1] - 1 + 29 <= last_day]


def _ids(msno: pa.StringArray, mem: np.ndarray) -> pa.DictionaryArray:
    """msno column as indices into the id dictionary (no string copies; CSV output is the same)."""
    return pa.DictionaryArray.from_arrays(pa.array(mem.astype(np.int32)), msno)


def _month_logs_file(rng: np.random.Generator, hist: History, msno: pa.StringArray, ymd: _Calendar,
                     lo: int, hi: int, drop_day: int | None, path: Path) -> int:
    """Draw the listening rows dated in [lo, hi) and write them; returns the row count."""
    logs = month_logs(rng, hist, lo, hi, drop_day)
    _write_csv(pa.table({"msno": _ids(msno, logs.pop("mem")), "date": ymd(logs.pop("date")), **logs}), path)
    return len(logs["total_secs"])


def _members_table(hist: History, msno: pa.StringArray, ymd: _Calendar) -> pa.Table:
    m = hist.members
    gender = pa.DictionaryArray.from_arrays(pa.array(np.maximum(m.gender - 1, 0), mask=m.gender == 0),
                                            pa.array(["male", "female"]))
    return pa.table({"msno": msno, "city": m.city, "bd": m.bd, "gender": gender,
                     "registered_via": CHANNELS[m.channel], "registration_init_time": ymd(m.reg_day)})


def _label(con: duckdb.DuckDBPyConnection, tx: pa.Table, hist: History, msno: pa.StringArray,
           targets: list[dt.date]) -> tuple[list[pd.DataFrame], pa.Table]:
    """Official labels per target month and the oracle: each candidate joined to the simulator
    decision behind it. `tx` is sorted by transaction_date; the labeller of month M sees the
    rows dated from M-1 to 29 days after M (zero-copy slice): all that can change is_churn."""
    dates = tx["transaction_date"].to_numpy()
    parts = []
    for target in targets:
        lo = np.datetime64(target, "M")
        a, b = np.searchsorted(dates, [(lo - 1).astype("datetime64[D]"), (lo + 1).astype("datetime64[D]") + 29])
        con.register("synthetic_transactions", tx.slice(a, b - a))
        parts.append(compute_labels(con, target, "synthetic_transactions"))
    dec = hist.decisions
    con.register("decisions", pa.table({
        "msno": msno.take(pa.array(dec["mem"])), "txn_day": _date32(dec["txn_day"]),
        "cancel_day": pa.array(dec["cancel_day"].astype(np.int32), mask=dec["cancel_day"] < 0).view(pa.date32()),
        "expire": _date32(dec["expire"]),
        "expire_eff": _date32(dec["expire_eff"]), "p": dec["p"], "churn": dec["churn"].astype(np.int64)}))
    con.register("labels", pd.concat(parts, ignore_index=True))
    return parts, con.sql(_ORACLE_SQL).to_arrow_table()


def _summary(oracle: pa.Table, targets: list[dt.date]) -> dict:
    o = {c: oracle[c].to_numpy(zero_copy_only=False) for c in
         ("target_month", "true_churn_probability", "is_churn", "decided_churn")}
    p = o["true_churn_probability"].astype(float)
    matched = ~np.isnan(p)
    y = o["is_churn"].astype(np.int64)
    churn_rate, auc = {}, {}
    for target in targets:
        sel = (o["target_month"] == np.datetime64(target)) & matched
        churn_rate[target.isoformat()[:7]] = float(y[sel].mean()) if sel.any() else float("nan")
        auc[target.isoformat()[:7]] = _auc(p[sel], y[sel])
    return {"churn_rate": churn_rate, "oracle_auc": auc,
            "labelled_candidates": len(matched), "unmatched_candidates": int((~matched).sum()),
            "decision_rule_disagreements": int((o["decided_churn"][matched] != y[matched]).sum())}


def generate_world(out_dir: str | Path, members: int = 20_000, start: str = "2016-07", months: int = 10,
                   seed: int = 7, scenarios: Sequence[tuple[str, str]] | None = (("channel_shift", "2017-02"),),
                   progress: bool = True) -> dict:
    """Simulate `members` initial subscribers (plus monthly sign-ups) over `months` months from
    `start` and write the landing drops and the oracle. Same seed => byte-identical files.

    Returns a summary: rows per file and month, churn rate and oracle AUC per labelled month,
    and how often the simulator's decision disagrees with the official rule (should be 0).
    Months of listening logs are drawn and written by a thread pool while the main thread
    writes the other files and labels.
    """
    t_begin = time.perf_counter()
    out = Path(out_dir)
    scen = parse_scenarios(list(scenarios or []))
    month_keys = np.datetime64(start, "M") + np.arange(months + 1)
    month_days = month_keys.astype("datetime64[D]").astype(np.int64)
    names = [str(k) for k in month_keys[:-1]]
    first_day, last_day = int(month_days[0]), int(month_days[-1]) - 1
    targets = label_targets(month_keys)
    streams = np.random.SeedSequence(seed).spawn(4 + months)
    bar = tqdm(total=3 + months, desc="generate world", unit="step", disable=not progress)

    hist = simulate(np.random.default_rng(streams[0]), np.random.default_rng(streams[1]), members, month_days, scen)
    n_wave = int(hist.members.wave.sum())
    msno = pa.concat_arrays([msno_array(np.random.default_rng(streams[2]), len(hist.members) - n_wave),
                             msno_array(np.random.default_rng(streams[3]), n_wave)])
    ymd = _Calendar(int(min(hist.members.reg_day.min(), hist.tx["transaction_date"].min(), first_day)) - 1,
                    int(max(hist.members.reg_day.max(), hist.tx["membership_expire_date"].max())) + 1)
    tx = hist.tx
    inside = (tx["transaction_date"] >= first_day) & (tx["transaction_date"] <= last_day)
    order = np.nonzero(inside)[0][np.lexsort((tx["mem"][inside], tx["transaction_date"][inside]))]
    tx = {k: v[order] for k, v in tx.items()}
    for name in names:
        (out / "landing" / name).mkdir(parents=True, exist_ok=True)
    (out / "oracle").mkdir(parents=True, exist_ok=True)
    bar.update(1)

    rows: dict[str, dict[str, int]] = {name: {} for name in names}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        # listening logs first (the bulk): one job per month draws from the month's own stream
        # and writes its file, so the output does not depend on thread scheduling
        drop = scen.get("engagement_drop")
        log_jobs = [pool.submit(_month_logs_file, np.random.default_rng(streams[4 + k]), hist, msno, ymd,
                                int(month_days[k]), int(month_days[k + 1]), drop,
                                out / "landing" / name / "userlogs.csv")
                    for k, name in enumerate(names)]
        jobs = []

        def write(table: pa.Table, name: str, file: str) -> None:
            rows[name][file.removesuffix(".csv")] = table.num_rows
            jobs.append(pool.submit(_write_csv, table, out / "landing" / name / file))

        members_all = _members_table(hist, msno, ymd)
        for k, name in enumerate(names):
            snap = np.nonzero(hist.members.has_row & (hist.members.join_day < month_days[k + 1]))[0]
            write(members_all.take(pa.array(snap)), name, "members_profile.csv")
            a, b = np.searchsorted(tx["transaction_date"], month_days[k:k + 2])
            write(pa.table({"msno": _ids(msno, tx["mem"][a:b]),
                            **{c: ymd(tx[c][a:b]) if c.endswith("date") else tx[c][a:b] for c in TX_COLUMNS}}),
                  name, "transactions_logs.csv")
        bar.update(1)

        # labels by the official rule on exactly the transactions written above
        with duckdb.connect() as con:
            typed = pa.table({"msno": msno.take(pa.array(tx["mem"])),
                              **{c: _date32(tx[c]) if c.endswith("date") else tx[c] for c in TX_COLUMNS}})
            parts, oracle = _label(con, typed, hist, msno, targets)
        for target, lab in zip(targets, parts):
            churn = pa.table({"msno": pa.array(lab["msno"], pa.string()), "is_churn": lab["is_churn"].to_numpy(np.int64)})
            write(churn, target.isoformat()[:7], "churn_logs.csv")
        jobs.append(pool.submit(pq.write_table, oracle.select(list(ORACLE_COLUMNS)),
                                out / "oracle" / "renewals.parquet"))
        bar.update(1)

        for name, job in zip(names, log_jobs):
            rows[name]["userlogs"] = job.result()
            bar.update(1)
        for job in jobs:
            job.result()                                  # re-raise any write error
    bar.close()

    totals = {f: sum(r.get(f, 0) for r in rows.values())
              for f in ("members_profile", "transactions_logs", "userlogs", "churn_logs")}
    return {
        "out_dir": str(out), "seed": seed, "members": len(hist.members), "months": names,
        "scenarios": {n: str(np.datetime64(d, "D").astype("datetime64[M]")) for n, d in scen.items()},
        "rows": totals, "rows_per_month": rows, **_summary(oracle, targets),
        "seconds": round(time.perf_counter() - t_begin, 3),
    }
