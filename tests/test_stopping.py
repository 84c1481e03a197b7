"""Stopping rules fire (with a reason) exactly when their condition holds."""

from __future__ import annotations

import numpy as np
import pytest

from learners import SampledPosterior
from learners.stopping import (
    AccurateRatio,
    BudgetSpent,
    HeldOutPlateau,
    StoppingRule,
    StoppingState,
    UncertaintyBelow,
    WallTime,
    first_to_fire,
)


def pool(sd: np.ndarray, spread: float = 1.0) -> SampledPosterior:
    """Two members around a mean with std ``spread``: member sd = ``sd`` exactly."""
    mean = np.linspace(-1, 1, len(sd))
    mean = mean / mean.std() * spread
    half = sd / np.sqrt(2.0)  # var(ddof=1) of (m - h, m + h) is 2 h^2
    return SampledPosterior(np.stack([mean - half, mean + half]))


def test_budget_spent():
    rule = BudgetSpent()
    assert isinstance(rule, StoppingRule)
    state = StoppingState(round=3, n_simulations={"fine": 40}, budget={"fine": 48, "md": None})
    assert rule.check(state) is None
    state.n_simulations["fine"] = 48
    assert "48 of 48 fine" in rule.check(state)
    assert BudgetSpent(scales=["other"]).check(state) is None


def test_wall_time():
    assert WallTime(60).check(StoppingState(round=0, elapsed_seconds=59)) is None
    assert "wall time" in WallTime(60).check(StoppingState(round=0, elapsed_seconds=61))
    with pytest.raises(ValueError, match="seconds"):
        WallTime(0)


def test_uncertainty_below_relative_and_absolute():
    state = StoppingState(round=1, posterior=pool(np.full(50, 0.04)))
    assert "uncertainty below" in UncertaintyBelow().check(state)  # 0.04 < 0.05 * 1.0
    state.posterior = pool(np.r_[np.full(49, 0.04), 0.5])
    assert UncertaintyBelow().check(state) is None  # the max is 0.5
    assert UncertaintyBelow(quantile=0.9).check(state) is not None
    assert UncertaintyBelow(absolute=0.01, quantile=0.9).check(state) is None
    assert UncertaintyBelow().check(StoppingState(round=0)) is None  # no model yet


def test_accurate_ratio():
    sd = np.r_[np.full(96, 0.01), np.full(4, 1.0)]
    state = StoppingState(round=2, posterior=pool(sd))
    assert "accurate ratio 0.960" in AccurateRatio(ratio=0.95).check(state)
    assert AccurateRatio(ratio=0.99).check(state) is None
    assert AccurateRatio(lower=0.001).check(state) is None
    with pytest.raises(ValueError, match="ratio"):
        AccurateRatio(ratio=1.5)


def test_held_out_plateau():
    rule = HeldOutPlateau(patience=2, min_improvement=0.1)
    assert rule.check(StoppingState(round=1, heldout_rmse=[5.0, 4.9])) is None  # too short
    assert rule.check(StoppingState(round=3, heldout_rmse=[5.0, 3.0, 2.0, 1.0])) is None
    fired = rule.check(StoppingState(round=4, heldout_rmse=[5.0, 3.0, 2.0, 1.95, 1.9]))
    assert fired is not None and "plateau" in fired
    with pytest.raises(ValueError, match="patience"):
        HeldOutPlateau(patience=0)


def test_first_to_fire_keeps_order():
    state = StoppingState(round=5, n_simulations={"fine": 10}, budget={"fine": 10},
                          elapsed_seconds=100.0)
    rules = [WallTime(1000), BudgetSpent(), WallTime(50)]
    rule, reason = first_to_fire(rules, state)
    assert rule is rules[1] and "budget" in reason
    assert first_to_fire([WallTime(1000)], state) is None
