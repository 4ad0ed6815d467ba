"""The member-state simulator: members, subscription periods, decisions, transactions.

Time is an integer day number (days since 1970-01-01). The world is stepped over
subscription periods, vectorised over members: every round processes the current
period of each member still subscribed (or due to join) inside the horizon, draws
the latent engagement of that period, an optional cancellation, the true churn
probability and the decision at expiry, and writes the consequences (cancel row,
renewal row inside the 30-day window, or a late return after it).

Randomness is drawn per member and round for all members at once (regular members
and campaign-wave members from separate generators), so one member's draws never
depend on what happened to the others: a scenario changes the world only from its
month on, and the months before it are identical to the world without it. Each block
of draws (`u` uniforms, `z` standard normals) is a named tuple whose fields say what
each row is for, in stream order: the number and order of rows (unused ones included)
is what keeps a seed's files byte-identical.
"""

from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np

from churn_assets.synthetic import catalog as cat
from churn_assets.synthetic.effects import CALL, DEFAULT_EFFECTS, DISCOUNT, NONE, Effects, TreatmentBook, effect_logit

NEW_MEMBER_RATE = 0.04          # new sign-ups per month, share of the initial subscribers
DORMANT_SHARE = 0.5             # lapsed members in the members file without transactions (same unit)
WAVE_FIRST, WAVE_LATER = 0.30, 0.05   # channel_shift campaign sign-ups (same unit)
WAVE_LOYALTY = 0.4              # the campaign recruits keen listeners: their churn stays plausible
TRIAL_SHARE, TRIAL_SHARE_WAVE = 0.20, 0.40
SAT_RHO, SAT_SD = 0.92, 0.25    # engagement random walk per period (persistent, small steps)
SAT_STATIONARY_SD = SAT_SD / np.sqrt(1 - SAT_RHO ** 2)   # spread of the walk: newcomers and returners start here
SAT_RAMP_DAYS = 5               # listening moves to the period's engagement over its first days
SKIP_AGE = 0.12                 # the age effect on churn also shows as skipping
VOL_ENGAGEMENT = 0.5            # log-volume of plays per unit of engagement
ACT_MEAN = 0.3                  # mean logit of listening on a covered day
RETURN_SHARE, RETURN_MEAN_DAYS = 0.35, 40
# the churn logit. Every latent driver also shows in behaviour: loyalty in auto-renew and listening,
# engagement (static propensity + period state) in listening; a cancellation that is still to come
# at the start of the expiry month is a consequence of the decision, not a cause (the decision's
# probability only uses what has happened by then)
# The effects interact as in the KKBox data: listening (and its decline) matters far more for
# manual payers, who must actively renew, than for auto-renew members; a cancellation is a stronger
# signal on the high-churn payment methods; young members on trials churn far more than older
# ones; a discount mostly predicts leaving when it was on a short (monthly) plan.
CHURN_INTERCEPT = -3.5
W_LOYALTY = 0.3
W_ENGAGEMENT, W_ENGAGEMENT_MANUAL = 0.5, 1.5     # auto-renew, extra for manual payers
W_TREND, W_TREND_MANUAL = 0.1, 0.9
W_MANUAL = 2.3                                  # manual payers must act to stay
W_CANCEL, W_CANCEL_RISKY = 3.0, 1.0
W_TRIAL, W_TRIAL_YOUNG = 1.3, 1.2               # young: true age < 25
W_LONG_PLAN = 0.3                               # subtracted: 90+ day plans are a commitment
W_DISCOUNT_SHORT, W_DISCOUNT_LONG = 0.8, 0.1
W_FREE = 0.5                                    # nothing paid for the period
W_FIRST_PERIOD = 0.4                            # a new member's first period
W_DROP = 0.6                                    # engagement_drop: on cancelling and on churning
W_RISE, W_RISE_PRICE_SENS = 0.6, 1.3            # price_rise on monthly plans
CANCEL_INTERCEPT, CANCEL_LOYALTY, CANCEL_ENGAGEMENT = -3.0, 0.5, 0.7   # logit of an early cancellation
LOYALTY_AUTO = 1.2              # logit effect of loyalty on choosing auto-renew
LATE_CANCEL_SHARE = 0.5         # auto-renew churners who cancel in the expiry month
CHURN_NOISE_SD = 0.25           # the part of the decision no model can see (mood of the day)
EARLIEST_RENEWAL = 7            # renewals are dated at most this many days before the expiry
AUTO_RENEW_LEAD_P = np.array([.55, .30, .10, .05])   # auto-renewal dated 0..3 days before the expiry
PLAN_SWITCH, AUTO_SWITCH_ON = 0.06, 0.04              # per renewal: re-draw the plan; turn auto-renew on
CANCELLED_STAY_AUTO = 0.4       # cancelled renewers mostly go manual
REGISTRATION_FLOOR = np.datetime64("2004-03-26").astype(np.int64)
# the oracle's counterfactuals: each decision's true probability had the member got this action in time
COUNTERFACTUALS = {"call": (CALL, 0), "discount_10": (DISCOUNT, 10), "discount_20": (DISCOUNT, 20),
                   "discount_30": (DISCOUNT, 30)}


