"""A stepped synthetic world treated Monday by Monday by a stand-in for the marketing asset.

Each Monday the members whose latest delivered transaction (dated before the Monday)
expires in the next 30 days are due, once per expiry; `choose` turns them into treatment
rows. Only delivered data is read, so the stand-in knows what the real asset would.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from churn_assets.synthetic.delivery import DATED_COLUMN, read_dated
from churn_assets.synthetic.effects import Effects
from churn_assets.synthetic.simulator import SyntheticWorld

_TX = ["msno", "transaction_date", "membership_expire_date", "is_auto_renew", "is_cancel", "plan_list_price",
       "actual_amount_paid", "payment_plan_days"]


def due_members(landing: Path, monday: dt.date, earlier: pd.DataFrame) -> pd.DataFrame:
    """_TX of each member's latest delivered transaction expiring in [monday, monday + 30) whose
    (msno, expiry) is not in `earlier`; membership_expire_date as a date."""
    files = sorted(landing.glob("*/transactions_logs.csv"))
    tx = pd.concat([pd.read_csv(f, usecols=_TX) for f in files], ignore_index=True)
    tx = tx[tx["transaction_date"] < int(monday.strftime("%Y%m%d"))]
    last = tx.sort_values("transaction_date", kind="stable").groupby("msno").tail(1).reset_index(drop=True)
    expire = pd.to_datetime(last["membership_expire_date"].astype(str), format="%Y%m%d")
    due = last[(expire >= pd.Timestamp(monday)) & (expire < pd.Timestamp(monday + dt.timedelta(days=30)))]
    due = due.assign(membership_expire_date=expire[due.index].dt.date)
    seen = set(zip(earlier["msno"], pd.to_datetime(earlier["membership_expire_date"]).dt.date))
    keep = [(m, e) not in seen for m, e in zip(due["msno"], due["membership_expire_date"])]
    return due[keep].reset_index(drop=True)


def run_treated_world(out: Path, world: dict, effects: Effects,
                      choose: Callable[[pd.DataFrame, dt.date], pd.DataFrame],
                      first_monday: dt.date, snapshots: dict | None = None) -> tuple[SyntheticWorld, pd.DataFrame]:
    """Advance a world Monday by Monday, treating the due members with `choose(due, monday)`;
    `snapshots` collects what was deliverable (rows dated before the Monday) of every file."""
    synthetic = SyntheticWorld(out, effects=effects, **world)
    treatments = pd.DataFrame()
    monday = first_monday
    while monday < synthetic.end:
        synthetic.advance(monday, treatments if len(treatments) else None)
        if snapshots is not None:
            for path in (out / "landing").glob("*/*.csv"):
                column = DATED_COLUMN[path.name]
                if column is not None:
                    snapshots[(path.relative_to(out).as_posix(), monday)] = read_dated(path, column).before(monday)
        earlier = treatments if len(treatments) else pd.DataFrame(columns=["msno", "membership_expire_date"])
        treatments = pd.concat([treatments, choose(due_members(out / "landing", monday, earlier), monday)],
                               ignore_index=True)
        monday += dt.timedelta(days=7)
    synthetic.advance(None, treatments)
    return synthetic, treatments
