"""Async steering: events, not rounds; every worker busy by default.

Owns: the reactions of async mode and its loop. Each simulation executor keeps its
free slots filled: a walker's next segment goes out when its last returns; a free
slot of a promoted scale is filled as soon as it frees, by the newest posterior,
conditioned on every pending row (and on committed rows it has not seen, unless the
learner took them in at once through ``condition``); before the first model, by a
space-filling design over the pool. A fit starts on ``train`` when
``retrain_every`` new results are committed and runs while simulations go on. Every
pick records the model generation that chose it and its staleness (committed results
of the target that model had not seen) in the target's ``meta/model`` and
``meta/staleness``.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import numpy as np

from campaign import clock
from campaign.budget import (
    budget_reason,
    stuck_reason,
    tasks_left,
    walker_may_run,
)
from campaign.events import (
    FitReturned,
    ModelReady,
    PosteriorConditioned,
    RulesChecked,
    Scored,
    SelectionReady,
)
from campaign.ingest import SubmittedTask
from campaign.ledger import TaskOutcome
from campaign.models import FitAbandonedError
from campaign.planner import select_batch, snapshot
from campaign.policy import fit_due, free_slots, picks_wanted
from campaign.resume import mapped_input, restore_learner, saved_models
from campaign.state import PromotionState
from campaign.steering import Steerer
from campaign.stopping_rules import rule_inputs, rules_reason
from campaign.store import Rows

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 10.0
class AsyncSteerer(Steerer):
    """The reactions of async mode (see the module docstring)."""

    def __init__(self, *args: Any, max_in_flight: dict[str, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_in_flight = max_in_flight
        self.idle_walkers: dict[str, collections.deque[int]] = {
            name: collections.deque() for name in self.state.scales}
        self.selections = 0
        self.reactions.update({
            FitReturned: self.keeper.prepare_install, ModelReady: self.model_ready,
            PosteriorConditioned: self.keeper.conditioned, SelectionReady: self.selected,
            Scored: self.keeper.scored, RulesChecked: self.rules_checked})

    # -- the loop --------------------------------------------------------------------
    def start(self, unfinished: list[SubmittedTask]) -> None:
        """Restore each promotion's newest saved model, resubmit what a killed driver
        left; every other walker is idle."""
        for held in self.state.promotions:
            models = saved_models(self.store, held.name)
            if models:
                restore_learner(self.store, held, models[-1])
                if held.promotion.refits_features:
                    # the featurizer it was fitted with is not saved: refit both at once
                    # and let no selection use the restored model meanwhile
                    held.fitted = False
                    held.trained_on = held.seen = 0
        self.refresh_params()
        self.resubmit(unfinished)
        for name, held in self.state.scales.items():
            busy = {t.walker for t in unfinished if t.scale == name}
            self.idle_walkers[name].extend(i for i in range(len(held.walkers))
                                           if i not in busy)

    def steer(self, on_tick: Any = None) -> tuple[int, str]:
        status = self.state.status
        last_progress = time.monotonic()
        while True:
            if self.stop.stopping:
                if self.stop.stop_now or not self.dispatcher.sims:
                    break
            elif not status.stop_reason:
                self.fill()
            if status.stop_reason:
                if not self.dispatcher.busy():
                    break
                for held in self.state.promotions:  # the curve goes on (the final fit
                    if held.pending and fit_due(held):  # takes the rest)
                        self.keeper.start_fit(held)
            events = self.dispatcher.wait()
            self.on_events(events)
            # draining after a stop reason commits in batches too: the last flush below
            # takes the rest (a signal's stop commits each result as it comes)
            if (self.stop.stopping or self.buffer.due(idle=not events)
                    or self._first_results_waiting()):
                self.flush()
            if on_tick is not None:
                on_tick()
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                self.log_progress()
                last_progress = time.monotonic()
        self.flush()
        self.dispatcher.close()
        if self.stop.stopping:
            return self.generations(), ""
        if status.failed_reason:
            status.stop_reason = status.failed_reason
        for held in self.state.promotions:
            if held.fitted:  # prospective score of the newest model
                seen = int(held.last_record.get("n_train", held.trained_on))
                rows = np.asarray(held.train_rows[seen:], np.int64)
                self.keeper.score(held, held.generation, rows,
                                  np.asarray(held.train_y[seen:]))
            try:
                self.keeper.fit_final(held, held.generation + 1)
            except FitAbandonedError:
                break
        self.log_progress()
        return self.generations(), status.stop_reason

    def on_events(self, events: list[Any]) -> None:
        """React to ``events``; then walkers that returned go out again at once, and a
        promotion's freed slots get a selection request on the same events."""
        self.react(events)
        for name, idle in self.idle_walkers.items():
            if idle:
                self.fill_walkers(name)
        status = self.state.status
        if events and not (self.stop.stopping or status.stop_reason or status.failed_reason):
            for held in self.state.promotions:
                self.select(held)

    def _first_results_waiting(self) -> bool:
        """Results a promotion's first fit waits for are buffered: commit them now."""
        return any(not held.fitted and not held.fitting
                   and self.buffer.holds(held.promotion.target)
                   for held in self.state.promotions)

    def log_progress(self) -> None:
        """Overridden by the engine with its progress line."""

    def fill(self) -> None:
        """Decide what to start now: the budget's verdict, walkers, fits, selections."""
        status = self.state.status
        status.stop_reason = (budget_reason(self.spec, self.state, self.elapsed())
                              or stuck_reason(self.state))
        if status.stop_reason:
            status.fail(stuck_reason(self.state))
            return
        for name in self.state.scales:
            self.fill_walkers(name)
        for held in self.state.promotions:
            if fit_due(held):
                self.keeper.start_fit(held)
            self.select(held)
        if not (self.dispatcher.busy() or len(self.buffer)):
            status.stop_reason = stuck_reason(self.state) or (
                "nothing left to run (candidate pool exhausted)" if self.state.promotions
                else "nothing left to run")

    def generations(self) -> int:
        return max((p.generation for p in self.state.promotions), default=0)

    # -- walkers ---------------------------------------------------------------------
    def walker_returned(self, task: SubmittedTask, position: np.ndarray) -> bool:
        latest = super().walker_returned(task, position)
        if latest:  # refilled once per batch of events (one ledger transaction)
            self.idle_walkers[task.scale].append(task.walker)
        return latest

    def fill_walkers(self, scale: str) -> None:
        """Give free slots of ``scale`` to idle walkers, oldest idle first."""
        if self.stop.stopping or self.state.status.stop_reason:
            return
        free = self.max_in_flight[scale] - self.state.scales[scale].in_flight
        left = tasks_left(self.spec, self.state, scale)
        if left is not None:
            free = min(free, left)
        idle = self.idle_walkers[scale]
        chosen: list[int] = []
        for _ in range(len(idle)):
            if len(chosen) >= free:
                break
            index = idle.popleft()
            if walker_may_run(self.spec, self.state.scales[scale].walkers[index]):
                chosen.append(index)
        if chosen:
            walkers = self.state.scales[scale].walkers
            self.submit(scale, [walkers[w].segments for w in chosen],
                        [walkers[w].position.copy() for w in chosen], [-1] * len(chosen),
                        list(chosen))

    # -- models ----------------------------------------------------------------------
    def on_commit(self, scale: str, rows: Rows | None, outcomes: list[TaskOutcome]) -> None:
        super().on_commit(scale, rows, outcomes)
        held = self.state.promotion_into(scale)
        if held is not None and rows is not None:
            self.keeper.condition(held)  # where the learner can take them in at once

    def model_ready(self, event: ModelReady) -> None:
        self.keeper.installed(event)
        if self.spec.stopping:
            inputs = rule_inputs(self.state, None)
            self.dispatcher.on_model_thread(
                rules_reason, (self.spec, self.state, inputs, self.elapsed(), None),
                lambda result: RulesChecked(*result))
        if any(s.refresh_params is not None for s in self.spec.scales):
            self.refresh_params()

    def rules_checked(self, event: RulesChecked) -> None:
        if event.reason and not self.state.status.stop_reason:
            self.state.status.rule_reasons = event.rule_reasons
            self.ledger.set_fact("stop_rule", event.rule_reasons)
            self.state.status.stop_reason = event.reason

    # -- selections ------------------------------------------------------------------
    def select(self, held: PromotionState) -> None:
        """Fill the target's free slots from the promotion's ready picks, and ask the
        model thread for the next batch while fewer than a batch wait. Ready picks of a
        posterior older than the newest model are dropped (their rows free again).
        Nothing goes out once the run is stopping, ending or has failed."""
        status = self.state.status
        if self.stop.stopping or status.stop_reason or status.failed_reason:
            return
        promotion = held.promotion
        source = self.state.scales[promotion.source]
        chooser = held.generation if held.fitted else -1
        stale = [pick for pick in held.ready if pick[1] != chooser]
        if stale:
            held.promoted.difference_update(row for row, _, _ in stale)
            held.ready = [pick for pick in held.ready if pick[1] == chooser]
        free = self._free_slots(promotion.target)
        left = tasks_left(self.spec, self.state, promotion.target)
        if held.ready and free > 0 and left != 0:
            self._submit_ready(held, free if left is None else min(free, left))
            free = self._free_slots(promotion.target)
            left = tasks_left(self.spec, self.state, promotion.target)
        k = picks_wanted(held, source.tasks.get("done", 0), source.committed_rows,
                         len(source.walkers), free, left,
                         self.spec.budget.tasks.get(promotion.target))
        if k == 0:
            return
        index = self.state.promotions.index(held)
        rng = np.random.default_rng([self.spec.seed, index, self.selections, 7919])
        self.selections += 1
        also_pending = [row for row, _, _ in held.ready]
        if held.fitted:
            also_pending += held.train_rows[held.seen:]
        request = snapshot(self.state, held, k, rng, use_model=held.fitted,
                           also_pending=also_pending)
        seen = held.seen if held.fitted else -1
        committed, version = source.committed_rows, held.features_version
        held.selecting = True
        self.dispatcher.on_model_thread(
            select_batch, (request,),
            lambda selection: SelectionReady(held, selection, committed, version,
                                             chooser, seen))

    def _free_slots(self, target: str) -> int:
        """Free slots of a promoted scale: one until its first result is checked
        against the spec (``ScaleState.columns`` set, here or by a resume), for at
        most ``FIRST_RESULT_WAIT`` seconds of the campaign's clock."""
        held = self.state.scales[target]
        if held.first_asked is None:
            held.first_asked = clock.now()
        return free_slots(self.max_in_flight[target], held.in_flight,
                          held.columns is not None, clock.now() - held.first_asked)

    def selected(self, event: SelectionReady) -> None:
        """A batch of picks came back: they join the promotion's ready picks, which go
        out into the target's free slots at once."""
        held = event.promotion
        held.selecting = False
        if event.features_version != held.features_version:
            # refitted features were swapped in since the snapshot: its new features are
            # in the old space; featurize those rows with the current featurizer
            self.keeper.featurize_all(held, upto=event.committed_at_snapshot)
        elif event.committed_at_snapshot > held.featurized:
            held.add_features(event.selection.new_features,
                              event.committed_at_snapshot - held.featurized)
        if len(event.selection.chosen) == 0:
            held.exhausted_at = event.committed_at_snapshot
            return
        status = self.state.status
        if self.stop.stopping or status.stop_reason or status.failed_reason:
            return
        chosen = [int(r) for r in event.selection.chosen if int(r) not in held.promoted]
        held.promoted.update(chosen)  # reserved: no later selection chooses them again
        held.ready += [(row, event.generation, event.seen) for row in chosen]
        self.select(held)

    def _submit_ready(self, held: PromotionState, count: int) -> None:
        """Submit ``count`` ready picks (oldest first), each with the model that chose
        it and the committed results of the target that posterior had not seen by now."""
        picks, held.ready = held.ready[:count], held.ready[count:]
        for generation in sorted({g for _, g, _ in picks}):
            for seen in sorted({s for _, g, s in picks if g == generation}):
                rows = [r for r, g, s in picks if g == generation and s == seen]
                staleness = len(held.train_rows) - seen if generation >= 0 else -1
                held.picks[generation] += len(rows)
                self.submit(held.promotion.target, [max(generation, 0)] * len(rows),
                            [mapped_input(held.promotion, self.state, r) for r in rows],
                            rows, [None] * len(rows), chosen_by=generation,
                            staleness=staleness)

__all__ = ["AsyncSteerer"]
