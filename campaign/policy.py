"""The busy policy of async mode, as pure functions of the model slot and the slots.

Owns: how many rows a promotion should choose now, when a refit is due, how many
attempts each scale keeps in flight, and how many of those slots are free (one at a
time until the scale's first result has been checked against the spec). No Parsl, no
threads, no store: each is tested on a hand-made state (tests/test_steering.py).
"""

from __future__ import annotations

from campaign.spec import CampaignSpec
from campaign.state import CampaignState, PromotionState

IN_FLIGHT_PER_WORKER = 4  # default max_in_flight: queued work hides the round trip (noop
# tasks, 2 HTEX workers: 203 tasks/s at 2 per worker, 380 at 4, raw Parsl 412; noisy)
PROMOTED_PER_WORKER = 2  # a promoted scale: each worker's next pick waits there, no more
# (a pick made later is made by a newer posterior)
# Before its first model, a promotion spends at most this share of its target's task
# budget (and at least its seed design) on the space-filling design: with simulations
# much faster than a fit, filling every free slot would spend the budget unsteered
DESIGN_SHARE = 0.5
# A promoted scale sends one attempt until its first result is checked against the spec,
# for at most this long (s) after it asked: a misspelled quantity then costs one
# simulation when they are short, and idle workers cost at most this when they are long
FIRST_RESULT_WAIT = 60.0


def picks_wanted(held: PromotionState, source_done: int, source_rows: int,
                 source_walkers: int, free: int, left: int | None,
                 budget: int | None = None) -> int:
    """How many source rows the promotion should ask the model thread for now (0:
    none). A pure function of the model slot and the target's free slots and budget:
    the seed design once the pool has rows from every walker and a slot is free;
    afterwards a batch whenever fewer than a batch of picks wait to go out
    (``held.ready``), so the next batch is chosen while the last one runs (before the
    first model by the space-filling design, up to ``DESIGN_SHARE`` of ``budget``)."""
    promotion = held.promotion
    if held.selecting or source_rows == 0 or held.exhausted_at == source_rows:
        return 0
    if left is not None:
        left -= len(held.ready)
    if (left is not None and left <= 0) or len(held.ready) >= promotion.batch_size:
        return 0
    if not held.fitted and not (held.pending or held.train_rows or held.fitting
                                or held.ready):
        if free <= 0 or source_done < source_walkers or (
                source_rows < promotion.seed_design_size):
            return 0  # from a pool every walker has added to, not the first rows to arrive
        k = promotion.seed_design_size
    else:
        k = promotion.batch_size
        if not held.fitted and budget is not None:
            allowed = max(promotion.seed_design_size, int(DESIGN_SHARE * budget))
            k = min(k, max(0, allowed - len(held.promoted)))
    return k if left is None else min(k, left)


def fit_due(held: PromotionState) -> bool:
    """A refit is due: ``retrain_every`` new results (the first: the seed design's),
    or new results and nothing of the target still pending."""
    if held.fitting or held.installing:  # the next fit starts from the installed model
        return False
    new = len(held.train_rows) - held.trained_on
    if new <= 0:
        return False
    wanted = held.promotion.retrain_after
    if not held.fitted:
        wanted = min(wanted, held.promotion.seed_design_size)
    return new >= wanted or not held.pending


def free_slots(limit: int, in_flight: int, checked: bool, waited: float = 0.0) -> int:
    """Attempts a scale may submit now: its in-flight ``limit`` less those in flight.
    Until one of its results has been ``checked`` against the spec (the promotion's
    quantity among its outputs, one number per row, the scale's columns), one attempt
    at a time, for at most :data:`FIRST_RESULT_WAIT` seconds ``waited`` since the scale
    first asked: a mistake in the spec (a misspelled ``quantity``) then costs one
    simulation, not a batch, when simulations are shorter than that; with longer ones
    the workers wait no longer (``campaign validate`` catches it before a run)."""
    held_back = not checked and waited < FIRST_RESULT_WAIT
    return max(0, (min(limit, 1) if held_back else limit) - in_flight)


def in_flight_limits(spec: CampaignSpec, state: CampaignState,
                     workers: dict[str, int]) -> dict[str, int]:
    """Attempts each scale keeps submitted: its ``max_in_flight``, else a few per worker."""
    return {scale.name: scale.max_in_flight or workers[scale.name] * (
        PROMOTED_PER_WORKER if state.promotion_into(scale.name) is not None
        else IN_FLIGHT_PER_WORKER) for scale in spec.scales}
