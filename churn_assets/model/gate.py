"""The statistics behind the promotion gate: pure numpy, no Dagster, no MLflow.

- Floors relative to the base rate: a model must beat the constant forecast (the month's
  churn rate) on log loss by a relative margin and chance (AUC 0.5) by a margin, so the
  floors move with the base rate instead of sitting above what a useless model scores.
- A paired bootstrap non-inferiority test of a challenger against the incumbent on the
  same labelled rows: both models are scored on every resample (the same rows, so their
  shared noise cancels), and the challenger passes when the confidence bounds of
  ΔAUC = AUC_c - AUC_i and Δlog loss = LL_c - LL_i rule out a loss bigger than the margins.
  Resamples are drawn as row counts (B x n) and AUC is the weighted rank statistic,
  so there is no Python loop over rows or resamples (only over memory-sized chunks).
- Optional row weights (model.data's inverse-probability weights: the randomised hold-out of
  the intervened buckets standing for the members an action reached) make both metrics
  estimates for the whole population; each resample's row weight is count x weight.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-15
# Acceptance margins (ml/production_model, AcceptanceConfig): the largest loss against the
# incumbent the gate tolerates in exchange for a model that learned a newer month.
AUC_MARGIN = 0.005
LOG_LOSS_MARGIN = 0.002
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
# Automated floors (the blocking check, TrainConfig)
MIN_AUC_LIFT = 0.10        # AUC > 0.5 + this
MIN_LOG_LOSS_GAIN = 0.05   # log loss < (1 - this) x the base-rate log loss
_CELLS_PER_CHUNK = 4_000_000  # resamples x rows held at once (~32 MB per float64 matrix)


def _check(y: np.ndarray, *ps: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    y = np.asarray(y, dtype=float)
    out = [np.asarray(p, dtype=float) for p in ps]
    if y.ndim != 1 or any(p.shape != y.shape for p in out):
        raise ValueError("labels and predictions must be 1-d arrays of the same length")
    if not np.isin(y, (0.0, 1.0)).all() or len(np.unique(y)) < 2:
        raise ValueError("labels must be 0/1 with both classes present")
    if any(not np.isfinite(p).all() for p in out):
        raise ValueError("predictions must be finite")
    return y, out


def base_rate_log_loss(y: np.ndarray) -> float:
    """Log loss of the constant forecast p = mean(y) (the best forecast that knows nothing)."""
    r = float(np.clip(np.mean(np.asarray(y, dtype=float)), EPS, 1 - EPS))
    return float(-(r * np.log(r) + (1 - r) * np.log(1 - r)))


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def weighted_auc(weights: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUC (ties count one half) of `p` for each row of `weights` (k x n, e.g. bootstrap
    counts): sum over positives of w * (negative weight below + half the tied negative weight),
    over W_pos * W_neg. With unit weights it is the Mann-Whitney rank AUC."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # one group per distinct score
    ws = w[:, order]
    pos, neg = np.where(ys, ws, 0.0), np.where(ys, 0.0, ws)
    if len(starts) < len(ps):  # tied scores: one column per distinct score
        pos, neg = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample without one class: NaN
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def bootstrap_counts(n: int, n_bootstrap: int, seed: int):
    """`n_bootstrap` resamples of n rows drawn with replacement (fixed `seed`), yielded in
    memory-sized chunks as k x n matrices of counts per row (each resample sums to n)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    for start in range(0, n_bootstrap, chunk):
        k = min(chunk, n_bootstrap - start)
        idx = rng.integers(0, n, size=(k, n), dtype=np.int64) + (np.arange(k, dtype=np.int64) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).astype(float)


def auc_by_ranks(y: np.ndarray, p: np.ndarray) -> float:
    y, (p,) = _check(y, p)
    return float(weighted_auc(np.ones((1, len(y))), y, p)[0])


def floor_problems(
    auc: float, log_loss: float, y: np.ndarray,
    min_auc_lift: float = MIN_AUC_LIFT, min_log_loss_gain: float = MIN_LOG_LOSS_GAIN,
) -> list[str]:
    """Why a model with validation `auc` / `log_loss` on labels `y` fails the floors ([] = passes)."""
    base = base_rate_log_loss(y)
    ceiling = (1 - min_log_loss_gain) * base
    problems = []
    if not auc > 0.5 + min_auc_lift:
        problems.append(f"validation AUC {auc:.4f} not above chance + {min_auc_lift:g} ({0.5 + min_auc_lift:.4f})")
    if not log_loss < ceiling:
        problems.append(
            f"validation log loss {log_loss:.4f} not {min_log_loss_gain:.0%} below the base-rate log loss "
            f"{base:.4f} (churn rate {np.mean(y):.3f}; ceiling {ceiling:.4f})"
        )
    return problems


