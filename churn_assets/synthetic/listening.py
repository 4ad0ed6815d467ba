"""Daily listening rows of one month, vectorised over (member, covered day) cells.

A covered day is active with a probability that follows the member's engagement (static
propensity plus the period's state, reached over the period's first days), so a member
drifting towards leaving listens on fewer days and plays less before the decision. Plays are negative binomial (Poisson with a
gamma-distributed rate), split into the five completion buckets (and unique songs) by
stochastic rounding of their shares, which keeps the month at a handful of array passes.
"""

import numpy as np

from churn_assets.synthetic import catalog as cat
from churn_assets.synthetic.world import ACT_MEAN, SAT_RAMP_DAYS, VOL_ENGAGEMENT, History, _sigmoid

LOG_COLUMNS = ("mem", "date", "num_25", "num_50", "num_75", "num_985", "num_100", "num_unq", "total_secs")


def month_logs(rng: np.random.Generator, hist: History, lo: int, hi: int,
               drop_day: int | None) -> dict[str, np.ndarray]:
    """Log rows dated in [lo, hi), ordered by member then date."""
    per, mem = hist.periods, hist.members
    sel = np.nonzero((per["start"] < hi) & (per["end"] > lo))[0]
    sel = sel[np.lexsort((per["start"][sel], per["mem"][sel]))]   # sort periods, not rows
    a = np.maximum(per["start"][sel], lo)
    b = np.minimum(per["end"][sel], hi)
    keep = b > a
    sel, a, b = sel[keep], a[keep], b[keep]
    n_days = b - a
    cell = np.repeat(np.arange(len(sel)), n_days)
    day = a[cell] + np.arange(len(cell)) - np.repeat(np.cumsum(n_days) - n_days, n_days)

    # engagement of each covered day: moves from the previous period's state to this period's
    # over its first SAT_RAMP_DAYS days (the state that the renewal decision will follow)
    p = sel[cell]
    m = per["mem"][p]
    length = np.clip(per["planned_end"][p] - per["start"][p], 1, SAT_RAMP_DAYS)
    ramp = np.minimum((day - per["start"][p]) / length, 1.0)
    sat = per["sat0"][p] + ramp * (per["sat1"][p] - per["sat0"][p])
    act = mem.act[m] + sat
    if drop_day is not None:
        act = act - 0.9 * (mem.drop_hit[m] & (day >= drop_day))
    on = rng.random(len(cell), dtype=np.float32) < _sigmoid(act)
    day, m, sat = day[on], m[on], sat[on]
    n = len(day)
    vol = mem.vol[m] * np.exp(VOL_ENGAGEMENT * (mem.act[m] - ACT_MEAN + sat))
    if drop_day is not None:
        vol = vol * np.where(mem.drop_hit[m] & (day >= drop_day), 0.5, 1.0)

    # plays ~ negative binomial; buckets and unique songs by stochastic rounding of their shares
    plays = rng.poisson(vol * rng.gamma(2.0, 0.5, n)) + 1
    u = rng.random((7, n), dtype=np.float32)
    counts = np.empty((5, n), dtype=np.int32)
    shares = np.broadcast_to(cat.PLAY_SHARES[:4, None], (4, n)).astype(np.float32)
    shares[0] += mem.skip[m]                                 # young members skip more
    counts[:4] = plays.astype(np.float32) * shares + u[:4]
    counts[4] = np.maximum(plays - counts[:4].sum(axis=0), 0)
    total = counts.sum(axis=0)
    unq = np.clip(np.floor(total * mem.unq_share[m] + u[4]), 1, total).astype(np.int32)
    secs = np.round(mem.song_len[m] * (cat.PLAY_LENGTH @ counts) * (0.9 + 0.2 * u[5]), 3)
    bad = u[6] < cat.SENTINEL_RATE
    secs[bad] = np.where(u[6][bad] < cat.SENTINEL_RATE / 2, -1, 1) * (cat.SENTINEL - np.floor(u[5][bad] * 1e6))

    cols = (m, day, *counts, unq, secs)
    return dict(zip(LOG_COLUMNS, cols))
