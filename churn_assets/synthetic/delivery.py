"""Deliver a generated world's monthly drops as they would arrive in time: cut at a day.

The simulator writes each month's full drop. A time-true replay must not hand the
system on Monday the 6th what happens on the 20th, so a drop is delivered cut at the
replay's day: only rows dated before it. Members by registration date, transactions by
transaction date, listening rows by date. Published labels (churn_logs) of target month
M are only known once M's labels are final (`labels.final_on`), so they join M's folder
then, as a re-delivery of that folder. Lines are filtered as bytes, never re-parsed into
types, so whatever dirt the generator wrote reaches the loader unchanged; a line whose
date cannot be read is delivered with the first cut (the loader quarantines it).

    drops = DropCutter(Path("data/synthetic/landing"))
    drops.deliver(date(2017, 3, 6), Path("data/landing"))   # -> ["2017-02", "2017-03"] folders written
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from churn_assets.features.labels import final_on
from churn_assets.dates import add_months

# file -> the column that dates a row (None: not cut by date, delivered whole when due)
DATED_COLUMN = {
    "members_profile.csv": "registration_init_time",
    "transactions_logs.csv": "transaction_date",
    "userlogs.csv": "date",
    "churn_logs.csv": None,
}


@dataclass
class DatedLines:
    """A drop file's rows with their dates: what a delivery before a given day holds."""

    header: bytes
    lines: np.ndarray  # object array of bytes, one per data row
    days: np.ndarray  # yyyymmdd as int; 0 where unreadable

    def before(self, day: dt.date) -> bytes:
        keep = self.lines[self.days < int(day.strftime("%Y%m%d"))]
        return self.header + b"\n" + b"\n".join(keep) + (b"\n" if len(keep) else b"")


def read_dated(path: Path, column: str) -> DatedLines:
    """The file's rows keyed by the yyyymmdd of `column` (0 where unreadable)."""
    raw = path.read_bytes()
    header, _, body = raw.partition(b"\n")
    lines = np.array([line for line in body.split(b"\n") if line], dtype=object)
    idx = header.decode("utf-8", "replace").strip().split(",").index(column)

    def yyyymmdd(line: bytes) -> int:
        fields = line.split(b",")
        try:
            return int(fields[idx][:8]) if len(fields) > idx else 0
        except ValueError:
            return 0

    return DatedLines(header.rstrip(b"\r"), lines, np.fromiter(map(yyyymmdd, lines), dtype=np.int64, count=len(lines)))


def _write_atomic(target: Path, content: bytes) -> None:
    tmp = target.with_suffix(".part")  # the landing sensor hashes only *.csv: never a half file
    tmp.write_bytes(content)
    tmp.replace(target)


@dataclass
class DropCutter:
    """Cuts the full drops under `source` (landing/YYYY-MM/*.csv) at a replay day."""

    source: Path
    # (folder, file) -> (mtime_ns, lines): a stepped world rewrites the months still open
    _cache: dict[tuple[str, str], tuple[int, DatedLines]] = field(default_factory=dict)
    _delivered: dict[str, tuple] = field(default_factory=dict)  # folder -> state last written

    def months(self) -> list[dt.date]:
        return sorted(dt.date.fromisoformat(p.name + "-01") for p in self.source.iterdir() if p.is_dir())

    def _dated(self, folder: str, name: str) -> DatedLines:
        key, path = (folder, name), self.source / folder / name
        stamp = path.stat().st_mtime_ns
        if key not in self._cache or self._cache[key][0] != stamp:
            self._cache[key] = stamp, read_dated(path, DATED_COLUMN[name])
        return self._cache[key][1]

    def state(self, month: dt.date, day: dt.date) -> tuple | None:
        """What of month's drop is known on `day`: (cut day, labels published) or None."""
        if day <= month:
            return None
        return min(day, add_months(month, 1)), final_on(month) <= day

    def deliver(self, day: dt.date, landing: Path) -> list[str]:
        """Write every drop folder as known on `day` into `landing`; returns the folders
        whose content changed (the landing sensor ingests exactly those)."""
        changed = []
        for month in self.months():
            state = self.state(month, day)
            folder = f"{month:%Y-%m}"
            if state is None or self._delivered.get(folder) == state:
                continue
            cut, labels_published = state
            previous = self._delivered.get(folder)
            out = landing / folder
            out.mkdir(parents=True, exist_ok=True)
            for name, column in DATED_COLUMN.items():
                source = self.source / folder / name
                if not source.exists():
                    continue
                if column is None:
                    if labels_published:
                        _write_atomic(out / name, source.read_bytes())
                elif previous is None or previous[0] != cut:  # rows dated in the new days
                    _write_atomic(out / name, self._dated(folder, name).before(cut))
            if cut >= add_months(month, 1):  # complete: its rows are never cut again
                for key in [k for k in self._cache if k[0] == folder]:
                    del self._cache[key]
            self._delivered[folder] = state
            changed.append(folder)
        return changed
