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

from churn_assets.features.labels import compute_labels, final_on
from churn_assets.synthetic.catalog import CHANNELS
from churn_assets.synthetic.effects import (DEFAULT_EFFECTS, KIND_NAMES, Effects, TreatmentBook, action_kinds,
                                            percentages)
from churn_assets.synthetic.listening import month_logs
from churn_assets.synthetic.world import COUNTERFACTUALS, History, member_blocks, simulate

SCENARIOS = ("none", "channel_shift", "engagement_drop", "price_rise")

TX_COLUMNS = ("payment_method_id", "payment_plan_days", "plan_list_price", "actual_amount_paid",
              "is_auto_renew", "transaction_date", "membership_expire_date", "is_cancel")
# true_churn_probability is the probability the decision was drawn from (p_treated); p_untreated
# is the member's probability without the action it received (the two are equal when none acted)
# p_call, p_discount_10, ...: the probability had the member got that action in time (the
# counterfactuals an offer policy is judged against)
ORACLE_COLUMNS = ("msno", "target_month", "last_expire", "true_churn_probability", "is_churn",
                  "action", "discount_pct", "p_untreated", "p_treated",
                  *(f"p_{name}" for name in COUNTERFACTUALS))
# what the world needs of marketing.treatments: who, for which expiry, from which Monday, what
TREATMENT_KEYS = ("msno", "membership_expire_date", "week_start", "action", "discount_pct")
WORKERS = max(2, min(4, os.cpu_count() or 1))   # numpy and pyarrow release the GIL in the heavy parts
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=1 << 16, quoting_style="none")

_ORACLE_SQL = """
-- the decision behind a candidate: its period's opening transaction (expiring at last_expire) or
-- its cancellation (expiring at last_expire) is the latest such row in the history window
SELECT l.msno, CAST(l.target_month AS DATE) AS target_month, CAST(l.last_expire AS DATE) AS last_expire,
       d.p AS true_churn_probability, l.is_churn, d.churn AS decided_churn,
       d.action, d.discount_pct, d.p_untreated, d.p AS p_treated, {counterfactuals}
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
        "expire_eff": _date32(dec["expire_eff"]), "p": dec["p"], "churn": dec["churn"].astype(np.int64),
        "action": pa.array(np.asarray(KIND_NAMES, dtype=object)[dec["action"]]),
        "discount_pct": dec["discount_pct"].astype(np.int32), "p_untreated": dec["p_untreated"],
        **{f"p_{name}": dec[f"p_{name}"] for name in COUNTERFACTUALS}}))
    con.register("labels", pd.concat(parts, ignore_index=True))
    what_if = ", ".join(f"d.p_{name}" for name in COUNTERFACTUALS)
    return parts, con.sql(_ORACLE_SQL.format(counterfactuals=what_if)).to_arrow_table()


_NO_TREATMENTS = pd.DataFrame({"msno": pd.Series(dtype=str), "membership_expire_date": pd.Series(dtype="datetime64[ns]"),
                               "week_start": pd.Series(dtype="datetime64[ns]"), "action": pd.Series(dtype=str),
                               "discount_pct": pd.Series(dtype="int64")})


def _day_number(day: dt.date) -> int:
    return int(np.datetime64(day, "D").astype(np.int64))


def _days(dates: pd.Series) -> np.ndarray:
    return pd.to_datetime(dates).to_numpy().astype("datetime64[D]").astype(np.int64)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two treatment frames hold the same rows in any order (vectorised: the replay
    checks the whole history on every Monday)."""
    def canon(f: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame({"msno": f["msno"].astype(str).to_numpy(), "expire": _days(f["membership_expire_date"]),
                              "week": _days(f["week_start"]), "action": f["action"].astype(str).to_numpy(),
                              "pct": percentages(f["discount_pct"])})
        return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)
    return len(a) == len(b) and canon(a).equals(canon(b))