@dataclass(frozen=True)
class NonInferiority:
    """Paired bootstrap comparison, challenger minus incumbent (negative ΔAUC / positive Δlog loss = worse)."""

    passed: bool
    n: int
    n_bootstrap: int
    confidence: float
    delta_auc: float
    delta_auc_low: float
    delta_auc_high: float
    delta_log_loss: float
    delta_log_loss_low: float
    delta_log_loss_high: float
    auc_margin: float
    log_loss_margin: float

    def describe(self) -> str:
        c = f"{self.confidence:.0%}"
        auc_ok = self.delta_auc_low > -self.auc_margin
        ll_ok = self.delta_log_loss_high < self.log_loss_margin
        return (
            f"ΔAUC {self.delta_auc:+.4f}, {c} CI [{self.delta_auc_low:+.4f}, {self.delta_auc_high:+.4f}] "
            f"(lower bound {'>' if auc_ok else '<='} -{self.auc_margin:g}); "
            f"Δlog loss {self.delta_log_loss:+.4f}, {c} CI [{self.delta_log_loss_low:+.4f}, {self.delta_log_loss_high:+.4f}] "
            f"(upper bound {'<' if ll_ok else '>='} +{self.log_loss_margin:g}); "
            f"n={self.n}, B={self.n_bootstrap}"
        )


def row_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """The rows' weights (None: all 1); ValueError unless finite, non-negative and not all 0."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
        raise ValueError("weights must be one finite, non-negative value per row, not all zero")
    return w


def weighted_auc_log_loss(y: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(AUC, log loss) of `p`, each row weighing its weight (None: 1)."""
    y, (p,) = _check(y, p)
    w = row_weights(weights, len(y))
    return float(weighted_auc(w[None, :], y, p)[0]), float(np.average(row_log_loss(y, p), weights=w))


def bootstrap_deltas(
    y: np.ndarray, p_challenger: np.ndarray, p_incumbent: np.ndarray, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ΔAUC, Δlog loss) on `n_bootstrap` paired resamples of the rows (fixed `seed`), each
    row weighing its bootstrap count x its weight (None: 1)."""
    y, (pc, pi) = _check(y, p_challenger, p_incumbent)
    n = len(y)
    w = row_weights(weights, n)
    dll_rows = row_log_loss(y, pc) - row_log_loss(y, pi)
    d_auc, d_ll = [], []
    for counts in bootstrap_counts(n, n_bootstrap, seed):
        counts *= w
        d_auc.append(weighted_auc(counts, y, pc) - weighted_auc(counts, y, pi))
        d_ll.append(counts @ dll_rows / counts.sum(axis=1))
    return np.concatenate(d_auc), np.concatenate(d_ll)


def non_inferiority(
    y: np.ndarray,
    p_challenger: np.ndarray,
    p_incumbent: np.ndarray,
    auc_margin: float = AUC_MARGIN,
    log_loss_margin: float = LOG_LOSS_MARGIN,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    weights: np.ndarray | None = None,
) -> NonInferiority:
    """The challenger is non-inferior when the lower `confidence` bound of ΔAUC is above
    -auc_margin and the upper bound of Δlog loss is below +log_loss_margin (percentile
    bootstrap, two-sided interval: each bound is a one-sided test at (1 - confidence) / 2).
    With `weights`, both deltas are the weighted (population) metrics."""
    if not 0 < confidence < 1 or n_bootstrap < 1:
        raise ValueError("confidence must be in (0, 1) and n_bootstrap >= 1")
    y, (pc, pi) = _check(y, p_challenger, p_incumbent)
    w = row_weights(weights, len(y))
    d_auc, d_ll = bootstrap_deltas(y, pc, pi, n_bootstrap, seed, w)
    tail = 100 * (1 - confidence) / 2
    auc_low, auc_high = np.nanpercentile(d_auc, [tail, 100 - tail])
    ll_low, ll_high = np.nanpercentile(d_ll, [tail, 100 - tail])
    (auc_c, ll_c), (auc_i, ll_i) = weighted_auc_log_loss(y, pc, w), weighted_auc_log_loss(y, pi, w)
    return NonInferiority(
        passed=bool(auc_low > -auc_margin and ll_high < log_loss_margin),
        n=len(y),
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        delta_auc=auc_c - auc_i,
        delta_auc_low=float(auc_low),
        delta_auc_high=float(auc_high),
        delta_log_loss=ll_c - ll_i,
        delta_log_loss_low=float(ll_low),
        delta_log_loss_high=float(ll_high),
        auc_margin=auc_margin,
        log_loss_margin=log_loss_margin,
    )
