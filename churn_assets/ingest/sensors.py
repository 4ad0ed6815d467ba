"""landing_sensor: a new or re-delivered drop folder -> ingest that month once.

The run key is the folder's content fingerprint, so a delivery is ingested
exactly once however often the sensor ticks, and a corrected re-delivery (new
content) is ingested again. Hashing is skipped for folders whose file names,
sizes and mtimes have not changed since the last tick (kept in the cursor).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import dagster as dg

from churn_assets.partitions import monthly_partitions
from churn_assets.settings import paths_from_env

_DROP = re.compile(r"^\d{4}-\d{2}$")


def _stat_signature(folder: Path) -> str:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    return json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def content_fingerprint(folder: Path) -> str:
    """blake2b over the names and bytes of the folder's CSV files."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def scan_landing(landing: Path, seen: dict[str, list[str]]) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """Drop folders whose content changed since `seen` ({folder: [stat signature, fingerprint]}).
    Returns [(partition_key, fingerprint)] to ingest and the new `seen`."""
    changed, new_seen = [], dict(seen)
    if not landing.is_dir():
        return changed, new_seen
    for folder in sorted(p for p in landing.iterdir() if p.is_dir() and _DROP.match(p.name)):
        signature = _stat_signature(folder)
        if signature == "[]":
            continue
        previous = seen.get(folder.name)
        if previous and previous[0] == signature:
            continue
        fingerprint = content_fingerprint(folder)
        new_seen[folder.name] = [signature, fingerprint]
        if not previous or previous[1] != fingerprint:
            changed.append((f"{folder.name}-01", fingerprint))
    return changed, new_seen


@dg.sensor(job_name="ingest_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="New or re-delivered landing/YYYY-MM folder -> ingest_job for that month, once per content.")
def landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    changed, seen = scan_landing(paths_from_env().landing, seen)
    valid = set(monthly_partitions.get_partition_keys())
    for key, _ in changed:
        if key not in valid:
            context.log.warning(f"landing folder {key[:7]} is outside the monthly partitions "
                                f"(first month {monthly_partitions.start:%Y-%m}; set CHURN_FIRST_MONTH): skipped")
    requests = [
        dg.RunRequest(run_key=f"{key}:{fingerprint}", partition_key=key,
                      tags={"churn/trigger": "landing_sensor", "churn/fingerprint": fingerprint})
        for key, fingerprint in changed if key in valid
    ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
