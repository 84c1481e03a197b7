"""Budgets and stop rules as functions of (spec, state, clock).

Owns: how many tasks a scale may still record, whether a budget ends the run, whether
nothing can progress, whether the run failed, and how much of its budget is used. Each
function reads only its arguments (no store, no ledger, no Parsl), so each is tested
on a hand-made state.
"""

from __future__ import annotations

from campaign.spec import CampaignSpec
from campaign.state import CampaignState, WalkerState


def tasks_left(spec: CampaignSpec, state: CampaignState, scale: str) -> int | None:
    """Tasks ``scale`` may still record under the task and (async) round budgets."""
    limits = []
    budget = spec.budget
    if scale in budget.tasks:
        limits.append(budget.tasks[scale])
    promotion_state = state.promotion_into(scale)
    if spec.mode == "async" and budget.rounds is not None and promotion_state is not None:
        limits.append(budget.rounds * promotion_state.promotion.batch_size)
    if not limits:
        return None
    return max(0, min(limits) - state.scales[scale].tasks_recorded)


def walker_may_run(spec: CampaignSpec, walker: WalkerState) -> bool:
    """A walker runs another segment unless it ended or used the round budget."""
    rounds = spec.budget.rounds
    return walker.ended is None and (rounds is None or walker.segments < rounds)


def ending_scales(spec: CampaignSpec, state: CampaignState) -> list[str]:
    """The scales whose task budgets end the run: promotion targets, or without
    promotions the walker scales."""
    return [p.target for p in spec.promotions] or [
        name for name, held in state.scales.items() if held.walkers]


def scale_spent(spec: CampaignSpec, state: CampaignState, name: str) -> bool:
    """No more tasks of ``name`` may be recorded (its walkers, if any, are done)."""
    if tasks_left(spec, state, name) == 0:
        return True
    held = state.scales[name]
    if held.walkers and spec.mode == "async" and spec.budget.rounds is not None:
        return not any(walker_may_run(spec, w) for w in held.walkers)
    return False


def core_seconds(state: CampaignState) -> float:
    return sum(held.core_seconds for held in state.scales.values())


def budget_reason(spec: CampaignSpec, state: CampaignState, elapsed: float) -> str:
    """Why the budget ends the campaign now ('' if it does not)."""
    budget = spec.budget
    if budget.wall_time is not None and elapsed >= budget.wall_time:
        return f"wall-time budget reached ({budget.wall_time:g} s)"
    if budget.core_seconds is not None:
        spent = core_seconds(state)
        if spent >= budget.core_seconds:
            return f"core-seconds budget reached ({spent:.1f} of {budget.core_seconds:g})"
    ending = ending_scales(spec, state)  # must all be spent
    if not ending or not all(scale_spent(spec, state, name) for name in ending):
        return ""
    if all(name in budget.tasks and tasks_left(spec, state, name) == 0 for name in ending):
        spent_text = ", ".join(f"{name}={budget.tasks[name]}" for name in ending)
        return f"task budget spent ({spent_text})"
    if budget.rounds is not None and spec.mode == "async":
        return f"round budget reached ({budget.rounds} rounds)"
    return ""


def stuck_reason(state: CampaignState) -> str:
    """Why nothing can progress ('' if something still can)."""
    if state.status.failed_reason:
        return state.status.failed_reason
    for name, held in state.scales.items():
        if held.walkers and all(w.ended == "quarantined" for w in held.walkers):
            return f"every walker of scale '{name}' was quarantined"
    return ""


def quarantine_reason(state: CampaignState) -> str:
    """At the end: a promotion that committed no results, or a scale that lost most
    of its tasks to quarantine, makes the run a failure, whatever ended it."""
    for promotion_state in state.promotions:
        held = state.scales[promotion_state.promotion.target]
        lost = held.tasks.get("quarantined", 0)
        if lost and not held.tasks.get("done", 0):
            return (f"promotion {promotion_state.name} committed no results (all {lost} "
                    f"tasks of scale '{held.scale.name}' were quarantined)")
    for name, held in state.scales.items():
        lost, done = held.tasks.get("quarantined", 0), held.tasks.get("done", 0)
        if lost > done:
            return f"most tasks of scale '{name}' were quarantined ({lost} of {lost + done})"
    return ""


def budget_used(spec: CampaignSpec, state: CampaignState,
                elapsed: float) -> tuple[float, str] | None:
    """The most used of the budgets that end the run: (fraction, which)."""
    budget = spec.budget
    used: list[tuple[float, str]] = []
    for name in ending_scales(spec, state):
        if name in budget.tasks:
            done = state.scales[name].tasks_recorded
            used.append((min(1.0, done / budget.tasks[name]),
                         f"{name} {done}/{budget.tasks[name]} tasks"))
    if budget.wall_time is not None:
        used.append((min(1.0, elapsed / budget.wall_time),
                     f"wall time of {budget.wall_time:g} s"))
    if budget.core_seconds is not None:
        spent = core_seconds(state)
        used.append((min(1.0, spent / budget.core_seconds),
                     f"{spent:.0f} of {budget.core_seconds:g} core-seconds"))
    return max(used) if used else None
