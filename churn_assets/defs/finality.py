"""The guard of the assets that judge a target month once its labels are final."""
import dagster as dg
import duckdb

from churn_assets.dates import month_of
from churn_assets.features.labels import final_on, labels_final


def final_month_or_none(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection):
    """The partition's month when its labels are final, else None after logging when they will be.
    Not an error: the month is not judgeable yet, so the asset records no materialisation, the
    partition stays missing, and a sensor watching it sees nothing."""
    month = month_of(context.partition_key)
    if labels_final(con, month):
        return month
    context.log.warning(f"labels of {month:%Y-%m} are not final until the data reaches "
                        f"{final_on(month).isoformat()}: nothing written")
    return None
