"""The weekly report for marketing: an HTML page and a CSV of who to contact.

The CSV holds only what marketing needs (no features, no model internals);
every member value that reaches the HTML is escaped. Given the week's
marketing.treatments, the CSV lists only the treated arm's new contacts: the
hold-out and members already contacted in their expiry cycle are left out.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churn_assets.core.buckets import A_THRESHOLD, ACTIONS, B_THRESHOLD, BUCKETS
from churn_assets.core.reasons import REASON_COLUMNS
from churn_assets.marketing.treatments import CONTROL, TREATED

HTML_NAME = "churn_report.html"
CSV_NAME = "at_risk_members.csv"
CSV_COLUMNS = [
    "msno", "bucket", "churn_probability", "action", "discount_pct", *REASON_COLUMNS, "membership_expire_date",
]
_MEMBER_NUMBER = r"(?<!last )(?<!method )(?<!city )(?<!channel )\b\d+\b"
_COLOURS = {"A": "#d62728", "B": "#ff7f0e", "C": "#2ca02c"}


@dataclass(frozen=True)
class ReportFiles:
    html_path: Path
    csv_path: Path
    markdown: str


def bucket_counts(scores: pd.DataFrame | None) -> pd.Series:
    """Members per bucket, A/B/C in order (zeros included)."""
    if scores is None or "bucket" not in scores:
        return pd.Series(0, index=list(BUCKETS), dtype=int)
    return scores["bucket"].value_counts().reindex(list(BUCKETS), fill_value=0).astype(int)


def reason_counts(scores: pd.DataFrame, top: int = 10) -> pd.Series:
    """How often each kind of reason appears among A and B members; the member's own
    numbers are replaced by N so "no listening for 23 days" and "... 40 days" count together
    (window lengths and category codes are kept: "last 30 days", "method 38")."""
    at_risk = scores[scores["bucket"].isin(["A", "B"])]
    reasons = at_risk[REASON_COLUMNS].stack().dropna().astype(str)  # stack drops the None slots
    kinds = reasons.str.replace(_MEMBER_NUMBER, "N", regex=True)
    return kinds.value_counts().head(top)


def email_subject(week: dt.date, scores: pd.DataFrame) -> str:
    """The report e-mail's subject: the week and how many members marketing acts on."""
    counts = scores["bucket"].value_counts()
    return (f"Churn report, week of {week}: {int(counts.get('A', 0))} to call, "
            f"{int(counts.get('B', 0))} to offer a discount")


def treated_contacts(scores: pd.DataFrame, treatments: pd.DataFrame) -> pd.DataFrame:
    """The week's treated new contacts with the treatment's action and discount (free/trial
    members get none) and the score's reasons."""
    columns = ["msno", "bucket", "churn_probability", "action", "discount_pct", "membership_expire_date"]
    treated = treatments.loc[treatments["arm"] == TREATED, columns]
    return treated.merge(scores[["msno", *REASON_COLUMNS]], on="msno", how="left", validate="one_to_one")


def experiment_counts(scores: pd.DataFrame, treatments: pd.DataFrame) -> pd.DataFrame:
    """Per bucket: members scored, already contacted in this expiry cycle, new contacts
    treated, new contacts held out (control: no action, still scored)."""
    def per_bucket(frame: pd.DataFrame):
        return bucket_counts(frame).to_numpy()

    scored = per_bucket(scores)
    treated = per_bucket(treatments[treatments["arm"] == TREATED])
    control = per_bucket(treatments[treatments["arm"] == CONTROL])
    return pd.DataFrame({
        "bucket": list(BUCKETS), "scored": scored, "already contacted this cycle": scored - treated - control,
        "new: treated": treated, "new: control (no action)": control,
    })


