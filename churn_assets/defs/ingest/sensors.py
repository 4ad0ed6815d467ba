"""landing_sensor: a new or re-delivered drop folder -> ingest that month once.

The run key is the folder's content fingerprint (churn_assets.ingest.landing), so a
delivery is ingested exactly once however often the sensor ticks, and a corrected
re-delivery (new content) is ingested again. The cursor keeps each folder's stat
signature and fingerprint.
"""
from __future__ import annotations

import json

import dagster as dg

from churn_assets.defs.keys import RAW
from churn_assets.defs.partitions import monthly_partitions
from churn_assets.defs.resources import Storage
from churn_assets.ingest.landing import scan_landing


@dg.sensor(job_name="ingest_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="New or re-delivered landing/YYYY-MM folder -> ingest_job for that month, once per "
                       "content, for the raw assets whose file changed.")
def landing_sensor(context: dg.SensorEvaluationContext, storage: Storage) -> dg.SensorResult:
    seen = json.loads(context.cursor) if context.cursor else {}
    changed, seen = scan_landing(storage.landing, seen)
    valid = set(monthly_partitions.get_partition_keys())
    for key, _, _ in changed:
        if key not in valid:
            context.log.warning(f"landing folder {key[:7]} is outside the monthly partitions "
                                f"(first month {monthly_partitions.start:%Y-%m}; set CHURN_FIRST_MONTH): skipped")
    requests = [
        dg.RunRequest(run_key=f"{key}:{fingerprint}", partition_key=key,
                      # only the raw assets whose file changed (every one on a first delivery)
                      asset_selection=None if len(sources) == len(RAW) else [RAW[s] for s in sources],
                      tags={"churn/trigger": "landing_sensor", "churn/fingerprint": fingerprint,
                            "churn/sources": ",".join(sources)})
        for key, fingerprint, sources in changed if key in valid and sources
    ]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
