"""Stopping rules: when is a campaign done?

A rule looks at a :class:`StoppingState` (plain data the engine assembles after each
round) and answers ``check(state) -> str | None``: the reason, in words, when it fires,
else None. Nothing here imports the engine; :func:`first_to_fire` evaluates several rules
in order.

Rules: :class:`BudgetSpent`, :class:`WallTime`, :class:`UncertaintyBelow` (predicted
uncertainty over the candidate pool), :class:`AccurateRatio` (DP-GEN's converged
criterion), :class:`HeldOutPlateau` (held-out error stopped improving).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from learners.posterior import Posterior

__all__ = [
    "AccurateRatio",
    "BudgetSpent",
    "HeldOutPlateau",
    "StoppingRule",
    "StoppingState",
    "UncertaintyBelow",
    "WallTime",
    "first_to_fire",
]


@dataclass
class StoppingState:
    """What the rules may look at after a round.

    Attributes:
        round: index of the round just completed (0-based).
        n_simulations: committed simulations per scale name.
        budget: simulation budget per scale name (None or missing = unlimited).
        posterior: the current surrogate's posterior over the candidate pool (the source
            scale's rows not yet promoted), or None before the first fit.
        heldout_rmse: one value per round so far: RMSE of the model of that round on the
            fine results it chose, measured before training on them (prospective error).
        elapsed_seconds: wall time since the campaign started.
    """

    round: int
    n_simulations: dict[str, int] = field(default_factory=dict)
    budget: dict[str, int | None] = field(default_factory=dict)
    posterior: Posterior | None = None
    heldout_rmse: list[float] = field(default_factory=list)
    elapsed_seconds: float = 0.0


@runtime_checkable
class StoppingRule(Protocol):
    """``check(state)`` returns the reason (one line) when the campaign should stop."""

    def check(self, state: StoppingState) -> str | None: ...


def first_to_fire(
    rules: Sequence[StoppingRule], state: StoppingState
) -> tuple[StoppingRule, str] | None:
    """The first rule (in order) that fires and its reason, or None."""
    for rule in rules:
        reason = rule.check(state)
        if reason is not None:
            return rule, reason
    return None


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return value


def _fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return value


class BudgetSpent:
    """Fires when any scale with a budget has used it (``n_simulations >= budget``).

    Args:
        scales: only these scale names (None: every scale in ``state.budget``).
    """

    def __init__(self, scales: Sequence[str] | None = None):
        self.scales = None if scales is None else tuple(scales)

    def check(self, state: StoppingState) -> str | None:
        """Reason naming the scale and counts, or None."""
        for scale, budget in state.budget.items():
            if budget is None or (self.scales is not None and scale not in self.scales):
                continue
            done = int(state.n_simulations.get(scale, 0))
            if done >= budget:
                return f"budget spent: {done} of {budget} {scale} simulations"
        return None

    def __repr__(self) -> str:
        return f"BudgetSpent(scales={self.scales!r})"


class WallTime:
    """Fires once ``elapsed_seconds >= seconds``."""

    def __init__(self, seconds: float):
        self.seconds = _positive("seconds", seconds)

    def check(self, state: StoppingState) -> str | None:
        """Reason with the elapsed time, or None."""
        if state.elapsed_seconds >= self.seconds:
            return f"wall time {state.elapsed_seconds:.0f} s >= limit {self.seconds:.0f} s"
        return None

    def __repr__(self) -> str:
        return f"WallTime({self.seconds!r})"


def _spread(posterior: Posterior) -> float:
    """Spread of the predicted values over the pool: the scale relative thresholds use."""
    return float(np.std(posterior.mean))


class UncertaintyBelow:
    """Fires when predicted uncertainty over the candidate pool is below a threshold.

    The statistic is a quantile of the posterior standard deviation (latent function, no
    noise) over the pool: ``quantile=1.0`` is the largest, 0.9 ignores the 10% most
    uncertain candidates. The threshold is in y units (``absolute``), or, by default, a
    fraction ``relative`` of the spread (standard deviation) of the predicted mean over
    the pool, so no problem-specific number is needed.

    Args:
        relative: threshold as a fraction of the spread of the predicted values.
        absolute: threshold in y units (overrides ``relative``).
        quantile: in (0, 1].
    """

    def __init__(self, relative: float = 0.05, absolute: float | None = None,
                 quantile: float = 1.0):
        self.relative = _positive("relative", relative)
        self.absolute = None if absolute is None else _positive("absolute", absolute)
        self.quantile = _fraction("quantile", quantile)

    def threshold(self, posterior: Posterior) -> float:
        """The threshold in y units for this posterior."""
        return self.absolute if self.absolute is not None else self.relative * _spread(posterior)

    def check(self, state: StoppingState) -> str | None:
        """Reason with the statistic and threshold, or None (also without a posterior)."""
        posterior = state.posterior
        if posterior is None or posterior.n == 0:
            return None
        statistic = float(np.quantile(np.sqrt(posterior.variance), self.quantile))
        threshold = self.threshold(posterior)
        if statistic < threshold:
            return (f"uncertainty below threshold: {self.quantile:.0%} quantile of the pool's "
                    f"predictive sd {statistic:.4g} < {threshold:.4g}")
        return None

    def __repr__(self) -> str:
        return (f"UncertaintyBelow(relative={self.relative!r}, absolute={self.absolute!r}, "
                f"quantile={self.quantile!r})")


class AccurateRatio:
    """DP-GEN's convergence test: the share of "accurate" candidates is high enough.

    DP-GEN calls a candidate accurate when its model deviation is below the trust
    window's lower bound, and stops exploring when the accurate ratio exceeds e.g. 0.95.
    Here the deviation is the posterior standard deviation over the candidate pool; the
    lower bound is ``lower`` in y units or, by default, ``relative`` times the spread of
    the predicted mean over the pool.

    Args:
        ratio: required accurate share, in (0, 1].
        lower: deviation bound in y units (overrides ``relative``).
        relative: bound as a fraction of the spread of the predicted values.
    """

    def __init__(self, ratio: float = 0.95, lower: float | None = None, relative: float = 0.05):
        self.ratio = _fraction("ratio", ratio)
        self.lower = None if lower is None else _positive("lower", lower)
        self.relative = _positive("relative", relative)

    def accurate_ratio(self, posterior: Posterior) -> tuple[float, float]:
        """(share of candidates with deviation below the bound, the bound in y units)."""
        lower = self.lower if self.lower is not None else self.relative * _spread(posterior)
        return float(np.mean(np.sqrt(posterior.variance) < lower)), lower

    def check(self, state: StoppingState) -> str | None:
        """Reason with the accurate ratio, or None (also without a posterior)."""
        posterior = state.posterior
        if posterior is None or posterior.n == 0:
            return None
        share, lower = self.accurate_ratio(posterior)
        if share >= self.ratio:
            return (f"accurate ratio {share:.3f} >= {self.ratio:.3f} "
                    f"(deviation < {lower:.4g})")
        return None

    def __repr__(self) -> str:
        return f"AccurateRatio(ratio={self.ratio!r}, lower={self.lower!r})"


class HeldOutPlateau:
    """Fires when the held-out (prospective) RMSE stopped improving.

    With history ``e_0 .. e_t``, it fires when the best of the last ``patience`` values is
    not below ``(1 - min_improvement)`` times the best before them; it needs at least
    ``patience + 1`` values.

    Args:
        patience: rounds without enough improvement, >= 1.
        min_improvement: relative improvement that counts, in [0, 1).
    """

    def __init__(self, patience: int = 3, min_improvement: float = 0.05):
        if int(patience) != patience or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if not 0.0 <= min_improvement < 1.0:
            raise ValueError(f"min_improvement must lie in [0, 1), got {min_improvement!r}")
        self.patience = int(patience)
        self.min_improvement = float(min_improvement)

    def check(self, state: StoppingState) -> str | None:
        """Reason with the before/after best errors, or None."""
        history = [float(e) for e in state.heldout_rmse if e is not None and math.isfinite(e)]
        if len(history) <= self.patience:
            return None
        before = min(history[: -self.patience])
        recent = min(history[-self.patience:])
        if recent >= (1.0 - self.min_improvement) * before:
            return (f"held-out RMSE plateau: best of the last {self.patience} rounds "
                    f"{recent:.4g} vs {before:.4g} before")
        return None

    def __repr__(self) -> str:
        return (f"HeldOutPlateau(patience={self.patience!r}, "
                f"min_improvement={self.min_improvement!r})")
