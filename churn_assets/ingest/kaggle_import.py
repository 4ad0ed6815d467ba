"""Split the public WSDM Cup 2018 (KKBox) files into monthly landing drops.

Each big file is read once by DuckDB and written with `COPY ... PARTITION_BY (month)`,
then the partition files are moved to `landing/YYYY-MM/<seed name>`. Values are copied
as text (all VARCHAR), so the loader sees exactly what the public file holds, dirt
included; rows whose date does not parse go to `import_rejects/` instead of a month.
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

# source -> (public files in read order, date column that picks the month, seed file name)
PARTITIONED = {
    "transactions": (("transactions.csv", "transactions_v2.csv"), "transaction_date", "transactions_logs.csv"),
    "user_logs": (("user_logs.csv", "user_logs_v2.csv"), "date", "userlogs.csv"),
}
MEMBERS = ("members_v3.csv", "members_profile.csv")
# Labels of the members whose subscription expires in the target month.
LABELS = {"train.csv": "2017-02", "train_v2.csv": "2017-03"}
INVALID, MALFORMED = "invalid", "malformed"


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[import-kaggle] {msg}", file=sys.stderr, flush=True)


def _count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        return [h.strip() for h in next(csv.reader(fh))]


def _concat(parts: list[Path], dest: Path) -> None:
    """Move one part into place, or join several (each has its own header)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1:
        shutil.move(parts[0], dest)
        return
    with dest.open("wb") as out:
        for i, part in enumerate(sorted(parts)):
            with part.open("rb") as fh:
                if i:
                    fh.readline()
                shutil.copyfileobj(fh, out, 1 << 24)


def split_by_month(
    con: duckdb.DuckDBPyConnection, files: list[Path], date_column: str, out_dir: Path, seed_name: str
) -> dict[str, int]:
    """One DuckDB pass over `files`: write out_dir/landing/YYYY-MM/seed_name; rows per month."""
    header = _header(files[0])
    if date_column not in header:
        raise ValueError(f"{files[0]}: no column {date_column!r} (header: {', '.join(header)})")
    columns = {h: "VARCHAR" for h in header}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".split_") as tmp:
        parts_root = Path(tmp) / "parts"
        con.execute(
            f"""COPY (
                    SELECT *, coalesce(strftime(try_strptime({_quote(date_column)}, '%Y%m%d'), '%Y-%m'),
                                       '{INVALID}') AS _month
                    FROM read_csv($files, header = true, delim = ',', quote = '"', escape = '"',
                                  auto_detect = false, columns = $columns, store_rejects = true,
                                  rejects_table = '_split_rej', rejects_scan = '_split_scan'))
                TO {_lit(parts_root)} (FORMAT csv, HEADER true, PARTITION_BY (_month))""",
            {"files": [str(f) for f in files], "columns": columns},
        )
        counts = {}
        # Lines the CSV parser could not read are kept aside with their file and line number.
        counts[MALFORMED] = con.execute("SELECT count(DISTINCT (file_id, line)) FROM _split_rej").fetchone()[0]
        if counts[MALFORMED]:
            dest = out_dir / "import_rejects" / f"{Path(seed_name).stem}_malformed.csv"
            dest.parent.mkdir(parents=True, exist_ok=True)
            con.execute(
                f"""COPY (SELECT s.file_path, e.line, e.error_type, e.csv_line
                          FROM _split_rej e JOIN _split_scan s USING (scan_id, file_id)
                          ORDER BY 1, 2) TO {_lit(dest)} (FORMAT csv, HEADER true)""")
        con.execute("DROP TABLE IF EXISTS _split_rej; DROP TABLE IF EXISTS _split_scan")
        for month_dir in sorted(parts_root.iterdir()):
            month = month_dir.name.split("=", 1)[1]
            target = (out_dir / "import_rejects" / seed_name if month == INVALID
                      else out_dir / "landing" / month / seed_name)
            _concat(sorted(month_dir.glob("*.csv")), target)
            counts[month] = _count_lines(target) - 1
    return counts


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def import_kaggle(src_dir: Path, out_dir: Path, progress: bool = True) -> dict:
    """Split the public full files in `src_dir` into monthly drops under `out_dir/landing/`.

    transactions(.csv, _v2) by transaction_date and user_logs(.csv, _v2) by date, one pass per
    source; members_v3.csv goes into the latest month (the current members file); train.csv
    labels go to 2017-02 and train_v2.csv to 2017-03 as churn_logs.csv.
    Rows without a parseable date or unreadable by the CSV parser go to out_dir/import_rejects/.
    Returns {"months": [...], "rows": {source: {month: n}}, "rejected": {source: n}, "seconds": s}.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: dict[str, dict[str, int]] = {}
    rejected: dict[str, int] = {}
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        for source, (names, date_column, seed_name) in PARTITIONED.items():
            files = [src_dir / n for n in names if (src_dir / n).is_file()]
            if not files:
                _log(progress, f"{source}: no {' / '.join(names)} in {src_dir}, skipped")
                continue
            t = time.perf_counter()
            _log(progress, f"{source}: splitting {', '.join(f.name for f in files)} by month of {date_column} ...")
            counts = split_by_month(con, files, date_column, out_dir, seed_name)
            rejected[source] = counts.pop(INVALID, 0) + counts.pop(MALFORMED, 0)
            rows[source] = counts
            _log(progress, f"{source}: {sum(counts.values()):,} rows into {len(counts)} months"
                           f" ({min(counts, default='-')} .. {max(counts, default='-')}),"
                           f" {rejected[source]:,} to import_rejects/, {time.perf_counter() - t:.1f} s")
    finally:
        con.close()

    months = sorted({m for counts in rows.values() for m in counts})
    members = next((src_dir / n for n in MEMBERS if (src_dir / n).is_file()), None)
    if members is not None:
        if not months:
            raise ValueError(f"{members.name} found but no transactions/user_logs months to place it in")
        dest = out_dir / "landing" / months[-1] / "members_profile.csv"
        shutil.copyfile(members, dest)
        rows["members"] = {months[-1]: _count_lines(dest) - 1}
        _log(progress, f"members: {members.name} -> landing/{months[-1]}/members_profile.csv")

    for name, month in LABELS.items():
        if (src_dir / name).is_file():
            dest = out_dir / "landing" / month / "churn_logs.csv"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_dir / name, dest)
            rows.setdefault("churn_labels", {})[month] = _count_lines(dest) - 1
            _log(progress, f"churn_labels: {name} -> landing/{month}/churn_logs.csv")
    if "churn_labels" in rows:
        months = sorted(set(months) | set(rows["churn_labels"]))

    seconds = time.perf_counter() - started
    _log(progress, f"done: {len(months)} monthly drops in {out_dir / 'landing'} ({seconds:.1f} s)")
    return {"months": months, "rows": rows, "rejected": rejected, "seconds": seconds}