def _treatment_summary(oracle: pa.Table | None, unmatched: int) -> dict:
    """Labelled candidates per action and how many treatments found no decision."""
    if oracle is None:
        return {"by_action": {}, "unmatched_treatments": unmatched}
    actions = pd.Series(oracle["action"].to_numpy(zero_copy_only=False)).value_counts()
    return {"by_action": {str(k): int(v) for k, v in actions.items()}, "unmatched_treatments": unmatched}


def _summary(oracle: pa.Table | None, targets: list[dt.date]) -> dict:
    if oracle is None:
        return {"churn_rate": {}, "oracle_auc": {}, "labelled_candidates": 0, "unmatched_candidates": 0,
                "decision_rule_disagreements": 0}
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


class SyntheticWorld:
    """A world written month by month as time passes, answering the treatments it is given.

    `advance(day, treatments)` re-simulates with every treatment so far and (re)writes each
    month that has days before `day` and was not complete at the previous call; labels and
    oracle rows are written for the target months final by `day`. Treatments act only on
    decisions that show on or after their Monday, so nothing dated before the previous
    `day` changes: transactions are per member and come out the same, and the listening
    rows of a month already part-written keep their earlier draws before that day (the
    month's draws after it may differ, as the members covered then may). Same seed, same
    calls with the same treatments => byte-identical files; without treatments (or with
    NO_EFFECTS) the files are those of one `generate_world` call.
    """

    def __init__(self, out_dir: str | Path, members: int = 20_000, start: str = "2016-07", months: int = 10,
                 seed: int = 7, scenarios: Sequence[tuple[str, str]] | None = (("channel_shift", "2017-02"),),
                 effects: Effects = DEFAULT_EFFECTS):
        self.out, self.n_initial, self.seed, self.effects = Path(out_dir), members, seed, effects
        self.scen = parse_scenarios(list(scenarios or []))
        month_keys = np.datetime64(start, "M") + np.arange(months + 1)
        self.month_days = month_keys.astype("datetime64[D]").astype(np.int64)
        self.names = [str(k) for k in month_keys[:-1]]
        self.targets = label_targets(month_keys)
        self.streams = np.random.SeedSequence(seed).spawn(4 + months)
        n_regular, n_wave = member_blocks(members, self.month_days, self.scen)
        self.msno = pa.concat_arrays([msno_array(np.random.default_rng(self.streams[2]), n_regular),
                                      msno_array(np.random.default_rng(self.streams[3]), n_wave)])
        self._mem_of = pd.Index(self.msno.to_numpy(zero_copy_only=False))
        self.end = dt.date(1970, 1, 1) + dt.timedelta(days=int(self.month_days[-1]))   # first day after the data
        self.through: dt.date | None = None
        self.treatments = _NO_TREATMENTS
        self.book = TreatmentBook.empty()
        self.unmatched_treatments = 0
        self.rows: dict[str, dict[str, int]] = {name: {} for name in self.names}
        self._open_logs: dict[int, dict[str, np.ndarray]] = {}   # part-written months' listening rows
        self._oracle_parts: list[pa.Table] = []
        self._labelled: set[dt.date] = set()
        self.hist: History | None = None

    # --- treatments ---------------------------------------------------------------------------

    def _book(self, treatments: pd.DataFrame | None) -> None:
        """Take the treatments so far; those dated before the previous day must not change."""
        frame = _NO_TREATMENTS if treatments is None or treatments.empty else treatments[list(TREATMENT_KEYS)]
        frame = frame.assign(week_start=pd.to_datetime(frame["week_start"]),
                             membership_expire_date=pd.to_datetime(frame["membership_expire_date"]))
        if self.through is not None:
            cut = pd.Timestamp(self.through)
            if not _same_rows(frame[frame["week_start"] < cut], self.treatments[self.treatments["week_start"] < cut]):
                raise ValueError(f"treatments dated before {self.through} changed: the world cannot rewrite "
                                 "what has already happened")
        self.treatments = frame
        mem = self._mem_of.get_indexer(frame["msno"].astype(str))
        known = mem >= 0
        self.unmatched_treatments = int((~known).sum())
        rows = frame[known]
        self.book = TreatmentBook.of(
            mem[known], _days(rows["membership_expire_date"]),
            action_kinds(rows["action"], rows["discount_pct"]), percentages(rows["discount_pct"]),
            _days(rows["week_start"]))

    # --- writing ------------------------------------------------------------------------------

    def advance(self, day: dt.date | None = None, treatments: pd.DataFrame | None = None) -> list[str]:
        """Write the world as it stands on `day` (default: its end) given the treatments so far;
        returns the month folders written."""
        day = min(day or self.end, self.end)
        if self.through is not None and day < self.through:
            raise ValueError(f"the world is already written through {self.through}; cannot go back to {day}")
        self._book(treatments)
        hist = simulate(np.random.default_rng(self.streams[0]), np.random.default_rng(self.streams[1]),
                        self.n_initial, self.month_days, self.scen, self.book, self.effects)
        self.hist = hist
        previous = self.through
        day_number = _day_number(day)
        first_day, last_day = int(self.month_days[0]), int(self.month_days[-1]) - 1
        ymd = _Calendar(int(min(hist.members.reg_day.min(), hist.tx["transaction_date"].min(), first_day)) - 1,
                        int(max(hist.members.reg_day.max(), hist.tx["membership_expire_date"].max())) + 1)
        tx = hist.tx
        inside = (tx["transaction_date"] >= first_day) & (tx["transaction_date"] <= last_day)
        order = np.nonzero(inside)[0][np.lexsort((tx["mem"][inside], tx["transaction_date"][inside]))]
        tx = {k: v[order] for k, v in tx.items()}
        frozen = -1 if previous is None else _day_number(previous)   # rows before it never change
        months = [k for k in range(len(self.names))
                  if self.month_days[k] < day_number and self.month_days[k + 1] > frozen]
        for k in months:
            (self.out / "landing" / self.names[k]).mkdir(parents=True, exist_ok=True)
        (self.out / "oracle").mkdir(parents=True, exist_ok=True)
        targets = [t for t in self.targets if final_on(t) <= day and t not in self._labelled]

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            # listening logs first (the bulk): one job per month draws from the month's own stream
            # and writes its file, so the output does not depend on thread scheduling
            log_jobs = [pool.submit(self._month_logs, k, hist, ymd, frozen, day_number) for k in months]
            jobs = []

            def write(table: pa.Table, name: str, file: str) -> None:
                self.rows[name][file.removesuffix(".csv")] = table.num_rows
                jobs.append(pool.submit(_write_csv, table, self.out / "landing" / name / file))

            members_all = _members_table(hist, self.msno, ymd)
            for k in months:
                name = self.names[k]
                snap = np.nonzero(hist.members.has_row & (hist.members.join_day < self.month_days[k + 1]))[0]
                write(members_all.take(pa.array(snap)), name, "members_profile.csv")
                a, b = np.searchsorted(tx["transaction_date"], self.month_days[k:k + 2])
                write(pa.table({"msno": _ids(self.msno, tx["mem"][a:b]),
                                **{c: ymd(tx[c][a:b]) if c.endswith("date") else tx[c][a:b] for c in TX_COLUMNS}}),
                      name, "transactions_logs.csv")

            # labels by the official rule on exactly the transactions written above
            if targets:
                with duckdb.connect() as con:
                    typed = pa.table({"msno": self.msno.take(pa.array(tx["mem"])),
                                      **{c: _date32(tx[c]) if c.endswith("date") else tx[c] for c in TX_COLUMNS}})
                    parts, oracle = _label(con, typed, hist, self.msno, targets)
                for target, lab in zip(targets, parts):
                    churn = pa.table({"msno": pa.array(lab["msno"], pa.string()),
                                      "is_churn": lab["is_churn"].to_numpy(np.int64)})
                    write(churn, target.isoformat()[:7], "churn_logs.csv")
                self._oracle_parts.append(oracle)
                self._labelled.update(targets)
                jobs.append(pool.submit(pq.write_table, self.oracle().select(list(ORACLE_COLUMNS)),
                                        self.out / "oracle" / "renewals.parquet"))

            for k, job in zip(months, log_jobs):
                self.rows[self.names[k]]["userlogs"] = job.result()
            for job in jobs:
                job.result()                                  # re-raise any write error
        self.through = day
        return [self.names[k] for k in months]

    def _month_logs(self, k: int, hist: History, ymd: _Calendar, frozen: int, day_number: int) -> int:
        """Draw month k's listening rows from its own stream and write them; rows dated before
        `frozen` come from the month's earlier draw when it was already part-written."""
        lo, hi = int(self.month_days[k]), int(self.month_days[k + 1])
        logs = month_logs(np.random.default_rng(self.streams[4 + k]), hist, lo, hi, self.scen.get("engagement_drop"))
        earlier = self._open_logs.pop(k, None)
        if earlier is not None:
            old, new = earlier["date"] < frozen, logs["date"] >= frozen
            logs = {c: np.concatenate([earlier[c][old], logs[c][new]]) for c in logs}
            order = np.lexsort((logs["date"], logs["mem"]))
            logs = {c: v[order] for c, v in logs.items()}
        if hi > day_number:                                   # still open: later calls splice onto it
            self._open_logs[k] = {c: v.copy() for c, v in logs.items()}
        path = self.out / "landing" / self.names[k] / "userlogs.csv"
        _write_csv(pa.table({"msno": _ids(self.msno, logs.pop("mem")), "date": ymd(logs.pop("date")), **logs}), path)
        return len(logs["total_secs"])

    def oracle(self) -> pa.Table | None:
        """Every labelled candidate so far with its truth (None before the first final month)."""
        return pa.concat_tables(self._oracle_parts) if self._oracle_parts else None

    def summary(self) -> dict:
        oracle = self.oracle()
        totals = {f: sum(r.get(f, 0) for r in self.rows.values())
                  for f in ("members_profile", "transactions_logs", "userlogs", "churn_logs")}
        return {
            "out_dir": str(self.out), "seed": self.seed, "members": len(self.msno), "months": self.names,
            "scenarios": {n: str(np.datetime64(d, "D").astype("datetime64[M]")) for n, d in self.scen.items()},
            "rows": totals, "rows_per_month": self.rows, **_summary(oracle, sorted(self._labelled)),
            "treatments": _treatment_summary(oracle, self.unmatched_treatments),
        }


def generate_world(out_dir: str | Path, members: int = 20_000, start: str = "2016-07", months: int = 10,
                   seed: int = 7, scenarios: Sequence[tuple[str, str]] | None = (("channel_shift", "2017-02"),),
                   progress: bool = True) -> dict:
    """Simulate `members` initial subscribers (plus monthly sign-ups) over `months` months from
    `start` and write the landing drops and the oracle, with no treatments. Same seed =>
    byte-identical files.

    Returns a summary: rows per file and month, churn rate and oracle AUC per labelled month,
    and how often the simulator's decision disagrees with the official rule (should be 0).
    Months of listening logs are drawn and written by a thread pool while the main thread
    writes the other files and labels.
    """
    t_begin = time.perf_counter()
    bar = tqdm(total=1, desc="generate world", unit="world", disable=not progress)
    world = SyntheticWorld(out_dir, members, start, months, seed, scenarios)
    world.advance()
    bar.update(1)
    bar.close()
    return {**world.summary(), "seconds": round(time.perf_counter() - t_begin, 3)}
