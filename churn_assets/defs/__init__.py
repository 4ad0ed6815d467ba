"""Dagster definitions, one folder per domain (assets, checks, jobs, sensors, schedules).

Everything here imports dagster; nothing outside this package (and definitions.py, demo.py) does."""