@dataclass
class Members:
    """Static member attributes. Index = member id, in blocks: initial subscribers, dormant
    (lapsed) members, monthly sign-ups, campaign-wave sign-ups."""

    join_day: np.ndarray        # first day they exist (initial members: before the start)
    reg_day: np.ndarray         # recorded registration_init_time
    has_row: np.ndarray         # appears in the members file
    dormant: np.ndarray         # in the members file only: no subscription inside the horizon
    new: np.ndarray             # signed up inside the horizon
    wave: np.ndarray            # signed up through the channel_shift campaign
    channel: np.ndarray         # index into catalog.CHANNELS
    city: np.ndarray
    bd: np.ndarray              # recorded age (dirty)
    gender: np.ndarray          # 0 missing, 1 male, 2 female
    age: np.ndarray             # true age (drives churn; bd shows it for a third)
    loyalty: np.ndarray
    price_sens: np.ndarray
    act: np.ndarray             # logit of listening on a covered day
    vol: np.ndarray             # median plays on an active day
    song_len: np.ndarray        # seconds
    unq_share: np.ndarray       # unique songs / plays
    drop_hit: np.ndarray        # affected by engagement_drop
    skip: np.ndarray            # plays moved from num_100 to num_25 (young members skip more)

    def __len__(self) -> int:
        return len(self.join_day)


@dataclass
class History:
    """Everything the simulation produced, as flat arrays."""

    members: Members
    tx: dict[str, np.ndarray]         # transaction rows (all dates)
    # one row per period: mem, txn_day (its opening transaction), cancel_day (-1: none), expire,
    # expire_eff (after a cancellation), p (true churn probability), churn (the decision), and the
    # treatment: action kind, discount_pct, p_untreated (p without it; equal to p when untreated)
    decisions: dict[str, np.ndarray]
    # listening coverage: mem, start, end (exclusive, after cancellations), planned_end, and the
    # engagement at the start and the planned end of the period
    periods: dict[str, np.ndarray]


# --- named blocks of random draws (field order = row order in the stream) ---------------------

class _MemberUniforms(NamedTuple):
    """Sign-up day, registration record, channel, profile fields, flags."""

    join_day: np.ndarray
    registration_back: np.ndarray
    future_registration: np.ndarray
    future_registration_day: np.ndarray
    channel: np.ndarray
    profile_filled: np.ndarray
    gender_given: np.ndarray
    gender: np.ndarray
    bd_kind: np.ndarray
    bd_dirty_value: np.ndarray
    bd_true: np.ndarray
    city: np.ndarray
    has_row: np.ndarray
    drop_hit: np.ndarray
    unused_1: np.ndarray
    unused_2: np.ndarray


class _MemberNormals(NamedTuple):
    """True age and the latent tastes."""

    age: np.ndarray
    loyalty: np.ndarray
    price_sens: np.ndarray
    act: np.ndarray
    vol: np.ndarray
    song_len: np.ndarray
    unq_share: np.ndarray
    skip: np.ndarray


class _FirstPeriodUniforms(NamedTuple):
    """The plan of the period each member is in (or starts) at the first day."""

    method: np.ndarray
    auto: np.ndarray
    plan: np.ndarray
    discount: np.ndarray
    discount_size: np.ndarray
    trial: np.ndarray
    position: np.ndarray        # where the start falls inside an established member's period
    lag_kind: np.ndarray
    lag_days: np.ndarray


class _FirstPeriodNormals(NamedTuple):
    satisfaction: np.ndarray


class _RoundUniforms(NamedTuple):
    """One round: cancellation, decision, timing of the next transaction, next plan."""

    cancel: np.ndarray
    cancel_day: np.ndarray
    cancel_pull: np.ndarray     # how far a cancellation pulls the expiry (early and late ones)
    cancel_pull_days: np.ndarray
    churn: np.ndarray
    auto_renew_lead: np.ndarray
    manual_delay_kind: np.ndarray
    manual_delay_days: np.ndarray
    returns: np.ndarray
    return_delay: np.ndarray
    plan_switch: np.ndarray
    new_method: np.ndarray
    new_auto: np.ndarray
    cancelled_stay_auto: np.ndarray
    auto_switch_on: np.ndarray
    new_plan: np.ndarray
    discount: np.ndarray
    discount_size: np.ndarray
    unused: np.ndarray
    late_cancel_day: np.ndarray
    late_cancel: np.ndarray


