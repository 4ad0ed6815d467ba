"""The discount's effect per member, learned from the experiment's own outcomes. Pure (no Dagster).

Bucket B's paying contacts are a randomised experiment conditional on the score: the control
arm (stable hash), the explored rungs (stable hash) and the policy's rung (a function of the
score) are all assigned from the churn probability at contact and chance, so once the score is
in the model, treated and control members are comparable. A logistic regression of the final
label on

    logit(score), listening, and per rung d: [got d], [got d] x listening

(statsmodels GLM, binomial) says what each rung does to the odds of churning, and how that
depends on listening, the trait a discount plausibly needs (a member who has stopped listening
is not kept by a cheaper plan). `listening` is the share of the last 30 days with plays,
centred at one half.

The treatment terms carry a normal prior N(0, PRIOR_SD²) on the logit scale (the L2 penalty
of a MAP fit): until the outcomes say otherwise a rung does nothing, so a thin rung cannot
talk the policy into discounts. The intercept, the score's slope and listening are unpenalised:
they recalibrate the score on bucket B's paying members.

Per member, the fitted model gives p_0 (no discount) and p_d, hence each rung's uplift
1 - p_d / p_0 and, through offers.choose_discount on p_0, the rung with the best expected
margin. As the rung table does (marketing.uplift), the choice is made on a one-sided lower
bound (`confidence`, default DEFAULT_OFFER_CONFIDENCE): the rung's logit shift for that member
at its least favourable plausible value, from the MAP's Laplace posterior (covariance: the
inverse Hessian of the penalised log-likelihood). A discount is paid by every member who would
have stayed anyway, so on thin margins an unbiased but noisy shift loses money where the noise
happens to look good; on the demo world the estimate itself offered 10 % to 71 % of bucket B
and lost twice what the oracle could earn. Fewer than MIN_OUTCOMES final outcomes, or a rung
without them: no model (the caller keeps the rung table of marketing.uplift).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

from churn_assets.scoring.offers import DEFAULT_HORIZON_MONTHS, choose_discount

DEFAULT_OFFER_CONFIDENCE = 0.95  # one-sided: offer on the shift's 5 % least favourable quantile
PRIOR_SD = 0.5          # logit scale: a rung moves the odds by e^±1 at most, a priori (2 sd)
MIN_OUTCOMES = 400      # final outcomes of paying bucket-B contacts before the model is used
MIN_PER_RUNG = 30       # ... with at least this many at each rung on offer and in the control
EVIDENCE_COLUMNS = ["churn_probability", "discount_pct", "active_days_30d", "is_churn"]
_CLIP = 1e-4


def design(p: np.ndarray, engaged: np.ndarray, received: np.ndarray, rungs: Sequence[int]) -> np.ndarray:
    """The regressors (coefficient_names order) of members with score `p`, centred listening
    `engaged` and discount `received` (0: none)."""
    columns = [np.ones(len(p)), logit(np.clip(p, _CLIP, 1 - _CLIP)), engaged]
    for d in rungs:
        got = (np.asarray(received) == d).astype(float)
        columns += [got, got * engaged]
    return np.column_stack(columns)


def listening(active_days_30d: np.ndarray) -> np.ndarray:
    """Share of the last 30 days with plays, centred at 0.5 (missing: no plays)."""
    return np.clip(np.nan_to_num(np.asarray(active_days_30d, dtype=float), nan=0.0), 0, 30) / 30.0 - 0.5


@dataclass(frozen=True)
class OfferModel:
    """The fitted logistic model of bucket B's outcomes; `coefficients` by name."""

    rungs: tuple[int, ...]
    coefficients: pd.Series
    n_outcomes: int
    covariance: pd.DataFrame  # of the coefficients (Laplace: inverse Hessian at the MAP)
    confidence: float = DEFAULT_OFFER_CONFIDENCE  # what choose decides on by default

    def churn(self, p: np.ndarray, active_days_30d: np.ndarray, rung: int = 0, confidence: float = 0.5) -> np.ndarray:
        """P(churn) with discount `rung` (0: none) for members with score `p`; with `confidence`
        above one half, the rung's logit shift at its one-sided upper bound (the least it keeps)."""
        p, engaged = np.asarray(p, dtype=float), listening(active_days_30d)
        z = design(p, engaged, np.full(len(p), rung), self.rungs) @ self.coefficients.to_numpy()
        if rung and confidence > 0.5:
            # the shift is the rung's two terms: its variance per member from their covariance block
            terms = [f"discount_{rung}", f"discount_{rung}_x_listening"]
            c = self.covariance.loc[terms, terms].to_numpy()
            sd = np.sqrt(np.maximum(c[0, 0] + 2 * c[0, 1] * engaged + c[1, 1] * engaged ** 2, 0.0))
            z = z + norm.ppf(confidence) * sd
        return expit(z)

    def uplift(self, p: np.ndarray, active_days_30d: np.ndarray,
               confidence: float = 0.5) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """(p_0, {rung: share of would-be churners the rung keeps}) per member, shares in [0, 1];
        `confidence` above one half gives each share's one-sided lower bound."""
        p0 = self.churn(p, active_days_30d, 0)
        return p0, {0: np.zeros(len(p0)), **{
            d: np.clip(1.0 - self.churn(p, active_days_30d, d, confidence) / p0, 0.0, 1.0) for d in self.rungs}}

    def choose(self, p: np.ndarray, active_days_30d: np.ndarray, monthly_price: np.ndarray,
               ladder: Sequence[int], horizon_months: float = DEFAULT_HORIZON_MONTHS,
               confidence: float | None = None) -> np.ndarray:
        """The rung of `ladder` with the best margin per member at the uplift's `confidence` lower
        bound (None: the model's own; 0.5: the estimate itself), 0 where no rung pays."""
        confidence = self.confidence if confidence is None else confidence
        if not 0.5 <= confidence < 1.0:
            raise ValueError(f"offer confidence must be in [0.5, 1), got {confidence}")
        p0, uplift = self.uplift(p, active_days_30d, confidence)
        table = {int(d): uplift.get(int(d), np.zeros(len(p0))) for d in ladder}
        return choose_discount(p0, monthly_price, ladder, table, horizon_months)

    def table(self) -> pd.DataFrame:
        """name, coefficient: what the Dagster metadata shows."""
        return self.coefficients.rename("coefficient").rename_axis("term").reset_index()


