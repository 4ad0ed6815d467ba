"""Categorical catalogue and effect sizes of the synthetic world.

Figures are chosen so the generated files land near the published statistics in
shared/kkbox_reference.md; the logit effects give the churn ordering seen there
(payment method 41 low, 38/32/35 high; channel 7 low, 9/3/4 higher; young members
churn more; manual payers and cancellers churn most).
"""

import numpy as np

# payment methods: share among established payers, share among a campaign wave,
# probability the plan is on auto-renew, and the churn-logit effect
METHODS = np.array([41, 40, 36, 39, 37, 38, 34, 32, 35, 33, 31, 30, 29])
METHOD_P = np.array([.55, .06, .06, .08, .04, .05, .03, .03, .02, .02, .02, .02, .02])
METHOD_P_WAVE = np.array([.05, .10, .22, .12, .04, .12, .16, .05, .05, .05, .02, .01, .01])
METHOD_AUTO = np.array([.98, .92, .92, .95, .85, .10, .30, .05, .05, .30, .50, .50, .70])
METHOD_LOGIT = np.array([-0.5, 0.0, 0.0, -0.2, 0.2, 1.0, 0.3, 1.3, 1.5, 0.3, 0.3, 0.3, 0.0])
# the high-churn methods, on which a cancellation is also a stronger signal of leaving
RISKY_METHOD = np.isin(METHODS, [38, 32, 35])

# (payment_plan_days, plan_list_price) offered to auto-renew and to manual payers
AUTO_PLANS = np.array([(30, 149), (30, 99), (30, 129), (30, 0), (31, 149), (31, 180)])
AUTO_PLAN_P = np.array([.40, .28, .19, .04, .06, .03])
MANUAL_PLANS = np.array([(30, 149), (30, 99), (30, 129), (30, 0), (31, 180), (90, 480), (90, 447),
                         (180, 894), (180, 536), (195, 894), (410, 1788), (410, 1599), (100, 500),
                         (10, 50)])
MANUAL_PLAN_P = np.array([.36, .22, .14, .03, .02, .05, .02, .05, .02, .03, .04, .02, .02, .02])
TRIAL_DAYS = 7

# price_rise scenario: new list price of each monthly price point (new prices are not old ones,
# so a price rises once)
PRICE_RISE = {99: 119, 129: 159, 149: 179, 180: 199}

# sign-up channels (registered_via): share before / in a campaign wave, churn-logit effect
CHANNELS = np.array([7, 9, 3, 4, 13])
CHANNEL_P = np.array([.62, .23, .10, .046, .004])
CHANNEL_P_NEW = np.array([.58, .25, .11, .056, .004])
CHANNEL_P_WAVE = np.array([.02, .30, .40, .28, .00])
CHANNEL_LOGIT = np.array([-0.5, 0.2, 0.6, 1.1, 0.4])
CHANNEL_LOYALTY = np.array([0.2, 0.0, -0.1, -0.2, 0.0])

CITIES = np.array([1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 21, 22])
CITY_P_FILLED = np.array([.30, .03, .06, .08, .06, .04, .02, .02, .02, .03, .14, .05, .07, .02, .03, .03, .10])
CITY_P_FILLED = CITY_P_FILLED / CITY_P_FILLED.sum()

# share of members who filled in their profile (gender, age, city)
PROFILE_FILLED = 0.36
PROFILE_FILLED_WAVE = 0.50
HAS_MEMBERS_ROW = 0.88          # ~12 % of members never appear in the members file
FUTURE_REGISTRATION = 0.004     # registration_init_time recorded after the data end

# daily listening: play category shares (num_25, num_50, num_75, num_985, num_100) and the
# share of a song's length each category stands for
PLAY_SHARES = np.array([.16, .05, .04, .06, .69])
PLAY_LENGTH = np.array([0.12, 0.37, 0.62, 0.88, 1.0])
SENTINEL_RATE = 3e-5
SENTINEL = 9.223372036854775e15


def age_logit(age: np.ndarray) -> np.ndarray:
    """Young members churn more (under 18 ~ 19 %, 18-25 ~ 11.5 %, 25-35 ~ 7 %)."""
    return np.select([age < 18, age < 25, age < 35], [0.9, 0.45, 0.0], -0.2)