class _RoundNormals(NamedTuple):
    satisfaction_step: np.ndarray
    returner_satisfaction: np.ndarray
    churn_noise: np.ndarray


_Block = TypeVar("_Block", bound=tuple)


class _Streams:
    """Uniform and normal blocks of shape (k, members): regular then wave members."""

    def __init__(self, regular: np.random.Generator, wave: np.random.Generator, n_regular: int, n_wave: int):
        self.gens, self.sizes = (regular, wave), (n_regular, n_wave)

    def u(self, k: int) -> np.ndarray:
        return np.concatenate([g.random((k, n)) for g, n in zip(self.gens, self.sizes)], axis=1)

    def z(self, k: int) -> np.ndarray:
        return np.concatenate([g.standard_normal((k, n)) for g, n in zip(self.gens, self.sizes)], axis=1)

    def uniforms(self, rows: type[_Block], members: np.ndarray | slice = slice(None)) -> _Block:
        """One uniform row per field of `rows`, for all members, kept for `members`."""
        return rows(*self.u(len(rows._fields))[:, members])

    def normals(self, rows: type[_Block], members: np.ndarray | slice = slice(None)) -> _Block:
        return rows(*self.z(len(rows._fields))[:, members])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _pick(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draw by inverse CDF: index into `p` for each uniform in `u`."""
    return np.minimum(np.searchsorted(np.cumsum(p) / p.sum(), u, side="right"), len(p) - 1)


def _ints(lo, hi, u: np.ndarray) -> np.ndarray:
    """Integers in [lo, hi) from uniforms."""
    return (lo + np.floor(u * (np.asarray(hi) - lo))).astype(np.int64)


def _month_start(days: np.ndarray) -> np.ndarray:
    """First day of the month of each day number."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


# --- members -----------------------------------------------------------------------------------

def sign_ups(n_initial: int, month_days: np.ndarray, scenarios: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Regular and campaign-wave sign-ups per month."""
    starts = month_days[:-1]
    regular = np.full(len(starts), round(n_initial * NEW_MEMBER_RATE))
    wave = np.zeros(len(starts), dtype=np.int64)
    shift = scenarios.get("channel_shift")
    if shift is not None and (starts >= shift).any():
        on = starts >= shift
        wave[on] = round(n_initial * WAVE_LATER)
        wave[np.argmax(on)] = round(n_initial * WAVE_FIRST)
    return regular, wave


def _registration_days(u: _MemberUniforms, new: np.ndarray, dormant: np.ndarray, join_day: np.ndarray,
                       first_day: int, data_end: int) -> np.ndarray:
    """Sign-ups register on joining; established members spread back to 2004, skewed recent
    (lapsed ones further back), and a few are recorded in the future, as in the public file."""
    days_back = np.minimum(-np.where(dormant, 1500, 900) * np.log1p(-u.registration_back),
                            first_day - REGISTRATION_FLOOR)
    reg_day = np.where(new, join_day, first_day - 1 - days_back.astype(np.int64))
    return np.where(u.future_registration < cat.FUTURE_REGISTRATION,
                    data_end + 1 + _ints(0, 400, u.future_registration_day), reg_day)


def _profiles(u: _MemberUniforms, age: np.ndarray, wave: np.ndarray) -> dict[str, np.ndarray]:
    """What the members file shows: most profiles are empty, and a filled-in age is often dirty
    (zero, negative or a year-like number), so the recorded bd reveals the true age for a third."""
    filled = u.profile_filled < np.where(wave, cat.PROFILE_FILLED_WAVE, cat.PROFILE_FILLED)
    gender = np.where(filled & (u.gender_given < 0.95), 1 + (u.gender < 0.5), 0)
    dirty_bd = np.select([u.bd_kind < 0.90, u.bd_kind < 0.95],
                         [0, -_ints(1, 50, u.bd_dirty_value)], _ints(1000, 3000, u.bd_dirty_value))
    return dict(gender=gender, bd=np.where(filled & (u.bd_true < 0.92), age, dirty_bd),
                city=np.where(filled, cat.CITIES[_pick(cat.CITY_P_FILLED, u.city)], 1))


def make_members(streams: _Streams, n_initial: int, n_dormant: int, month_days: np.ndarray, regular: np.ndarray,
                 wave_counts: np.ndarray, data_end: int) -> Members:
    """Initial subscribers, dormant members, the sign-ups of every month, then the campaign wave."""
    starts, lengths = month_days[:-1], np.diff(month_days)
    sign_up_month = np.concatenate([np.repeat(np.arange(len(starts)), regular),
                                    np.repeat(np.arange(len(starts)), wave_counts)])
    n_old = n_initial + n_dormant
    n = n_old + len(sign_up_month)
    wave = np.zeros(n, dtype=bool)
    wave[n_old + int(regular.sum()):] = True
    new = np.arange(n) >= n_old
    dormant = (np.arange(n) >= n_initial) & ~new
    u, z = streams.uniforms(_MemberUniforms), streams.normals(_MemberNormals)

    join_day = np.full(n, starts[0] - 1)
    join_day[new] = starts[sign_up_month] + _ints(0, lengths[sign_up_month], u.join_day[new])
    # campaign members come through other channels and are younger
    channel = np.select([wave, new], [_pick(cat.CHANNEL_P_WAVE, u.channel), _pick(cat.CHANNEL_P_NEW, u.channel)],
                        _pick(cat.CHANNEL_P, u.channel))
    age = np.clip(np.round(np.where(wave, 21 + 5 * z.age, 29 + 9 * z.age)), 12, 75).astype(np.int64)
    loyalty = z.loyalty + cat.CHANNEL_LOYALTY[channel] + WAVE_LOYALTY * wave
    return Members(
        join_day=join_day, reg_day=_registration_days(u, new, dormant, join_day, starts[0], data_end),
        has_row=u.has_row < cat.HAS_MEMBERS_ROW, dormant=dormant, new=new, wave=wave,
        channel=channel, age=age, loyalty=loyalty, **_profiles(u, age, wave),
        price_sens=0.5 * loyalty + 0.8 * z.price_sens,           # loyal members care more about price
        act=ACT_MEAN + 0.9 * z.act + 0.4 * loyalty,               # loyal members listen more
        vol=np.exp(np.log(11) + 0.8 * z.vol),
        song_len=np.exp(np.log(235) + 0.12 * z.song_len),
        unq_share=np.clip(0.8 + 0.12 * z.unq_share, 0.3, 1.0),
        drop_hit=u.drop_hit < 0.6,
        skip=np.clip(SKIP_AGE * cat.age_logit(age) + 0.03 * z.skip, -0.1, 0.3),
    )


# --- plans -------------------------------------------------------------------------------------

class _Plans:
    """Payment method, auto-renew, plan and price paid, from uniforms."""

    def __init__(self, price_rise_day: int | None):
        self.rise_day = price_rise_day
        self.rise_map = np.arange(2001)
        for old, new in cat.PRICE_RISE.items():
            self.rise_map[old] = new

    @staticmethod
    def method(wave: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.where(wave, _pick(cat.METHOD_P_WAVE, u), _pick(cat.METHOD_P, u))

    @staticmethod
    def auto(method: np.ndarray, loyalty: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Auto-renew follows the payment method, and loyal members choose it more often."""
        base = np.log(cat.METHOD_AUTO[method] / (1 - cat.METHOD_AUTO[method]))
        return u < _sigmoid(base + LOYALTY_AUTO * loyalty)

    @staticmethod
    def plan(auto: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Plan days and list price (auto-renew members pick from the monthly catalogue)."""
        auto_plan = cat.AUTO_PLANS[_pick(cat.AUTO_PLAN_P, u)]
        manual_plan = cat.MANUAL_PLANS[_pick(cat.MANUAL_PLAN_P, u)]
        return (np.where(auto, auto_plan[:, 0], manual_plan[:, 0]),
                np.where(auto, auto_plan[:, 1], manual_plan[:, 1]))

    def pay(self, days: np.ndarray, price: np.ndarray, day: np.ndarray, u: np.ndarray,
            u_size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Price rise on monthly plans dated after it, then discounts (paid == list on ~93 %):
        5.5 % pay 50-95 % of the list price, 1 % pay nothing."""
        if self.rise_day is not None:
            price = np.where((day >= self.rise_day) & (days >= 30) & (days <= 31), self.rise_map[price], price)
        discounted = np.round(price * (0.5 + 0.45 * u_size))
        return price, np.where(u < 0.055, discounted, np.where(u < 0.065, 0, price)).astype(np.int64)


# --- subscription periods ----------------------------------------------------------------------

class _Plan(NamedTuple):
    """What a member pays for a period."""

    method: np.ndarray          # index into catalog.METHODS
    auto: np.ndarray            # on auto-renew
    days: np.ndarray            # plan days
    price: np.ndarray           # list price
    paid: np.ndarray

    def take(self, rows: np.ndarray) -> "_Plan":
        return _Plan(*(column[rows] for column in self))


@dataclass
class _Periods:
    """The current subscription period of each member (or, from `take`, of some members)."""

    method: np.ndarray
    auto: np.ndarray
    days: np.ndarray
    price: np.ndarray
    paid: np.ndarray
    txn_day: np.ndarray         # its opening transaction
    cover_start: np.ndarray     # listening coverage starts (never before the previous period's end)
    expire: np.ndarray
    first: np.ndarray           # a sign-up's first period
    satisfaction: np.ndarray    # latent engagement state (random walk over periods)

    @property
    def plan(self) -> _Plan:
        return _Plan(self.method, self.auto, self.days, self.price, self.paid)

    def take(self, members: np.ndarray) -> "_Periods":
        return _Periods(**{name: column[members] for name, column in vars(self).items()})

    def open(self, members: np.ndarray, plan: _Plan, txn_day: np.ndarray, cover_start: np.ndarray,
             expire: np.ndarray) -> None:
        """The next period of `members` (all other arguments are aligned with them)."""
        for name, column in zip(_Plan._fields, plan):
            getattr(self, name)[members] = column
        self.txn_day[members], self.cover_start[members], self.expire[members] = txn_day, cover_start, expire
        self.first[members] = False


def first_periods(streams: _Streams, members: Members, plans: _Plans, first_day: int) -> _Periods:
    """Sign-ups start a period on joining (some pay a few days late; some take a trial);
    established members are somewhere inside a period that ends after the first day."""
    u, z = streams.uniforms(_FirstPeriodUniforms), streams.normals(_FirstPeriodNormals)
    method = plans.method(members.wave, u.method)
    auto = plans.auto(method, members.loyalty, u.auto)
    days, price = plans.plan(auto, u.plan)
    price, paid = plans.pay(days, price, members.join_day, u.discount, u.discount_size)
    trial = members.new & (u.trial < np.where(members.wave, TRIAL_SHARE_WAVE, TRIAL_SHARE))
    days = np.where(trial, cat.TRIAL_DAYS, days)
    price = np.where(trial, 0, price)
    paid = np.where(trial, 0, paid)
    established_expire = first_day + np.floor(u.position * days).astype(np.int64)
    payment_lag = np.where(u.lag_kind < 0.8, 0, _ints(1, 4, u.lag_days))
    txn_day = np.where(members.new, members.join_day + payment_lag, established_expire - days)
    return _Periods(method=method, auto=auto, days=days, price=price, paid=paid, txn_day=txn_day,
                    cover_start=txn_day.copy(), expire=txn_day + days, first=members.new.copy(),
                    satisfaction=SAT_STATIONARY_SD * z.satisfaction)


class _Record:
    """Per-round columns of transactions, decisions and listening periods."""

    TX = ("mem", "payment_method_id", "payment_plan_days", "plan_list_price", "actual_amount_paid",
          "is_auto_renew", "transaction_date", "membership_expire_date", "is_cancel")
    DECISIONS = ("mem", "txn_day", "cancel_day", "expire", "expire_eff", "p", "churn", "action", "discount_pct",
                 "p_untreated", *(f"p_{name}" for name in COUNTERFACTUALS))
    PERIODS = ("mem", "start", "end", "planned_end", "sat0", "sat1")

    def __init__(self):
        self.tx: list[tuple] = []
        self.decisions: list[tuple] = []
        self.periods: list[tuple] = []

    def transactions(self, mem: np.ndarray, plan: _Plan, day: np.ndarray, expire: np.ndarray,
                     is_cancel: int) -> None:
        self.tx.append((mem, plan.method, plan.days, plan.price, plan.paid, plan.auto, day, expire,
                        np.full(len(mem), is_cancel, dtype=np.int64)))

    def history(self, members: Members) -> History:
        tx = _stack(self.tx, self.TX)
        tx["payment_method_id"] = cat.METHODS[tx["payment_method_id"]]
        tx["is_auto_renew"] = tx["is_auto_renew"].astype(np.int64)
        return History(members, tx, _stack(self.decisions, self.DECISIONS), _stack(self.periods, self.PERIODS))


@dataclass
class _Outcome:
    """How a period ends: a cancellation (cancel_day, the expiry it pulls to), then the true churn
    probability and the decision."""

    cancel: np.ndarray
    cancel_day: np.ndarray
    expire_eff: np.ndarray
    p: np.ndarray | None = None
    churn: np.ndarray | None = None


def early_cancellations(period: _Periods, members: Members, active: np.ndarray, sat_now: np.ndarray,
                        u: _RoundUniforms, scenarios: dict[str, int]) -> _Outcome:
    """An auto-renew member may cancel during the period, often pulling the expiry earlier. Such a
    cancellation is dated before the expiry month (so it is known when that month's churn is
    predicted) and raises the churn probability; cancellations inside the expiry month come later,
    as a consequence of the decision to leave."""
    expire, txn_day = period.expire, period.txn_day
    room = np.minimum(_month_start(expire), expire) - txn_day - 1
    cancel_day = txn_day + 1 + np.floor(u.cancel_day * np.maximum(room, 1)).astype(np.int64)
    logit = CANCEL_INTERCEPT - CANCEL_LOYALTY * members.loyalty[active] - CANCEL_ENGAGEMENT * sat_now
    if "engagement_drop" in scenarios:
        logit = logit + W_DROP * (members.drop_hit[active] & (cancel_day - 3 >= scenarios["engagement_drop"]))
    cancel = period.auto & (period.days >= 7) & (room >= 1) & (u.cancel < _sigmoid(logit))
    # half keep their expiry, some end on the cancellation day, the rest 1-3 days before it
    pulled = np.select([u.cancel_pull < 0.5, u.cancel_pull < 0.8], [expire, cancel_day],
                       cancel_day - _ints(1, 4, u.cancel_pull_days))
    return _Outcome(cancel, cancel_day, np.where(cancel, np.minimum(pulled, expire), expire))


def churn_logit(period: _Periods, members: Members, active: np.ndarray, sat_before: np.ndarray,
                sat_now: np.ndarray, cancel: np.ndarray, is_trial: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The true churn logit at expiry, from what is known at the start of the expiry month.
    One left-to-right sum, term by term: regrouping it would change the last bits of p."""
    manual = ~period.auto
    loyalty, age = members.loyalty[active], members.age[active]
    engagement = members.act[active] - ACT_MEAN + sat_now
    engagement_weight = W_ENGAGEMENT + W_ENGAGEMENT_MANUAL * manual
    trend_weight = W_TREND + W_TREND_MANUAL * manual
    cancel_weight = W_CANCEL + W_CANCEL_RISKY * cat.RISKY_METHOD[period.method]
    trial_weight = W_TRIAL + W_TRIAL_YOUNG * (age < 25)
    discount_weight = np.where(period.days <= 31, W_DISCOUNT_SHORT, W_DISCOUNT_LONG)
    return (CHURN_INTERCEPT - W_LOYALTY * loyalty
            - engagement_weight * engagement
            - trend_weight * (sat_now - sat_before)
            + W_MANUAL * manual + cancel_weight * cancel
            + cat.METHOD_LOGIT[period.method] + cat.CHANNEL_LOGIT[members.channel[active]] + cat.age_logit(age)
            + trial_weight * is_trial - W_LONG_PLAN * (period.days >= 90)
            + discount_weight * (period.paid < period.price) + W_FREE * (period.paid == 0)
            + W_FIRST_PERIOD * period.first + CHURN_NOISE_SD * noise)


def scenario_churn_shift(logit: np.ndarray, period: _Periods, members: Members, active: np.ndarray,
                         expire_eff: np.ndarray, decisions_from: dict[str, int]) -> np.ndarray:
    """Concept drift: the scenarios raise the churn logit of decisions from their month on."""
    if "engagement_drop" in decisions_from:
        logit = logit + W_DROP * (members.drop_hit[active] & (expire_eff >= decisions_from["engagement_drop"]))
    if "price_rise" in decisions_from:
        # the coming monthly price rise hits the price-sensitive (often loyal) members
        hit = ((expire_eff >= decisions_from["price_rise"]) & (period.days >= 30) & (period.days <= 31)
               & (period.price > 0))
        logit = logit + hit * (W_RISE + W_RISE_PRICE_SENS * members.price_sens[active])
    return logit


def late_cancellations(period: _Periods, outcome: _Outcome, u: _RoundUniforms) -> None:
    """Leavers on auto-renew often switch it off in the expiry month (invisible at its start)."""
    expire = period.expire
    window_start = np.maximum(period.txn_day + 1, _month_start(expire))
    late_day = window_start + np.floor(u.late_cancel_day * (expire - window_start)).astype(np.int64)
    late = (outcome.churn & period.auto & ~outcome.cancel & (late_day < expire)
            & (u.late_cancel < LATE_CANCEL_SHARE))
    pulled = np.where(u.cancel_pull < 0.6, expire, late_day)
    outcome.cancel = outcome.cancel | late
    outcome.cancel_day = np.where(late, late_day, outcome.cancel_day)
    outcome.expire_eff = np.where(late, np.minimum(pulled, expire), outcome.expire_eff)


def next_transaction_days(period: _Periods, outcome: _Outcome, u: _RoundUniforms) -> tuple[np.ndarray, np.ndarray]:
    """Renewers: auto-renew on or just before the expiry, manual payers around it (< 30 days late,
    inside the label's window). Churners: some return later, after the 30-day window.
    Returns who returns and the day of each member's next transaction (renewal or return)."""
    still_auto = period.auto & ~outcome.cancel
    auto_lead = _pick(AUTO_RENEW_LEAD_P, u.auto_renew_lead)
    manual_delay = np.select([u.manual_delay_kind < 0.4, u.manual_delay_kind < 0.8],
                             [-_ints(1, EARLIEST_RENEWAL + 1, u.manual_delay_days), _ints(0, 8, u.manual_delay_days)],
                             _ints(8, 30, u.manual_delay_days))
    not_before = np.where(outcome.cancel, outcome.cancel_day + 1, period.txn_day + 1)
    renew_day = np.maximum(np.where(still_auto, period.expire - auto_lead, outcome.expire_eff + manual_delay),
                           not_before)
    returns = outcome.churn & (u.returns < RETURN_SHARE)
    # geometric delay with mean RETURN_MEAN_DAYS after the window
    return_day = outcome.expire_eff + 30 + np.floor(
        np.log1p(-u.return_delay) / np.log1p(-1 / RETURN_MEAN_DAYS)).astype(np.int64)
    return returns, np.where(~outcome.churn, renew_day, return_day)


def next_plan(plans: _Plans, period: _Periods, members: Members, active: np.ndarray, outcome: _Outcome,
              returns: np.ndarray, is_trial: np.ndarray, next_day: np.ndarray, u: _RoundUniforms) -> _Plan:
    """Plan of the next period: mostly the same; a few switch, trials convert, returners re-draw."""
    redraw = returns | is_trial | (u.plan_switch < PLAN_SWITCH)
    method = np.where(redraw, plans.method(members.wave[active], u.new_method), period.method)
    auto = np.where(redraw, plans.auto(method, members.loyalty[active], u.new_auto), period.auto)
    auto = np.where(outcome.cancel & ~outcome.churn, u.cancelled_stay_auto < CANCELLED_STAY_AUTO, auto)
    auto = auto | (u.auto_switch_on < AUTO_SWITCH_ON)
    new_days, new_price = plans.plan(auto, u.new_plan)
    keep = ~redraw & (auto == period.auto)
    days = np.where(keep, period.days, new_days)
    price, paid = plans.pay(days, np.where(keep, period.price, new_price), next_day, u.discount, u.discount_size)
    return _Plan(method, auto, days, price, paid)


def decision_day(period: _Periods, outcome: _Outcome) -> np.ndarray:
    """The earliest day the decision can show. A manual payer (or one who already cancelled)
    renews by hand, at most EARLIEST_RENEWAL days before the expiry; an auto-renew member may
    switch auto-renew off from the start of the expiry month (late_cancellations) or renew
    automatically up to 3 days before it. A return comes after the 30-day window."""
    by_hand = ~period.auto | outcome.cancel
    late_cancel = np.maximum(period.txn_day + 1, _month_start(period.expire))
    auto_renewal = period.expire - (len(AUTO_RENEW_LEAD_P) - 1)
    return np.where(by_hand, outcome.expire_eff - EARLIEST_RENEWAL, np.minimum(late_cancel, auto_renewal))


def counterfactual_p(effects: Effects, logit: np.ndarray, period: _Periods, members: Members, active: np.ndarray,
                     sat_now: np.ndarray, outcome: _Outcome) -> list[np.ndarray]:
    """The true churn probability of each decision under each COUNTERFACTUALS action."""
    engagement = members.act[active] - ACT_MEAN + sat_now
    n = len(active)
    return [_sigmoid(logit + effect_logit(effects, np.full(n, kind), np.full(n, pct), ~period.auto, outcome.cancel,
                                          engagement, members.price_sens[active]))
            for kind, pct in COUNTERFACTUALS.values()]


def treatment_shift(book: TreatmentBook, effects: Effects, period: _Periods, members: Members, active: np.ndarray,
                    sat_now: np.ndarray, outcome: _Outcome) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(action kind, discount_pct, logit shift) of each decision: the treatment booked for the
    member's expiry as the system saw it, acting only when it came before the decision showed."""
    kind, discount, shift = np.full(len(active), NONE), np.zeros(len(active), dtype=np.int64), np.zeros(len(active))
    at = book.lookup(active, outcome.expire_eff)
    hit = at >= 0
    if hit.any():
        kind[hit], discount[hit] = book.kind[at[hit]], book.discount_pct[at[hit]]
        rows = hit.nonzero()[0]
        rows = rows[book.week_day[at[rows]] <= decision_day(period, outcome)[rows]]   # in time
        engagement = members.act[active[rows]] - ACT_MEAN + sat_now[rows]
        shift[rows] = effect_logit(effects, kind[rows], discount[rows], ~period.auto[rows], outcome.cancel[rows],
                                   engagement, members.price_sens[active[rows]])
    return kind, discount, shift


def run_round(streams: _Streams, members: Members, plans: _Plans, current: _Periods, active: np.ndarray,
              scenarios: dict[str, int], decisions_from: dict[str, int], record: _Record,
              book: TreatmentBook, effects: Effects) -> tuple[np.ndarray, np.ndarray]:
    """Close the current period of the `active` members and open the next one of those who renew
    or return; returns who opened one and the day it opened."""
    u, z = streams.uniforms(_RoundUniforms, active), streams.normals(_RoundNormals, active)
    period = current.take(active)
    sat_before = period.satisfaction
    sat_now = SAT_RHO * sat_before + SAT_SD * z.satisfaction_step
    is_trial = (period.days == cat.TRIAL_DAYS) & (period.price == 0)

    outcome = early_cancellations(period, members, active, sat_now, u, scenarios)
    logit = churn_logit(period, members, active, sat_before, sat_now, outcome.cancel, is_trial, z.churn_noise)
    logit = scenario_churn_shift(logit, period, members, active, outcome.expire_eff, decisions_from)
    kind, discount, shift = treatment_shift(book, effects, period, members, active, sat_now, outcome)
    p_untreated = _sigmoid(logit)
    outcome.p = _sigmoid(logit + shift)      # + 0.0 where untreated: the same bits as p_untreated
    outcome.churn = u.churn < outcome.p
    what_if = counterfactual_p(effects, logit, period, members, active, sat_now, outcome)
    late_cancellations(period, outcome, u)
    record.decisions.append((active, period.txn_day, np.where(outcome.cancel, outcome.cancel_day, -1),
                             period.expire, outcome.expire_eff, outcome.p, outcome.churn, kind, discount,
                             p_untreated, *what_if))
    record.periods.append((active, period.cover_start, outcome.expire_eff, period.expire, sat_before, sat_now))
    cancelled = outcome.cancel.nonzero()[0]     # only auto-renew members cancel: rows keep is_auto_renew 1
    record.transactions(active[cancelled], period.plan.take(cancelled), outcome.cancel_day[cancelled],
                        outcome.expire_eff[cancelled], is_cancel=1)

    returns, next_day = next_transaction_days(period, outcome, u)
    plan = next_plan(plans, period, members, active, outcome, returns, is_trial, next_day, u)
    # coverage never runs backwards (an expiry pulled before an earlier period's end)
    cover_start = np.maximum(np.maximum(outcome.expire_eff, next_day), period.cover_start)
    expire = cover_start + plan.days
    opens = ~outcome.churn | returns
    rows = opens.nonzero()[0]
    opened = plan.take(rows)
    record.transactions(active[rows], opened, next_day[rows], expire[rows], is_cancel=0)
    current.open(active[rows], opened, next_day[rows], cover_start[rows], expire[rows])
    current.satisfaction[active] = np.where(returns, SAT_STATIONARY_SD * z.returner_satisfaction, sat_now)
    return opens, next_day


def member_blocks(n_initial: int, month_days: np.ndarray, scenarios: dict[str, int]) -> tuple[int, int]:
    """(regular, campaign-wave) member counts: fixed by the parameters, whatever happens."""
    regular, wave_counts = sign_ups(n_initial, month_days, scenarios)
    return n_initial + round(n_initial * DORMANT_SHARE) + int(regular.sum()), int(wave_counts.sum())


def simulate(rng_regular: np.random.Generator, rng_wave: np.random.Generator, n_initial: int,
             month_days: np.ndarray, scenarios: dict[str, int], book: TreatmentBook | None = None,
             effects: Effects = DEFAULT_EFFECTS) -> History:
    """Run the world from the first to the last day of the horizon; `book` holds the treatments
    the members received (each acts on the decision of the expiry it was booked for)."""
    first_day, last_day = int(month_days[0]), int(month_days[-1]) - 1
    regular, wave_counts = sign_ups(n_initial, month_days, scenarios)
    n_dormant = round(n_initial * DORMANT_SHARE)
    streams = _Streams(rng_regular, rng_wave, *member_blocks(n_initial, month_days, scenarios))
    book = TreatmentBook.empty() if book is None else book
    members = make_members(streams, n_initial, n_dormant, month_days, regular, wave_counts, last_day)
    plans = _Plans(scenarios.get("price_rise"))
    # a scenario acts on decisions whose consequences (renewals) are all dated on or after its start
    decisions_from = {name: day + EARLIEST_RENEWAL for name, day in scenarios.items()}
    current = first_periods(streams, members, plans, first_day)

    record = _Record()
    new = members.new
    record.transactions(np.nonzero(new)[0], current.plan.take(new), current.txn_day[new], current.expire[new],
                        is_cancel=0)
    pending = (current.txn_day <= last_day) & ~members.dormant
    while pending.any():
        active = np.nonzero(pending)[0]
        opens, next_day = run_round(streams, members, plans, current, active, scenarios, decisions_from, record,
                                    book, effects)
        pending[active] = opens & (next_day <= last_day)
    return record.history(members)


def _stack(parts: list[tuple], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-round tuples of columns -> one array per column."""
    return {name: np.concatenate(col) for name, col in zip(names, zip(*parts))}
