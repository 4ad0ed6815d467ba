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
month on, and the months before it are identical to the world without it.
"""

from dataclasses import dataclass

import numpy as np

from churn_assets.synthetic import catalog as cat

NEW_MEMBER_RATE = 0.04          # new sign-ups per month, share of the initial subscribers
DORMANT_SHARE = 0.5             # lapsed members in the members file without transactions (same unit)
WAVE_FIRST, WAVE_LATER = 0.30, 0.05   # channel_shift campaign sign-ups (same unit)
WAVE_LOYALTY = 0.4              # the campaign recruits keen listeners: their churn stays plausible
TRIAL_SHARE, TRIAL_SHARE_WAVE = 0.20, 0.40
SAT_RHO, SAT_SD = 0.92, 0.25    # engagement random walk per period (persistent, small steps)
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
W_CANCEL, W_CANCEL_RISKY = 3.0, 1.0
W_TRIAL, W_TRIAL_YOUNG = 1.3, 1.2               # young: true age < 25
W_DISCOUNT_SHORT, W_DISCOUNT_LONG = 0.8, 0.1
LOYALTY_AUTO = 1.2              # logit effect of loyalty on choosing auto-renew
LATE_CANCEL_SHARE = 0.5         # auto-renew churners who cancel in the expiry month
CHURN_NOISE_SD = 0.25           # the part of the decision no model can see (mood of the day)
EARLIEST_RENEWAL = 7            # renewals are dated at most this many days before the expiry
REGISTRATION_FLOOR = np.datetime64("2004-03-26").astype(np.int64)


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
    # expire_eff (after a cancellation), p (true churn probability), churn (the decision)
    decisions: dict[str, np.ndarray]
    # listening coverage: mem, start, end (exclusive, after cancellations), planned_end, and the
    # engagement at the start and the planned end of the period
    periods: dict[str, np.ndarray]


class _Streams:
    """Uniform and normal blocks of shape (k, members): regular then wave members."""

    def __init__(self, regular: np.random.Generator, wave: np.random.Generator, n_regular: int, n_wave: int):
        self.gens, self.sizes = (regular, wave), (n_regular, n_wave)

    def u(self, k: int) -> np.ndarray:
        return np.concatenate([g.random((k, n)) for g, n in zip(self.gens, self.sizes)], axis=1)

    def z(self, k: int) -> np.ndarray:
        return np.concatenate([g.standard_normal((k, n)) for g, n in zip(self.gens, self.sizes)], axis=1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _pick(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draw by inverse CDF: index into `p` for each uniform in `u`."""
    return np.minimum(np.searchsorted(np.cumsum(p) / p.sum(), u, side="right"), len(p) - 1)


def _ints(lo, hi, u: np.ndarray) -> np.ndarray:
    """Integers in [lo, hi) from uniforms."""
    return (lo + np.floor(u * (np.asarray(hi) - lo))).astype(np.int64)


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


