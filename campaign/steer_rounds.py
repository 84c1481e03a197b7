"""Rounds steering: round-locked and exactly reproducible, resume included.

Owns: the loop of rounds mode. In round ``r`` every walker runs one segment and every
promotion fits on results from rounds before ``r`` and chooses from source rows of
rounds before ``r``; results commit in task order, so a resumed run ends with the same
store as an uninterrupted one. Where a resumed run continues is read once, at start;
afterwards every decision reads the in-memory state.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from campaign.budget import budget_reason, stuck_reason, tasks_left
from campaign.ingest import COMMIT_EVERY_ROWS, SubmittedTask
from campaign.models import FitAbandonedError
from campaign.planner import select_batch, snapshot
from campaign.resume import mapped_input, restore_learner, saved_models
from campaign.state import PromotionState
from campaign.steering import Steerer
from campaign.stopping_rules import rule_inputs, rules_reason

logger = logging.getLogger(__name__)


class RoundsSteerer(Steerer):
    """The loop of rounds mode (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_tick: Any = None
        self.round_index = 0
        self.carried = 0

    def start(self, unfinished: list[SubmittedTask]) -> None:
        """Where to continue (read once from the ledger), the learners of that round,
        and the unfinished tasks submitted again."""
        self.round_index = self._first_round()
        last = self.ledger.last_round()
        for name, held in self.state.scales.items():
            held.rounds_with_tasks = {r for r in range(0 if last is None else last + 1)
                                      if self.ledger.has_tasks(name, r)}
        self._restore_learners(self.round_index)
        self.carried = self.resubmit(unfinished)

    def steer(self, on_tick: Any = None) -> tuple[int, str]:
        self.on_tick = on_tick
        status = self.state.status
        round_index, carried, stop_reason = self.round_index, self.carried, ""
        while True:
            begun = self._round_begun(round_index)
            if self.stop.stopping:
                break
            if not begun and not carried:
                stop_reason = self._stop_reason(round_index)
                if stop_reason:
                    break
            try:
                self._plan_round(round_index)
            except FitAbandonedError:
                break
            if not self.stop.stopping:
                self.ledger.mark_planned(round_index)
            if (not self.dispatcher.sims and not begun and not carried
                    and not self.stop.stopping):
                stop_reason = "nothing left to run (candidate pool exhausted)"
                break
            carried = 0
            self._wait_round()
            self._score_round(round_index)
            self.log_round(round_index)
            if self.stop.stopping:
                break
            round_index += 1
        self.dispatcher.close()
        if not self.stop.stopping:
            if status.failed_reason:
                stop_reason = status.failed_reason
            for held in self.state.promotions:
                try:
                    self.keeper.fit_final(held, round_index)
                except FitAbandonedError:
                    break
        status.stop_reason = stop_reason
        return round_index, stop_reason

    def log_round(self, round_index: int) -> None:
        """Overridden by the engine with its progress line."""

    def _round_begun(self, round_index: int) -> bool:
        return any(round_index in held.rounds_with_tasks for held in self.state.scales.values())

    def _first_round(self) -> int:
        """The round to continue with: an unfinished or not fully planned one, else next."""
        last = self.ledger.last_round()
        if last is None:
            return 0
        if not self.ledger.planned(last) or self.ledger.tasks(status="submitted",
                                                               round_index=last):
            return last
        return last + 1

    def _restore_learners(self, round_index: int) -> None:
        """Warm-start each learner from the newest model saved before ``round_index``, or
        from round ``round_index``'s own model if that round's batch was already chosen."""
        for held in self.state.promotions:
            chosen = round_index in self.state.scales[held.promotion.target].rounds_with_tasks
            usable = [r for r in saved_models(self.store, held.name)
                      if r < round_index or (chosen and r == round_index)]
            if usable:
                restore_learner(self.store, held, usable[-1])
                if held.promotion.refits_features:
                    self._restore_features(held, usable[-1])

    def _restore_features(self, held: PromotionState, model: int) -> None:
        """Refittable features: the featurizer model ``model`` was fitted with is the
        spec's refitted on source rows of rounds before ``model``; rebuilt here."""
        from campaign.task import refit_features

        source = self.state.scales[held.promotion.source]
        if source.x is None or source.row_round is None:
            return
        n = source.committed_rows
        fit_rows = np.flatnonzero(source.row_round.values[:n] < model)
        if len(fit_rows) < 2:
            return
        featurizer, X = refit_features(held.promotion.features, source.x.values[:n], fit_rows)
        held.replace_features(featurizer, X)

    def _stop_reason(self, round_index: int) -> str:
        status = self.state.status
        status.fail(stuck_reason(self.state))
        if status.failed_reason:
            return status.failed_reason
        rounds = self.spec.budget.rounds
        if rounds is not None and round_index >= rounds:
            return f"round budget reached ({rounds} rounds)"
        reason = budget_reason(self.spec, self.state, self.elapsed())
        if reason or not self.spec.stopping or round_index == 0:
            return reason
        for held in self.state.promotions:
            self.keeper.featurize_all(held)
        reason, fired = rules_reason(self.spec, self.state,
                                     rule_inputs(self.state, round_index), self.elapsed(),
                                     round_index)
        if reason:
            self.state.status.rule_reasons = fired
            self.ledger.set_fact("stop_rule", fired)
        return reason

    def _plan_round(self, round_index: int) -> None:
        """Submit the parts of round ``round_index`` that have no tasks yet."""
        self.refresh_params()
        for name, held in self.state.scales.items():
            if held.walkers and not self.stop.stopping and (
                    round_index not in held.rounds_with_tasks):
                left = tasks_left(self.spec, self.state, name)
                running = [i for i, w in enumerate(held.walkers) if w.ended is None]
                count = len(running) if left is None else min(left, len(running))
                chosen = running[:count]
                self.submit(name, [round_index] * count,
                            [held.walkers[w].position.copy() for w in chosen], [-1] * count,
                            chosen)
        for held in self.state.promotions:
            target = self.state.scales[held.promotion.target]
            if not self.stop.stopping and round_index not in target.rounds_with_tasks:
                self._promote(held, round_index)

    def _promote(self, held: PromotionState, round_index: int) -> None:
        promotion = held.promotion
        left = tasks_left(self.spec, self.state, promotion.target)
        if self.state.scales[promotion.source].committed_rows == 0 or left == 0:
            return
        X, y = held.training_set(before_round=round_index)
        k = promotion.batch_size if left is None else min(left, promotion.batch_size)
        record: dict[str, Any] = {}
        if len(y) == 0:
            k = min(promotion.seed_design_size, k if left is None else left)
            record.update(n_train=0)
        else:
            fitted = self.keeper.fit_now(held, X, y, before_round=round_index)
            if self.stop.stopping:  # asked to stop while fitting: submit nothing new
                return
            self.keeper.install(held, fitted, round_index, len(y), record)
        rng = np.random.default_rng([self.spec.seed, round_index, 7919])
        selection = select_batch(snapshot(self.state, held, k, rng, use_model=len(y) > 0,
                                          before_round=round_index))
        source = self.state.scales[promotion.source]
        if source.committed_rows > held.featurized:
            held.add_features(selection.new_features, source.committed_rows - held.featurized)
        record.update(selection.record)
        chosen = [int(r) for r in selection.chosen]
        record["chosen_rows"] = chosen
        held.last_record = record
        self.keeper.record(held, round_index, record)
        inputs = [mapped_input(promotion, self.state, row) for row in chosen]
        # every result of earlier rounds is committed before a round is planned: the
        # model that chose (this round's, if any) had seen them all
        self.submit(promotion.target, [round_index] * len(chosen), inputs, chosen,
                    [None] * len(chosen), chosen_by=round_index if len(y) else -1,
                    staleness=0 if len(y) else -1)

    def _wait_round(self) -> None:
        """Ingest until the round's tasks (and their retries) are all in, committing in
        task order; while stopping, commit what is ready at once."""
        while self.dispatcher.busy() and not self.stop.stop_now:
            self.react(self.dispatcher.wait())
            if self.stop.stopping or self.buffer.rows >= COMMIT_EVERY_ROWS:
                self.flush()
            if self.on_tick is not None:
                self.on_tick()
        self.flush()

    def flush(self) -> None:
        """Commit buffered results; with tasks still running, only tasks below the
        oldest still running of their scale (task order is kept)."""
        if not self.dispatcher.sims:
            self.buffer.flush()
            return
        running: dict[str, int | None] = dict.fromkeys(self.state.scales)
        for task in self.dispatcher.in_flight():
            current = running[task.scale]
            running[task.scale] = task.task_id if current is None else min(current,
                                                                           task.task_id)
        self.buffer.flush(before=running)

    def _score_round(self, round_index: int) -> None:
        """Error and calibration of the model that chose this round's points on those
        points, measured before it is trained on them: an honest, prospective estimate."""
        for held in self.state.promotions:
            if not held.fitted or held.generation != round_index:
                continue
            new = np.flatnonzero(np.asarray(held.train_round, dtype=np.int64) == round_index)
            if len(new) == 0:
                continue
            rows = np.asarray(held.train_rows, np.int64)[new]
            self.keeper.score(held, round_index, rows, np.asarray(held.train_y)[new])