def coefficient_names(rungs: Sequence[int]) -> list[str]:
    return ["intercept", "logit_score", "listening",
            *[name for d in rungs for name in (f"discount_{d}", f"discount_{d}_x_listening")]]


def fit_offer_model(evidence: pd.DataFrame | None, ladder: Sequence[int], prior_sd: float = PRIOR_SD,
                    min_outcomes: int = MIN_OUTCOMES, min_per_rung: int = MIN_PER_RUNG,
                    confidence: float = DEFAULT_OFFER_CONFIDENCE) -> OfferModel | None:
    """The MAP logistic model of `evidence` (EVIDENCE_COLUMNS: paying bucket-B contacts of both
    arms with final labels, discount_pct 0 for the control), deciding at `confidence`; None with
    too few outcomes."""
    rungs = tuple(sorted(int(d) for d in ladder if int(d) > 0))
    if evidence is None or len(evidence) < min_outcomes or not rungs:
        return None
    d = pd.to_numeric(evidence["discount_pct"], errors="coerce").fillna(0).astype(int).to_numpy()
    if min(int((d == r).sum()) for r in (0, *rungs)) < min_per_rung:
        return None
    y = evidence["is_churn"].to_numpy(dtype=float)
    x = design(evidence["churn_probability"].to_numpy(dtype=float), listening(evidence["active_days_30d"].to_numpy()),
               d, rungs)
    # statsmodels' penalty is alpha * |b|^2 / 2 on the mean log-likelihood: a N(0, sd^2) prior
    # on the full likelihood is alpha = 1 / (n sd^2) on the treatment terms, 0 elsewhere
    alpha = np.r_[np.zeros(3), np.full(2 * len(rungs), 1.0 / (len(y) * prior_sd ** 2))]
    import statsmodels.api as sm  # only when fitting: scoring imports OfferModel for its type

    fit = sm.GLM(y, x, family=sm.families.Binomial()).fit_regularized(alpha=alpha, L1_wt=0.0)
    params = np.asarray(fit.params, dtype=float)
    # Laplace posterior: the penalised log-likelihood's Hessian is X' W X plus the prior precisions
    fitted = expit(x @ params)
    hessian = (x * (fitted * (1 - fitted))[:, None]).T @ x + np.diag(alpha * len(y))
    names = coefficient_names(rungs)
    return OfferModel(rungs, pd.Series(params, index=names), len(y),
                      pd.DataFrame(np.linalg.inv(hessian), index=names, columns=names), confidence)