def marketing_csv(
    scores: pd.DataFrame, buckets: tuple[str, ...] = BUCKETS, treatments: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The CSV rows: members of `buckets`, riskiest first, marketing's columns only; with the
    week's `treatments`, only its treated arm (see treated_contacts)."""
    if treatments is not None:
        scores = treated_contacts(scores, treatments)
    rows = scores[scores["bucket"].isin(buckets)].sort_values(
        ["bucket", "churn_probability", "msno"], ascending=[True, False, True]
    )
    out = rows[CSV_COLUMNS].copy()
    out["churn_probability"] = out["churn_probability"].round(3)
    return out


def _histogram_png(scores: pd.DataFrame, a_threshold: float, b_threshold: float) -> str:
    from matplotlib.figure import Figure  # no pyplot (headless); matplotlib only when drawing

    fig = Figure(figsize=(7, 3.2), dpi=100, layout="tight")
    ax = fig.subplots()
    bins = [i / 20 for i in range(21)]
    data = [scores.loc[scores["bucket"] == b, "churn_probability"] for b in BUCKETS]
    ax.hist(data, bins=bins, stacked=True, color=[_COLOURS[b] for b in BUCKETS], label=list(BUCKETS))
    for t in (b_threshold, a_threshold):
        ax.axvline(t, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("churn probability")
    ax.set_ylabel("members")
    ax.legend(title="bucket")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(frame: pd.DataFrame) -> str:
    """An HTML table with every cell escaped (member ids and reasons are data, not markup)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    cells = frame.astype(object).where(frame.notna(), "").astype(str).map(html.escape)
    body = "\n".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in cells.to_numpy())
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _charts_html(charts: Sequence, week: str) -> str:
    """The loop over time (monitoring.charts.Chart: title, png, caption), embedded as PNG."""
    if not charts:
        return ""
    figures = "\n".join(
        f'<figure><img alt="{html.escape(c.title)}" src="data:image/png;base64,{base64.b64encode(c.png).decode("ascii")}">'
        f"<figcaption>{html.escape(c.title)}: {html.escape(c.caption)}</figcaption></figure>" for c in charts)
    return f"""<h2>Monitoring over time</h2>
<p>As known on {week}: the weeks up to this one, and the months whose labels were final by then.</p>
{figures}
"""


def _change(now: int, before: int | None) -> str:
    if before is None:
        return "n/a"
    return f"{now - before:+d}"


def build_report(
    scores: pd.DataFrame,
    previous: pd.DataFrame | None,
    week_start: dt.date | str,
    out_dir: Path | str,
    a_threshold: float = A_THRESHOLD,
    b_threshold: float = B_THRESHOLD,
    max_table_rows: int = 500,
    treatments: pd.DataFrame | None = None,
    effects: pd.DataFrame | None = None,
    charts: Sequence = (),
) -> ReportFiles:
    """Write churn_report.html and at_risk_members.csv into out_dir (created) for one
    week of scoring.churn_scores rows; `previous` is last week's rows (or None) for the
    change in counts; `treatments` the week's marketing.treatments rows (None: every
    scored member is listed); `effects` the retention experiment's month table
    (marketing.effect.retention_table of the months final by this week, or None); `charts`
    the loop's charts as known on this Monday (monitoring.charts.report_charts). Returns the
    paths and a short markdown summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    week = html.escape(str(week_start))
    counts = bucket_counts(scores)
    before = bucket_counts(previous) if previous is not None else None
    total = int(counts.sum())
    version = ", ".join(sorted(scores["model_version"].astype(str).unique())) if "model_version" in scores else ""

    csv_frame = marketing_csv(scores, treatments=treatments)
    csv_path = out_dir / CSV_NAME
    csv_frame.to_csv(csv_path, index=False)

    summary = pd.DataFrame({
        "bucket": list(BUCKETS),
        "action": [ACTIONS[b] for b in BUCKETS],
        "members": counts.to_numpy(),
        "share": [f"{c / total:.1%}" if total else "-" for c in counts],
        "change vs last week": [_change(int(counts[b]), None if before is None else int(before[b])) for b in BUCKETS],
    })
    reasons = reason_counts(scores).rename_axis("reason (N = the member's own number)").reset_index(name="members")
    at_risk = csv_frame[csv_frame["bucket"].isin(["A", "B"])]
    shown = at_risk.head(max_table_rows)
    offered = scores if treatments is None else csv_frame
    offers = offered.loc[offered["discount_pct"] > 0, "discount_pct"].value_counts().sort_index()
    offer_text = ", ".join(f"{n} members at {d} %" for d, n in offers.items()) or "none"
    chart = _histogram_png(scores, a_threshold, b_threshold) if total else ""
    experiment = None if treatments is None else experiment_counts(scores, treatments)
    experiment_html = "" if experiment is None else f"""<h2>Retention experiment: who is contacted this week</h2>
<p>Each member is contacted once per expiry cycle. A random hold-out (control) gets no action,
so the effect of the actions can be measured against it; the list below and the CSV hold the
treated new contacts only.</p>
{_table(experiment)}
<h3>Churn-rate reduction against the control group, per final month</h3>
{_table(effects) if effects is not None and len(effects) else "<p>No month is final and measured yet.</p>"}
"""
    contacts_note = "" if treatments is None else " New contacts of the treated arm only."

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Churn report, week of {week}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
th {{ background: #f3f3f3; }}
</style></head><body>
<h1>Churn report, week of {week}</h1>
<p>{total} members whose plan expires in the next 30 days, scored by model version
{html.escape(version) or "-"}. Discount offers: {html.escape(offer_text)}.</p>
<h2>Buckets</h2>
{_table(summary)}
{experiment_html}<h2>Score distribution</h2>
{f'<img alt="histogram of churn probabilities by bucket" src="data:image/png;base64,{chart}">' if chart else "<p>No members this week.</p>"}
{_charts_html(charts, week)}<h2>Most common reasons (buckets A and B)</h2>
{_table(reasons) if len(reasons) else "<p>None.</p>"}
<h2>Members to contact (A and B, riskiest first)</h2>
<p>{len(shown)} of {len(at_risk)} shown; the full list, with bucket C, is in {CSV_NAME}.{contacts_note}</p>
{_table(shown)}
</body></html>
"""
    html_path = out_dir / HTML_NAME
    html_path.write_text(page, encoding="utf-8")

    markdown = "\n".join([
        f"**Week of {week_start}**: {total} members expiring in the next 30 days.",
        "",
        summary.to_markdown(index=False),
        "",
        f"Discount offers: {offer_text}.",
        *([] if experiment is None else [
            "",
            f"New contacts: {int(experiment['new: treated'].sum())} treated (in the CSV), "
            f"{int(experiment['new: control (no action)'].sum())} held out as control; "
            f"{int(experiment['already contacted this cycle'].sum())} already contacted this cycle.",
        ]),
    ])
    return ReportFiles(html_path=html_path, csv_path=csv_path, markdown=markdown)
