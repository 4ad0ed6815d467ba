"""Did the actions work? Churn of the treated arm against the hold-out, once the target
month's labels are final. Pure (no Dagster).

Input: the treatments whose cycle expires in target month M, joined to M's labels on msno
and expiry (label last_expire = treatment membership_expire_date; queries.read_effect_inputs).
A treatment without such a label (its expiry moved, or the member is no candidate of M) is
unmatched: counted per arm and group, never dropped silently (rows in = matched + unmatched).

Rows of marketing.retention_effect, by `level`:
- rung: one (bucket, action, discount_pct) of the treated arm against the control members
  the same rule would have given that action and discount (their score's, with the free/trial
  rule of assign_treatments). The rung follows the score, so the bucket's whole control is no
  counterfactual for one rung: the 20 % rung holds the riskier part of bucket B.
- bucket: every treated member of the bucket against the bucket's control.
- month: the contacted (treated) population against the counterfactual, the control's churn
  rate per bucket weighted by the treated bucket mix (the control share may change between weeks).

Intervals (95 % by default):
- rung and bucket effect (control minus treated): Newcombe's hybrid score interval (his
  method 10, from a Wilson interval per arm). The hold-out is small by design and rates can be
  near 0, where Wald's interval is too narrow.
- month effect: Wald on the bucket-weighted difference. A weighted sum of proportions has no
  closed-form score interval, and the month pools every bucket, so both arms are large.
- relative reduction (control - treated) / control: Fieller's interval for the ratio
  treated / control of two independent estimates. The noisy control rate sits in the
  denominator; Fieller's interval is asymmetric where it should be and unbounded (NaN here)
  when the control rate is not clearly above zero.

Money, over a horizon of H months, with P the sum of the treated members' own monthly prices
(offers.monthly_price of their last plan: list price and plan length from the scoring
features of the contact week; 0 when unknown or free) and d the rung's discount share:

    net_revenue = H * P * (effect * (1 - d) - (1 - churn_rate_control) * d)

the incremental members retained (effect * n_treated, at the treated members' average price)
paying the discounted price, minus the discount given to the treated members who would have
stayed anyway (the control's renewal rate). Assumptions, as in offers.py: every treated member
takes the discount offered, the discount and the retained member last the whole horizon, and
calls and e-mails cost nothing. A bucket or month row's net_revenue is the sum of its rungs'
(each rung has its own discount); rungs without a control are left out of it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from churn_assets.dates import add_months, as_date
from churn_assets.marketing.treatments import CONTROL, FREE_TRIAL_B_ACTION, TREATED
from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS, monthly_price

MONTH, BUCKET, RUNG = "month", "bucket", "rung"
ALL = "all"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_RELATIVE_REDUCTION = 0.02  # the business criterion: churn 2 % below the control's
DEFAULT_CRITERION_MONTHS = 3
DEFAULT_POWER = 0.80
NEWCOMBE, WALD = "newcombe_hybrid_score", "wald_bucket_weighted"

INPUT_COLUMNS: list[str] = [
    "week_start", "msno", "membership_expire_date", "bucket", "arm", "action", "discount_pct", "free_or_trial",
    "scored_action", "scored_discount_pct", "last_list_price", "last_plan_days", "is_churn", "matched",
]
EFFECT_COLUMNS: list[str] = [
    "target_month", "level", "bucket", "action", "discount_pct", "n_treated", "n_control",
    "churn_rate_treated", "churn_rate_control", "effect", "ci_low", "ci_high", "ci_method",
    "relative_reduction", "rr_ci_low", "rr_ci_high",
    "treated_ci_low", "treated_ci_high", "control_ci_low", "control_ci_high",
    "incremental_retained", "net_revenue", "n_unmatched_treated", "n_unmatched_control", "detectable_reduction",
]
SUMMARY_COLUMNS: list[str] = [
    "target_month", "n_treated", "n_control", "churn_rate_treated", "churn_rate_control", "effect", "ci_low",
    "ci_high", "relative_reduction", "rr_ci_low", "rr_ci_high", "incremental_retained", "net_revenue",
    "detectable_reduction",
]
_FLOATS = [c for c in EFFECT_COLUMNS[7:] if c not in ("ci_method", "n_unmatched_treated", "n_unmatched_control")]


@dataclass(frozen=True)
class EffectResult:
    rows: pd.DataFrame  # EFFECT_COLUMNS: the rung rows, the bucket rows, then the month row
    rows_in: int  # treatments whose cycle expires in the month
    matched: int  # of them with a label of the month
    unmatched: int
    unmeasured: int  # matched, but in a bucket without both arms: outside the month's comparison
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> pd.Series:
        """The month row."""
        return self.rows.loc[self.rows["level"] == MONTH].iloc[0]


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(k, n, confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion k / n (arrays welcome; NaN where n = 0)."""
    k, n, z = np.asarray(k, dtype=float), np.asarray(n, dtype=float), _z(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denominator = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denominator
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def newcombe_interval(k_control, n_control, k_treated, n_treated,
                      confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of p_control - p_treated (arrays welcome)."""
    kc, nc, kt, nt = (np.asarray(x, dtype=float) for x in (k_control, n_control, k_treated, n_treated))
    lc, uc = wilson_interval(kc, nc, confidence)
    lt, ut = wilson_interval(kt, nt, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        pc, pt = kc / nc, kt / nt
    d = pc - pt
    return d - np.sqrt((pc - lc) ** 2 + (ut - pt) ** 2), d + np.sqrt((uc - pc) ** 2 + (pt - lt) ** 2)


def fieller_relative_reduction(rate_treated, var_treated, rate_control, var_control,
                               confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(relative reduction 1 - t / c, low, high) with Fieller's interval for t / c of two
    independent estimates t, c with variances var_t, var_c. NaN when c <= 0; the interval is
    NaN when unbounded (c not clearly above 0: c^2 <= z^2 var_c)."""
    t, vt, c, vc = (np.asarray(x, dtype=float) for x in (rate_treated, var_treated, rate_control, var_control))
    z2 = _z(confidence) ** 2
    a = c * c - z2 * vc
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(np.maximum(z2 * (c * c * vt + t * t * vc - z2 * vt * vc), 0.0))
        q_low, q_high = (t * c - root) / a, (t * c + root) / a
        reduction = np.where(c > 0, 1.0 - t / c, np.nan)
    bounded = (c > 0) & (a > 0)
    return reduction, np.where(bounded, 1.0 - q_high, np.nan), np.where(bounded, 1.0 - q_low, np.nan)


def _offers(inputs: pd.DataFrame) -> pd.DataFrame:
    """The inputs with offer_action / offer_discount_pct: a treated member's own action and
    discount; for a control member what assign_treatments would have given them (the score's
    action and discount; free/trial: no discount, the reminder in bucket B). NaN when the
    control member's score row is missing."""
    frame = inputs.reset_index(drop=True).copy()
    treated = _where(frame, arm=TREATED)
    free = frame["free_or_trial"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    scored_action = frame["scored_action"].astype(object)
    scored_discount = pd.to_numeric(frame["scored_discount_pct"], errors="coerce")
    known = scored_action.notna().to_numpy()
    would_act = scored_action.where(~(free & _where(frame, bucket="B")), FREE_TRIAL_B_ACTION).where(known)
    would_discount = scored_discount.where(~free, 0.0).where(known & scored_discount.notna().to_numpy())
    frame["offer_action"] = np.where(treated, frame["action"].astype(object), would_act.astype(object))
    own_discount = pd.to_numeric(frame["discount_pct"], errors="coerce").astype(float).to_numpy()
    frame["offer_discount_pct"] = np.where(treated, own_discount, would_discount.to_numpy(dtype=float))
    frame["price"] = monthly_price(pd.to_numeric(frame["last_list_price"], errors="coerce").astype(float),
                                   pd.to_numeric(frame["last_plan_days"], errors="coerce").astype(float))
    frame["matched"] = frame["matched"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    frame["churned"] = pd.to_numeric(frame["is_churn"], errors="coerce").astype(float)
    return frame


def _arm_numbers(churned: np.ndarray, confidence: float) -> dict:
    n, k = len(churned), float(np.sum(churned))
    low, high = wilson_interval(k, n, confidence)
    rate = k / n if n else np.nan
    return {"n": n, "k": k, "rate": rate, "var": rate * (1.0 - rate) / n if n else np.nan,
            "low": float(low), "high": float(high)}


def detectable_reduction(control_rate, var_treated, var_control, confidence: float = DEFAULT_CONFIDENCE,
                         power: float = DEFAULT_POWER):
    """The smallest relative reduction (control - treated) / control that an estimate with these
    arm variances detects with `power` at the two-sided `confidence` level:
    (z_conf + z_power) * SE / control rate. A month whose detectable reduction is above the 2 %
    criterion cannot show that the criterion held, whatever the actions did."""
    c = np.asarray(control_rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (_z(confidence) + NormalDist().inv_cdf(power)) * np.sqrt(np.asarray(var_treated, float)
                                                                        + np.asarray(var_control, float)) / c
    return np.where(c > 0, out, np.nan)


def _row(level: str, bucket: str, action: str, discount: float | None, t: dict, c: dict,
         effect: float, ci: tuple[float, float], method: str, net_revenue: float,
         unmatched: tuple[int, int], confidence: float) -> dict:
    reduction, rr_low, rr_high = fieller_relative_reduction(t["rate"], t["var"], c["rate"], c["var"], confidence)
    detectable = detectable_reduction(c["rate"], t["var"], c["var"], confidence)
    return {
        "level": level, "bucket": bucket, "action": action, "discount_pct": discount,
        "n_treated": t["n"], "n_control": c["n"], "churn_rate_treated": t["rate"], "churn_rate_control": c["rate"],
        "effect": effect, "ci_low": float(ci[0]), "ci_high": float(ci[1]), "ci_method": method,
        "relative_reduction": float(reduction), "rr_ci_low": float(rr_low), "rr_ci_high": float(rr_high),
        "treated_ci_low": t["low"], "treated_ci_high": t["high"], "control_ci_low": c["low"], "control_ci_high": c["high"],
        "incremental_retained": effect * t["n"], "net_revenue": net_revenue,
        "n_unmatched_treated": unmatched[0], "n_unmatched_control": unmatched[1],
        "detectable_reduction": float(detectable),
    }


def _compare(level: str, bucket: str, action: str, discount: float | None, churned: np.ndarray,
             treated: np.ndarray, control: np.ndarray, price: np.ndarray, unmatched: tuple[int, int],
             horizon_months: float, confidence: float, net_revenue: float | None = None) -> dict:
    """A rung or bucket row: the `treated` rows against the `control` rows (boolean masks of
    matched rows), Newcombe's interval."""
    t = _arm_numbers(churned[treated], confidence)
    c = _arm_numbers(churned[control], confidence)
    effect = c["rate"] - t["rate"]
    ci = newcombe_interval(c["k"], c["n"], t["k"], t["n"], confidence)
    if net_revenue is None:  # a rung: its own discount
        share = (discount or 0.0) / 100.0
        net_revenue = horizon_months * float(price[treated].sum()) * (effect * (1.0 - share) - (1.0 - c["rate"]) * share)
    return _row(level, bucket, action, discount, t, c, effect, ci, NEWCOMBE, net_revenue, unmatched, confidence)


def _month_row(bucket_rows: list[dict], unmatched: tuple[int, int], net_revenue: float,
               confidence: float) -> dict:
    """The treated population against the control rates weighted by the treated bucket mix,
    over the buckets with both arms (Wald interval)."""
    strata = [r for r in bucket_rows if r["n_treated"] and r["n_control"]]
    n_t = sum(r["n_treated"] for r in strata)
    w = np.array([r["n_treated"] / n_t for r in strata]) if n_t else np.zeros(0)
    rt, rc = (np.array([r[f"churn_rate_{arm}"] for r in strata], dtype=float) for arm in ("treated", "control"))
    nt, nc = (np.array([r[f"n_{arm}"] for r in strata], dtype=float) for arm in ("treated", "control"))
    t_rate, c_rate = (float(w @ r) if n_t else np.nan for r in (rt, rc))
    t_var = float(np.sum(w * w * rt * (1 - rt) / nt)) if n_t else np.nan
    c_var = float(np.sum(w * w * rc * (1 - rc) / nc)) if n_t else np.nan
    z = _z(confidence)
    arm = {name: {"n": int(n.sum()), "rate": rate, "var": var, "low": rate - z * np.sqrt(var),
                  "high": rate + z * np.sqrt(var)}
           for name, n, rate, var in (("t", nt, t_rate, t_var), ("c", nc, c_rate, c_var))}
    effect = c_rate - t_rate
    half = z * np.sqrt(t_var + c_var)
    return _row(MONTH, ALL, ALL, None, arm["t"], arm["c"], effect, (effect - half, effect + half), WALD,
                net_revenue, unmatched, confidence)


def _where(frame: pd.DataFrame, **match) -> np.ndarray:
    """Rows equal to every value of `match` (a missing value matches nothing)."""
    rows = np.ones(len(frame), dtype=bool)
    for column, value in match.items():
        rows &= (frame[column] == value).fillna(False).to_numpy(dtype=bool)
    return rows


class _Columns:
    """The prepared inputs as plain arrays (None / NaN where missing): masks without pandas
    overhead, which matters when the measurement runs in a loop of simulations."""

    def __init__(self, frame: pd.DataFrame):
        self.n = len(frame)
        self.arrays = {name: frame[name].astype(object).where(frame[name].notna(), None).to_numpy()
                       for name in ("arm", "bucket", "action", "offer_action")}
        self.arrays.update({name: frame[name].to_numpy(dtype=float)
                            for name in ("offer_discount_pct", "churned", "price")})
        self.arrays["discount_pct"] = pd.to_numeric(frame["discount_pct"], errors="coerce").to_numpy(dtype=float)
        self.matched = frame["matched"].to_numpy(dtype=bool)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def where(self, **match) -> np.ndarray:
        rows = np.ones(self.n, dtype=bool)
        for column, value in match.items():
            rows &= np.asarray(self.arrays[column] == value, dtype=bool)
        return rows

    def counts(self, **match) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(matched treated mask, matched control mask, unmatched treated, unmatched control)
        of the rows matching `match`; an offer_* column matches a treated row's own column."""
        t = self.where(arm=TREATED, **{k.removeprefix("offer_"): v for k, v in match.items()})
        c = self.where(arm=CONTROL, **match)
        return t & self.matched, c & self.matched, int((t & ~self.matched).sum()), int((c & ~self.matched).sum())


def _typed(rows: list[dict], month: dt.date) -> pd.DataFrame:
    """EFFECT_COLUMNS with fixed types (text as "string", so every month writes the same schema)."""
    columns = {"target_month": pd.Series([month] * len(rows), dtype=object)}
    for name in EFFECT_COLUMNS[1:]:
        values = [r[name] for r in rows]
        if name in ("level", "bucket", "action", "ci_method"):
            columns[name] = pd.array(values, dtype="string")
        elif name == "discount_pct":
            columns[name] = pd.array([None if v is None or pd.isna(v) else int(v) for v in values], dtype="Int32")
        elif name in _FLOATS:
            columns[name] = np.asarray(values, dtype="float64")
        else:
            columns[name] = np.asarray(values, dtype="int64")
    return pd.DataFrame(columns)[EFFECT_COLUMNS]


def measure_effect(
    inputs: pd.DataFrame,
    month: dt.date,
    horizon_months: float = DEFAULT_HORIZON_MONTHS,
    confidence: float = DEFAULT_CONFIDENCE,
) -> EffectResult:
    """marketing.retention_effect rows of target month `month` from the treatments expiring
    in it with their labels (INPUT_COLUMNS; is_churn NaN and matched False where no label)."""
    frame = _offers(inputs)
    cols = _Columns(frame)
    churned, price = cols["churned"], cols["price"]
    notes: list[str] = []
    rungs: list[dict] = []
    keys = frame.loc[_where(frame, arm=TREATED), ["bucket", "action", "discount_pct"]].drop_duplicates()
    for bucket, action, discount in keys.sort_values(["bucket", "discount_pct", "action"]).itertuples(index=False):
        t, c, lost_t, lost_c = cols.counts(bucket=bucket, offer_action=action, offer_discount_pct=float(discount))
        rungs.append(_compare(RUNG, bucket, action, float(discount), churned, t, c, price, (lost_t, lost_c),
                              horizon_months, confidence))
    buckets: list[dict] = []
    for bucket in sorted(b for b in set(cols["bucket"]) if b is not None):
        net = pd.Series([r["net_revenue"] for r in rungs if r["bucket"] == bucket], dtype=float).sum(min_count=1)
        t, c, lost_t, lost_c = cols.counts(bucket=bucket)
        buckets.append(_compare(BUCKET, bucket, ALL, None, churned, t, c, price, (lost_t, lost_c),
                                horizon_months, confidence, net_revenue=float(net)))
        if (buckets[-1]["n_treated"] == 0) != (buckets[-1]["n_control"] == 0):
            notes.append(f"bucket {bucket} has matched members in one arm only: left out of the month's comparison")
    total_net = float(pd.Series([r["net_revenue"] for r in rungs], dtype=float).sum(min_count=1))
    _, _, lost_t, lost_c = cols.counts()
    month_row = _month_row(buckets, (lost_t, lost_c), total_net, confidence)
    matched, unmatched = int(cols.matched.sum()), lost_t + lost_c
    unmeasured = matched - month_row["n_treated"] - month_row["n_control"]
    if unmatched:
        notes.append(f"{unmatched} of {cols.n} treatments have no label of {month:%Y-%m} for their cycle "
                     f"({lost_t} treated, {lost_c} control): not measured")
    no_offer = int((cols.where(arm=CONTROL) & cols.matched & pd.isna(cols["offer_action"])).sum())
    if no_offer:
        notes.append(f"{no_offer} control members have no score row: in their bucket's comparison, in no rung's")
    if any(r["n_control"] == 0 for r in rungs):
        notes.append("rungs without control members have no effect estimate and no net revenue")
    rows = _typed([*rungs, *buckets, month_row], month)
    return EffectResult(rows, cols.n, matched, unmatched, int(unmeasured), notes)


# ---------------------------------------------------------------- the business criterion


def months_met(summaries: pd.DataFrame, threshold: float = DEFAULT_MIN_RELATIVE_REDUCTION) -> pd.Series:
    """Per month row: the relative reduction reached `threshold` AND, where the interval is known
    (rr_ci_low), it excludes no effect. The business asks for a fall *because of* the actions: in
    a world where they do nothing the point estimate alone passes 2 % about half the months."""
    met = summaries["relative_reduction"].ge(threshold).fillna(False).astype(bool)
    if "rr_ci_low" in summaries:
        met &= summaries["rr_ci_low"].gt(0).fillna(False).astype(bool)
    return met


def criterion_streak(summaries: pd.DataFrame, through: dt.date | None = None,
                     threshold: float = DEFAULT_MIN_RELATIVE_REDUCTION) -> int:
    """How many successive months ending at `through` (default: the latest) met the criterion
    (months_met). `summaries`: target_month, relative_reduction[, rr_ci_low] (the month rows).
    A month without a row (not final, or not measured) breaks the streak, as does NaN."""
    met = dict(zip((as_date(m) for m in summaries["target_month"]), months_met(summaries, threshold)))
    month = as_date(through) if through is not None else max(met, default=None)
    streak = 0
    while met.get(month, False):
        streak, month = streak + 1, add_months(month, -1)
    return streak


def criterion_held(summaries: pd.DataFrame, through: dt.date | None = None,
                   threshold: float = DEFAULT_MIN_RELATIVE_REDUCTION, months: int = DEFAULT_CRITERION_MONTHS) -> bool:
    """True when the relative reduction was >= threshold in each of the `months` successive
    months ending at `through` (default: the latest month of `summaries`)."""
    return criterion_streak(summaries, through, threshold) >= months


def criterion_history(summaries: pd.DataFrame, threshold: float = DEFAULT_MIN_RELATIVE_REDUCTION,
                      months: int = DEFAULT_CRITERION_MONTHS) -> pd.DataFrame:
    """`summaries` by month with criterion_met (this month) and criterion_held (the `months`
    months ending here all met it)."""
    out = summaries.sort_values("target_month").reset_index(drop=True).copy()
    out["criterion_met"] = months_met(out, threshold)
    out["criterion_held"] = [criterion_held(out, m, threshold, months) for m in out["target_month"]]
    return out


# ---------------------------------------------------------------- reporting


def _pct(value: float, digits: int = 1) -> str:
    return "" if pd.isna(value) else f"{100 * value:.{digits}f} %"


def effect_markdown(rows: pd.DataFrame) -> str:
    """The rows as a markdown table (rates, effect and its interval in percentage points)."""
    table = pd.DataFrame({
        "level": rows["level"], "bucket": rows["bucket"], "action": rows["action"],
        "discount": rows["discount_pct"].map(lambda d: "" if pd.isna(d) else f"{int(d)} %"),
        "treated": [f"{_pct(r)} of {n}" for r, n in zip(rows["churn_rate_treated"], rows["n_treated"])],
        "control": [f"{_pct(r)} of {n}" for r, n in zip(rows["churn_rate_control"], rows["n_control"])],
        "effect (CI)": [f"{_pct(e)} ({_pct(lo)} .. {_pct(hi)})" if pd.notna(e) else ""
                        for e, lo, hi in zip(rows["effect"], rows["ci_low"], rows["ci_high"])],
        "relative reduction (CI)": [f"{_pct(e)} ({_pct(lo)} .. {_pct(hi)})" if pd.notna(e) else ""
                                    for e, lo, hi in zip(rows["relative_reduction"], rows["rr_ci_low"], rows["rr_ci_high"])],
        "retained": rows["incremental_retained"].round(1),
        "net revenue": rows["net_revenue"].round(0),
        "unmatched": rows["n_unmatched_treated"] + rows["n_unmatched_control"],
    })
    return table.to_markdown(index=False)


def effect_chart_png(rows: pd.DataFrame, path: Path, confidence: float = DEFAULT_CONFIDENCE) -> Path:
    """Bars of the treated and control churn rate per bucket, and of the month's treated vs
    counterfactual, with their intervals, written as PNG to `path` (parents created)."""
    from matplotlib.figure import Figure  # matplotlib only when a chart is drawn

    shown = rows[rows["level"].isin([BUCKET, MONTH])].reset_index(drop=True)
    labels = [f"bucket {b}" if level == BUCKET else "month (control bucket-weighted)" for level, b in zip(shown["level"], shown["bucket"])]
    x = np.arange(len(shown))
    width = 0.38
    fig = Figure(figsize=(max(6.0, 1.6 * len(shown) + 2), 4.5), dpi=100, layout="constrained")  # no pyplot
    ax = fig.add_subplot()
    for offset, arm, colour in ((-width / 2, "treated", "#4C72B0"), (width / 2, "control", "#C44E52")):
        rate = 100 * shown[f"churn_rate_{arm}"].to_numpy(dtype=float)
        low, high = (100 * shown[f"{arm}_ci_{side}"].to_numpy(dtype=float) for side in ("low", "high"))
        errors = np.nan_to_num(np.vstack([rate - low, high - rate]).clip(min=0.0))
        ax.bar(x + offset, np.nan_to_num(rate), width, yerr=errors, capsize=4, color=colour, label=arm)
        for xi, n in zip(x + offset, shown[f"n_{arm}"]):
            ax.annotate(f"n={n}", (xi, 0), ha="center", va="bottom", fontsize="x-small", color="white",
                        xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("churn rate (%)")
    month = pd.Timestamp(rows["target_month"].iloc[0]).strftime("%Y-%m") if len(rows) else ""
    ax.set_title(f"Retention experiment, expiries of {month}: churn with {confidence:.0%} intervals")
    ax.legend(loc="upper right", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _signed(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:+.1f} %"


def retention_table(summaries: pd.DataFrame | None, threshold: float = DEFAULT_MIN_RELATIVE_REDUCTION,
                    months: int = DEFAULT_CRITERION_MONTHS) -> pd.DataFrame | None:
    """One line per measured month of marketing.retention_effect's month rows (effect.SUMMARY_COLUMNS):
    treated vs control (counterfactual) churn, the relative reduction with its interval, and
    whether the criterion held for `months` successive months up to that month."""
    if summaries is None or summaries.empty:
        return None
    history = criterion_history(summaries, threshold, months)
    return pd.DataFrame({
        "target_month": [f"{pd.Timestamp(m):%Y-%m}" for m in history["target_month"]],
        "n_treated": history["n_treated"].astype(int), "n_control": history["n_control"].astype(int),
        "churn_treated": history["churn_rate_treated"].astype(float).round(4),
        "churn_control": history["churn_rate_control"].astype(float).round(4),
        "relative_reduction (CI)": [f"{_signed(r)} ({_signed(lo)} .. {_signed(hi)})" for r, lo, hi in zip(
            history["relative_reduction"], history["rr_ci_low"], history["rr_ci_high"])],
        # months measured before the column existed have none
        "detectable (80 % power)": [_pct(d) for d in history.get("detectable_reduction", [np.nan] * len(history))],
        f"met (>= {threshold:.0%}, CI > 0)": history["criterion_met"].map({True: "yes", False: "no"}),
        f"held {months} months": history["criterion_held"].map({True: "yes", False: "no"}),
    })


def months_final_by(summaries: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The month rows whose labels were final on `day` (a weekly report shows only what was
    knowable that Monday, also when an old week is re-materialised)."""
    from churn_assets.features.labels import final_on

    if summaries.empty:
        return summaries
    return summaries[[final_on(as_date(m)) <= day for m in summaries["target_month"]]]