def make_members(st: _Streams, n_initial: int, n_dormant: int, month_days: np.ndarray, regular: np.ndarray,
                 wave_counts: np.ndarray, data_end: int) -> Members:
    """Initial subscribers, dormant members, the sign-ups of every month, then the campaign wave."""
    starts, lengths = month_days[:-1], np.diff(month_days)
    month_of = np.concatenate([np.repeat(np.arange(len(starts)), regular),
                               np.repeat(np.arange(len(starts)), wave_counts)])
    n_old = n_initial + n_dormant
    n = n_old + len(month_of)
    wave = np.zeros(n, dtype=bool)
    wave[n_old + int(regular.sum()):] = True
    new = np.arange(n) >= n_old
    dormant = (np.arange(n) >= n_initial) & ~new
    u, z = st.u(16), st.z(8)

    join = np.full(n, starts[0] - 1)
    join[new] = starts[month_of] + _ints(0, lengths[month_of], u[0, new])
    # registration: established members spread back to 2004, skewed recent; a few recorded in the future
    back = np.minimum(-np.where(dormant, 1500, 900) * np.log1p(-u[1]), starts[0] - REGISTRATION_FLOOR)
    reg = np.where(new, join, starts[0] - 1 - back.astype(np.int64))
    reg = np.where(u[2] < cat.FUTURE_REGISTRATION, data_end + 1 + _ints(0, 400, u[3]), reg)

    channel = np.select([wave, new], [_pick(cat.CHANNEL_P_WAVE, u[4]), _pick(cat.CHANNEL_P_NEW, u[4])],
                        _pick(cat.CHANNEL_P, u[4]))
    age = np.clip(np.round(np.where(wave, 21 + 5 * z[0], 29 + 9 * z[0])), 12, 75).astype(np.int64)
    filled = u[5] < np.where(wave, cat.PROFILE_FILLED_WAVE, cat.PROFILE_FILLED)
    gender = np.where(filled & (u[6] < 0.95), 1 + (u[7] < 0.5), 0)
    dirty = np.select([u[8] < 0.90, u[8] < 0.95], [0, -_ints(1, 50, u[9])], _ints(1000, 3000, u[9]))
    bd = np.where(filled & (u[10] < 0.92), age, dirty)
    city = np.where(filled, cat.CITIES[_pick(cat.CITY_P_FILLED, u[11])], 1)

    loyalty = z[1] + cat.CHANNEL_LOYALTY[channel] + WAVE_LOYALTY * wave
    return Members(
        join_day=join, reg_day=reg, has_row=u[12] < cat.HAS_MEMBERS_ROW, dormant=dormant, new=new, wave=wave,
        channel=channel, city=city, bd=bd, gender=gender, age=age, loyalty=loyalty,
        price_sens=0.5 * loyalty + 0.8 * z[2],
        act=ACT_MEAN + 0.9 * z[3] + 0.4 * loyalty,
        vol=np.exp(np.log(11) + 0.8 * z[4]),
        song_len=np.exp(np.log(235) + 0.12 * z[5]),
        unq_share=np.clip(0.8 + 0.12 * z[6], 0.3, 1.0),
        drop_hit=u[13] < 0.6,
        skip=np.clip(SKIP_AGE * cat.age_logit(age) + 0.03 * z[7], -0.1, 0.3),
    )


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
        a = cat.AUTO_PLANS[_pick(cat.AUTO_PLAN_P, u)]
        m = cat.MANUAL_PLANS[_pick(cat.MANUAL_PLAN_P, u)]
        return np.where(auto, a[:, 0], m[:, 0]), np.where(auto, a[:, 1], m[:, 1])

    def pay(self, days: np.ndarray, price: np.ndarray, day: np.ndarray, u: np.ndarray,
            u_frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Price rise on monthly plans dated after it, then discounts (paid == list on ~93 %)."""
        if self.rise_day is not None:
            price = np.where((day >= self.rise_day) & (days >= 30) & (days <= 31), self.rise_map[price], price)
        disc = np.round(price * (0.5 + 0.45 * u_frac))
        return price, np.where(u < 0.055, disc, np.where(u < 0.065, 0, price)).astype(np.int64)


def simulate(rng_regular: np.random.Generator, rng_wave: np.random.Generator, n_initial: int,
             month_days: np.ndarray, scenarios: dict[str, int]) -> History:
    """Run the world from the first to the last day of the horizon."""
    start, end = int(month_days[0]), int(month_days[-1]) - 1
    regular, wave_counts = sign_ups(n_initial, month_days, scenarios)
    n_dormant = round(n_initial * DORMANT_SHARE)
    st = _Streams(rng_regular, rng_wave, n_initial + n_dormant + int(regular.sum()), int(wave_counts.sum()))
    mem = make_members(st, n_initial, n_dormant, month_days, regular, wave_counts, end)
    plans = _Plans(scenarios.get("price_rise"))
    # a scenario acts on decisions whose consequences (renewals) are all dated on or after its start
    late = {k: v + EARLIEST_RENEWAL for k, v in scenarios.items()}

    # current period of every member
    u, z = st.u(9), st.z(1)
    method = plans.method(mem.wave, u[0])
    auto = plans.auto(method, mem.loyalty, u[1])
    days, price = plans.plan(auto, u[2])
    price, paid = plans.pay(days, price, mem.join_day, u[3], u[4])
    trial = mem.new & (u[5] < np.where(mem.wave, TRIAL_SHARE_WAVE, TRIAL_SHARE))
    days = np.where(trial, cat.TRIAL_DAYS, days)
    price = np.where(trial, 0, price)
    paid = np.where(trial, 0, paid)
    # established members are somewhere inside a period that ends after the start
    expire0 = start + np.floor(u[6] * days).astype(np.int64)
    lag = np.where(u[7] < 0.8, 0, _ints(1, 4, u[8]))
    t0 = np.where(mem.new, mem.join_day + lag, expire0 - days)
    cstart = t0.copy()
    expire = t0 + days
    first = mem.new.copy()
    sat = SAT_SD / np.sqrt(1 - SAT_RHO ** 2) * z[0]
    pending = (t0 <= end) & ~mem.dormant

    new = mem.new
    tx_parts: list[tuple] = [(np.nonzero(new)[0], method[new], days[new], price[new], paid[new],
                              auto[new], t0[new], expire[new], np.zeros(new.sum(), dtype=np.int64))]
    dec_parts: list[tuple] = []
    per_parts: list[tuple] = []

    while pending.any():
        i = np.nonzero(pending)[0]
        u, z = st.u(21)[:, i], st.z(3)[:, i]
        s0 = sat[i]
        s1 = SAT_RHO * s0 + SAT_SD * z[0]
        sat[i] = s1
        E, T0 = expire[i], t0[i]

        # an auto-renew member may cancel during the period, often pulling the expiry earlier.
        # Such a cancellation is dated before the expiry month (so it is known when that month's
        # churn is predicted) and raises the churn probability; cancellations inside the expiry
        # month are drawn below, as a consequence of the decision to leave
        month_start = E.astype("datetime64[D]").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        room = np.minimum(month_start, E) - T0 - 1
        c_day = T0 + 1 + np.floor(u[1] * np.maximum(room, 1)).astype(np.int64)
        zc = -3.0 - 0.5 * mem.loyalty[i] - 0.7 * s1
        if "engagement_drop" in scenarios:
            zc = zc + 0.6 * (mem.drop_hit[i] & (c_day - 3 >= scenarios["engagement_drop"]))
        cancel = auto[i] & (days[i] >= 7) & (room >= 1) & (u[0] < _sigmoid(zc))
        pulled = np.select([u[2] < 0.5, u[2] < 0.8], [E, c_day], c_day - _ints(1, 4, u[3]))
        E_eff = np.where(cancel, np.minimum(pulled, E), E)

        # the true churn probability at expiry
        is_trial = (days[i] == cat.TRIAL_DAYS) & (price[i] == 0)
        engagement = mem.act[i] - ACT_MEAN + s1
        manual = ~auto[i]
        short = days[i] <= 31
        zp = (CHURN_INTERCEPT - W_LOYALTY * mem.loyalty[i]
              - (W_ENGAGEMENT + W_ENGAGEMENT_MANUAL * manual) * engagement
              - (W_TREND + W_TREND_MANUAL * manual) * (s1 - s0)
              + 2.3 * manual + (W_CANCEL + W_CANCEL_RISKY * cat.RISKY_METHOD[method[i]]) * cancel
              + cat.METHOD_LOGIT[method[i]] + cat.CHANNEL_LOGIT[mem.channel[i]] + cat.age_logit(mem.age[i])
              + (W_TRIAL + W_TRIAL_YOUNG * (mem.age[i] < 25)) * is_trial - 0.3 * (days[i] >= 90)
              + np.where(short, W_DISCOUNT_SHORT, W_DISCOUNT_LONG) * (paid[i] < price[i]) + 0.5 * (paid[i] == 0)
              + 0.4 * first[i] + CHURN_NOISE_SD * z[2])
        if "engagement_drop" in scenarios:
            zp = zp + 0.6 * (mem.drop_hit[i] & (E_eff >= late["engagement_drop"]))
        if "price_rise" in scenarios:
            # concept drift: the coming monthly price rise hits the price-sensitive (often loyal) members
            hit = (E_eff >= late["price_rise"]) & (days[i] >= 30) & (days[i] <= 31) & (price[i] > 0)
            zp = zp + hit * (0.6 + 1.3 * mem.price_sens[i])
        p = _sigmoid(zp)
        churn = u[4] < p
        # leavers on auto-renew often switch it off in the expiry month (invisible at its start)
        l_day = np.maximum(T0 + 1, month_start) + np.floor(u[19] * (E - np.maximum(T0 + 1, month_start))).astype(np.int64)
        late_cancel = churn & auto[i] & ~cancel & (l_day < E) & (u[20] < LATE_CANCEL_SHARE)
        l_pulled = np.where(u[2] < 0.6, E, l_day)
        cancel = cancel | late_cancel
        c_day = np.where(late_cancel, l_day, c_day)
        E_eff = np.where(late_cancel, np.minimum(l_pulled, E), E_eff)

        dec_parts.append((i, T0, np.where(cancel, c_day, -1), E, E_eff, p, churn))
        per_parts.append((i, cstart[i], E_eff, E, s0, s1))
        ci = cancel.nonzero()[0]
        tx_parts.append((i[ci], method[i][ci], days[i][ci], price[i][ci], paid[i][ci], np.ones(len(ci), bool),
                         c_day[ci], E_eff[ci], np.ones(len(ci), dtype=np.int64)))

        # renewers: auto-renew on/just before expiry, manual payers around it (< 30 days late)
        renew = ~churn
        on_auto = auto[i] & ~cancel
        before = _pick(np.array([.55, .30, .10, .05]), u[5])
        gap = np.select([u[6] < 0.4, u[6] < 0.8],
                        [-_ints(1, EARLIEST_RENEWAL + 1, u[7]), _ints(0, 8, u[7])], _ints(8, 30, u[7]))
        lo = np.where(cancel, c_day + 1, T0 + 1)
        d_renew = np.maximum(np.where(on_auto, E - before, E_eff + gap), lo)
        # churners: some return later, after the 30-day window
        back = churn & (u[8] < RETURN_SHARE)
        d_back = E_eff + 30 + np.floor(np.log1p(-u[9]) / np.log1p(-1 / RETURN_MEAN_DAYS)).astype(np.int64)
        nxt = renew | back
        d = np.where(renew, d_renew, d_back)

        # plan of the next period: mostly the same; switches, trials converting, returns re-draw
        redraw = back | is_trial | (u[10] < 0.06)
        m2 = np.where(redraw, plans.method(mem.wave[i], u[11]), method[i])
        a2 = np.where(redraw, plans.auto(m2, mem.loyalty[i], u[12]), auto[i])
        a2 = np.where(cancel & renew, u[13] < 0.4, a2)          # cancelled renewers mostly go manual
        a2 = a2 | (u[14] < 0.04)
        new_days, new_price = plans.plan(a2, u[15])
        keep = ~redraw & (a2 == auto[i])
        d2 = np.where(keep, days[i], new_days)
        p2, paid2 = plans.pay(d2, np.where(keep, price[i], new_price), d, u[16], u[17])
        cs2 = np.maximum(np.maximum(E_eff, d), cstart[i])   # coverage never runs backwards (early pulls)
        e2 = cs2 + d2

        j = nxt.nonzero()[0]
        ii = i[j]
        tx_parts.append((ii, m2[j], d2[j], p2[j], paid2[j], a2[j], d[j], e2[j], np.zeros(len(j), dtype=np.int64)))
        method[ii], auto[ii], days[ii], price[ii], paid[ii] = m2[j], a2[j], d2[j], p2[j], paid2[j]
        t0[ii], cstart[ii], expire[ii] = d[j], cs2[j], e2[j]
        first[ii] = False
        sat[i] = np.where(back, SAT_SD / np.sqrt(1 - SAT_RHO ** 2) * z[1], sat[i])
        pending[i] = nxt & (d <= end)

    tx = _stack(tx_parts, ("mem", "payment_method_id", "payment_plan_days", "plan_list_price", "actual_amount_paid",
                           "is_auto_renew", "transaction_date", "membership_expire_date", "is_cancel"))
    tx["payment_method_id"] = cat.METHODS[tx["payment_method_id"]]
    tx["is_auto_renew"] = tx["is_auto_renew"].astype(np.int64)
    decisions = _stack(dec_parts, ("mem", "txn_day", "cancel_day", "expire", "expire_eff", "p", "churn"))
    periods = _stack(per_parts, ("mem", "start", "end", "planned_end", "sat0", "sat1"))
    return History(mem, tx, decisions, periods)


def _stack(parts: list[tuple], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-round tuples of columns -> one array per column."""
    return {name: np.concatenate(col) for name, col in zip(names, zip(*parts))}
