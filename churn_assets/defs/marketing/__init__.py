"""Dagster definitions of the domain; the pure code lives in churn_assets.marketing."""
