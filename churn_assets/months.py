"""Calendar-month arithmetic, free of Dagster so pure SQL helpers can use it."""
from datetime import date, timedelta


def add_months(month: date, n: int) -> date:
    """The first day of the month n months after `month`'s month."""
    y, m = divmod(month.year * 12 + month.month - 1 + n, 12)
    return date(y, m + 1, 1)


def month_end(month: date) -> date:
    """Last day of the month."""
    return add_months(month, 1) - timedelta(days=1)
