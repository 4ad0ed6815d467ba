"""The loop's story for the demo summary, from the tables a replay leaves behind.

For each injected scenario: the injection month, the first week the drift monitor
flagged, the action the sensor took and what the gate made of it, the label month that
let a promoted model learn the shift (the version under which drift fell back below the
retrain level) and that week. For a stationary world: how many runs the sensor asked for and
how many versions followed the first. Pure: frames in, lines out.
"""
from __future__ import annotations

import datetime as dt

import pandas as pd

from churn_assets.features.labels import final_on


def _first(frame: pd.DataFrame):
    return None if frame.empty else frame.iloc[0]


def _trained_through(promoted: pd.DataFrame, version: str) -> str:
    rows = promoted[promoted["model_version"].astype(str) == version] if len(promoted) else promoted
    return str(rows["trained_through"].iloc[0]) if len(rows) else ""


def _week(value) -> str:
    return pd.Timestamp(value).date().isoformat()


def story_lines(
    scenarios: list[tuple[str, str]],
    weeks: pd.DataFrame,
    promotions: pd.DataFrame,
    sensor_runs: pd.DataFrame,
    retrain_at: float,
) -> list[str]:
    """`weeks`: week_start, model_version, drift_share, level (or decision);
    `promotions`: decided_week, model_version, stage, decision, reason, trained_through
    (production decisions only are read); `sensor_runs`: job, week, decision, success."""
    lines: list[str] = []
    if weeks.empty:
        return ["no week was scored: the world is too short for a first model"]
    weeks = weeks.sort_values("week_start").reset_index(drop=True)
    weeks["week_start"] = pd.to_datetime(weeks["week_start"])
    level = weeks["level"] if "level" in weeks else weeks["decision"]
    production = promotions[promotions["stage"] == "production"] if len(promotions) else promotions
    promoted = production[production["decision"] == "promoted"] if len(production) else production
    refused = len(promotions[promotions["decision"] == "refused"]) if len(promotions) else 0
    versions = list(dict.fromkeys(weeks["model_version"].astype(str)))
    lines.append(f"{len(weeks)} weeks scored ({_week(weeks['week_start'].iloc[0])} .. "
                 f"{_week(weeks['week_start'].iloc[-1])}); serving versions in turn: "
                 + " -> ".join(f"v{v}" for v in versions)
                 + f"; gate decisions: {len(promotions)} ({refused} refused); sensor-requested runs: {len(sensor_runs)}")

    events = [(name, dt.date.fromisoformat(month + "-01")) for name, month in scenarios if name != "none"]
    if not events:
        flagged = int((level != "none").sum())
        lines.append(f"stationary world: {flagged} week(s) flagged, {len(sensor_runs)} run(s) requested by the "
                     f"sensor, {max(0, len(promoted) - 1)} new production version(s) after the first")
        return lines

    for name, injected in events:
        lines.append(f"[{name} injected {injected:%Y-%m}]")
        after = weeks[weeks["week_start"] >= pd.Timestamp(injected)]
        flag = _first(after[level.loc[after.index] != "none"])
        lines.append("  first week flagged: " + (
            f"{_week(flag.week_start)} (drift share {flag.drift_share:.3f}, level {level.loc[flag.name]}; "
            f"{(after['week_start'] <= flag.week_start).sum()} weekly score(s) after injection)"
            if flag is not None else "none"))
        runs = sensor_runs[pd.to_datetime(sensor_runs["week"], errors="coerce") >= pd.Timestamp(injected)] \
            if len(sensor_runs) else sensor_runs
        if len(runs):
            first = runs.iloc[0]
            lines.append(f"  action: {first.job} requested on {first.week} ({first.decision}); "
                         f"{len(runs)} sensor run(s) after injection, "
                         f"{int((runs['job'] == 'retune_job').sum())} retune(s)")
        else:
            lines.append("  action: none requested")
        # settled: the first week after the flag, under a newer version, back below the retrain level
        later = after[after["week_start"] > flag.week_start] if flag is not None else after.iloc[0:0]
        calm = _first(later[(later["drift_share"] < retrain_at)
                            & (later["model_version"].astype(str) != str(flag.model_version))]) if len(later) else None
        if calm is None:
            last = str(weeks["model_version"].iloc[-1])
            lines.append(f"  drift back below the retrain level ({retrain_at:g}): not within the replay "
                         f"(last version v{last}, trained through {_trained_through(promoted, last)})")
            continue
        version = str(calm.model_version)
        month = _trained_through(promoted, version)
        final = f", final on {final_on(dt.date.fromisoformat(month))}" if month else ""
        lines.append(f"  learned: v{version}, trained through the labels of {month[:7]}{final}, "
                     f"serving from week {_week(weeks[weeks['model_version'].astype(str) == version]['week_start'].iloc[0])}")
        lines.append(f"  drift back below the retrain level ({retrain_at:g}): week {_week(calm.week_start)} "
                     f"(share {calm.drift_share:.3f})")
    return lines


RETENTION_TITLE = ("retention experiment: treated vs control churn per final month (the synthetic world answers "
                   "each week's treatments; `--treatment-effect 0` replays a world where nothing works)")


