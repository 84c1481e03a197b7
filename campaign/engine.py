"""The steering loop: the only process that writes a run's store and ledger.

One round ``r`` (DESIGN's flow):

1. every walker of a broadly sampled scale runs one task from its last configuration;
2. for every promotion: fit the learner on the finer scale's results from rounds before
   ``r`` (a task on the ``train`` executor), take its posterior over the candidate pool
   (source rows from rounds before ``r`` not yet promoted) and over pending points, let
   the acquisition choose a batch, map the chosen rows and submit them;
3. results are checked and committed as they complete. A task that raises, times out,
   dies with its worker or returns NaN/inf/misshapen output is retried (new seed) up to
   its scale's ``retries``, then quarantined with its reason: never stored as rows, never
   trained on.

Every task is recorded in the ledger (in one transaction per batch) *before* it is
submitted, and a round is marked planned once all its parts are recorded, so a killed
driver resumes exactly: unfinished tasks are submitted again under the same ids, a round
that was not fully planned gets only its missing parts, learners come back from the
newest saved model, and all randomness derives from (campaign seed, task id, attempt)
or (campaign seed, round). The loop is round-locked but written as plan / ingest steps
around ``concurrent.futures.wait``, so an asynchronous version only changes
:meth:`Engine._steer`.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from campaign.faults import fault_point
from campaign.ledger import Ledger, PlannedTask, TaskOutcome
from campaign.lock import RunLock
from campaign.signals import StopRequest
from campaign.spec import CampaignSpec, Promotion, Scale
from campaign.store import Rows, ScaleData, Store
from campaign.task import BadResultError, check_result, fit_learner, run_app
from learners.calibration import calibration_metrics

logger = logging.getLogger(__name__)

COMMIT_EVERY_ROWS = 10_000
POLL_SECONDS = 0.2
SHUTDOWN_SECONDS = 15.0


class RunDirError(RuntimeError):
    """The output directory cannot hold this campaign (it holds another one)."""


class FitAbandonedError(Exception):
    """A second stop signal arrived while a learner was being fitted."""


@dataclass
class SubmittedTask:
    """A task in flight: its ledger id and what the engine needs when it completes."""

    task_id: int
    scale: str
    round_index: int
    parent_row: int
    submitted: float
    task_input: np.ndarray
    attempt: int = 1
    walker: int | None = None


@dataclass
class PromotionState:
    """What the engine remembers about one promotion between rounds."""

    promotion: Promotion
    learner: Any
    features: np.ndarray | None = None  # features of the source rows seen so far
    quantity: str | None = None
    fitted_round: int | None = None
    reference: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class RunSummary:
    """What a run reports: where it is, what ran, why it stopped."""

    run_dir: Path
    name: str
    rounds: int
    stop_reason: str
    wall_seconds: float
    task_counts: dict[str, dict[str, int]]
    rows: dict[str, int]
    interrupted: bool = False
    unfinished: int = 0
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def versions() -> dict[str, str]:
    """Versions of the interpreter and the libraries a run depends on."""
    found = {"python": platform.python_version()}
    for module in ("numpy", "zarr", "parsl", "torch", "gpytorch", "pydantic"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:  # optional at read time, e.g. `campaign status` elsewhere
            continue
    return found


def _structure(description: dict[str, Any]) -> dict[str, Any]:
    """The parts of a spec description that a resumed run must share (not the budget)."""
    return {key: value for key, value in description.items() if key != "budget"}


def inspect_run_dir(run_dir: Path, spec: CampaignSpec, *, overwrite: bool,
                    resume: bool) -> str:
    """Decide what to do with ``run_dir`` without writing anything.

    Returns ``"new"``, ``"resume"`` or ``"overwrite"``; raises :class:`RunDirError`,
    ``LedgerError`` or ``StoreError`` with one line naming the problem.
    """
    ledger_path = run_dir / "ledger.sqlite"
    if not ledger_path.exists():
        if run_dir.exists() and any(p.name != "campaign.lock" for p in run_dir.iterdir()):
            raise RunDirError(f"{run_dir} exists and is not a campaign run directory; "
                              "choose a new --out")
        if resume:
            raise RunDirError(f"{run_dir} holds no campaign to resume")
        return "new"
    ledger = Ledger(ledger_path, read_only=True)
    try:
        ledger.check_integrity()
        holder = ledger.fact("name")
        if holder is None and not ledger.tasks():  # a driver killed while starting
            if resume:
                raise RunDirError(f"{run_dir} holds no campaign to resume (its driver was "
                                  "stopped while starting); run it again")
            return "overwrite"
        if holder != spec.name:
            raise RunDirError(f"{run_dir} holds campaign '{holder}', not '{spec.name}'; "
                              "choose a new --out")
        if resume:
            recorded = _structure(ledger.fact("spec", {}))
            wanted = _structure(spec.describe())
            if recorded != wanted:
                changed = sorted(k for k in wanted if recorded.get(k) != wanted[k])
                raise RunDirError(f"{run_dir} was run with a different spec (changed: "
                                  f"{', '.join(changed)}); only the budget may change on "
                                  "resume")
            if (run_dir / "store.zarr").exists():
                Store(run_dir, ledger, read_only=True).verify()
            return "resume"
        if overwrite:
            return "overwrite"
        tasks = sum(sum(c.values()) for c in ledger.task_counts().values())
        raise RunDirError(f"{run_dir} already holds a run of '{spec.name}' ({tasks} tasks); "
                          f"`campaign resume {run_dir}` continues it, --overwrite replaces it")
    finally:
        ledger.close()


def clear_run(run_dir: Path) -> None:
    """Delete what a previous run of a campaign wrote (and nothing else)."""
    for entry in ("store.zarr", "parsl", "baseline-random"):
        shutil.rmtree(run_dir / entry, ignore_errors=True)
    for entry in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "report.png",
                  "summary.json"):
        (run_dir / entry).unlink(missing_ok=True)


def put_interpreter_on_path() -> None:
    """Parsl starts ``interchange.py`` and workers through PATH: make it this venv's."""
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def task_seed(campaign_seed: int, task_id: int, attempt: int) -> int:
    """The seed of one attempt of one task: reproducible across kills and resumes."""
    return int(np.random.SeedSequence([campaign_seed, task_id, attempt]).generate_state(1)[0])


class Engine:
    """Runs one campaign spec into one run directory on one Parsl site."""

    def __init__(self, spec: CampaignSpec, run_dir: str | Path, *, site: str = "local",
                 site_params: dict[str, Any] | None = None, script: str | None = None,
                 overwrite: bool = False, resume: bool = False, grace_period: float = 25.0,
                 torch_threads: int = 1) -> None:
        if overwrite and resume:
            raise ValueError("choose one of overwrite and resume")
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.site = site
        self.site_params = site_params or {}
        self.script = script
        self.overwrite = overwrite
        self.resume = resume
        self.stop = StopRequest(grace_period)
        self.torch_threads = torch_threads
        self.shutdown_incomplete = False

    # -- the whole run ---------------------------------------------------------------
    def run(self) -> RunSummary:
        import parsl

        from site_configs import get_config

        config = get_config(self.site, scales=[s.name for s in self.spec.scales],
                            run_dir=str(self.run_dir / "parsl"), **self.site_params)
        inspect_run_dir(self.run_dir, self.spec, overwrite=self.overwrite, resume=self.resume)
        self._set_torch_threads()
        with RunLock(self.run_dir):
            mode = inspect_run_dir(self.run_dir, self.spec, overwrite=self.overwrite,
                                   resume=self.resume)
            if mode == "overwrite":
                clear_run(self.run_dir)
            self.ledger = Ledger(self.run_dir / "ledger.sqlite")
            try:
                self.store = Store(self.run_dir, self.ledger)
                self._record_facts(mode)
                put_interpreter_on_path()
                with self.stop:
                    dfk = parsl.load(config)
                    try:
                        return self._steer(dfk)
                    finally:
                        self._shut_down(dfk)
                        parsl.clear()
            finally:
                self.ledger.close()

    def _shut_down(self, dfk: Any) -> None:
        """Parsl's cleanup, bounded in time. A SIGTERM sent to a whole job (Slurm at
        walltime, ``timeout``) or a Ctrl-C to the terminal's process group also kills
        Parsl's interchange, and Parsl's cleanup then blocks forever talking to it.
        Everything is committed by now, so after ``SHUTDOWN_SECONDS`` we go on."""
        import threading

        cleanup = threading.Thread(target=dfk.cleanup, name="parsl-cleanup", daemon=True)
        cleanup.start()
        cleanup.join(SHUTDOWN_SECONDS)
        if cleanup.is_alive():
            self.shutdown_incomplete = True
            logger.warning("Parsl did not shut down within %g s (its interchange was probably "
                           "stopped by the same signal); everything is committed, leaving it",
                           SHUTDOWN_SECONDS)

    def _set_torch_threads(self) -> None:
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(self.torch_threads)

    def _record_facts(self, mode: str) -> None:
        """One transaction: a driver killed while starting leaves all or nothing."""
        facts: dict[str, Any] = {"spec": self.spec.describe(), "script": self.script,
                                 "site": self.site, "versions": versions()}
        if mode == "resume":
            facts.update(resumed=self.ledger.fact("resumed", 0) + 1, interrupted=None,
                         stop_reason=None)
        else:
            facts.update(name=self.spec.name, created=time.time(), wall_seconds=0.0)
        self.ledger.set_facts(facts)

    def _steer(self, dfk: Any) -> RunSummary:
        from parsl.app.app import python_app

        self._sim_apps = {
            scale.name: python_app(run_app, executors=[scale.executor_label],
                                   data_flow_kernel=dfk)
            for scale in self.spec.scales
        }
        self._train_app = python_app(fit_learner, executors=["train"], data_flow_kernel=dfk)
        self._refreshed_params: dict[str, dict[str, Any]] = {}
        # a copy: the spec's learner stays unfitted (a thread executor fits in place)
        self._promotions = [PromotionState(p, copy.deepcopy(p.learner))
                            for p in self.spec.promotions]
        round_index = self._first_round()
        self._walkers = self._restore_walkers()
        self._restore_learners(round_index)
        carried = self._resubmit_unfinished()
        if carried:
            logger.info("resuming round %d: %d unfinished tasks submitted again",
                        round_index, len(carried))
        started = time.time()
        earlier = float(self.ledger.fact("wall_seconds", 0.0) or 0.0)
        stop_reason = ""
        unfinished = 0
        while True:
            begun = bool(self.ledger.tasks(round_index=round_index))
            if self.stop.stopping:
                break
            if not begun and not carried:
                stop_reason = self._stop_reason(round_index, earlier + time.time() - started)
                if stop_reason:
                    break
            in_flight, carried = {**carried, **self._plan_round(round_index)}, {}
            if not self.stop.stopping:
                self.ledger.mark_planned(round_index)
            if not in_flight and not begun and not self.stop.stopping:
                stop_reason = "nothing left to run (candidate pool exhausted)"
                break
            unfinished = self._ingest(in_flight)
            self._score_new_results(round_index)
            self._log_round(round_index)
            if self.stop.stopping:
                break
            round_index += 1
        wall = earlier + time.time() - started
        self.ledger.set_fact("wall_seconds", wall)
        if self.stop.stopping:
            unfinished = len(self.ledger.tasks(status="submitted"))
            reason = f"interrupted by {self.stop.signal_name}"
            self.ledger.set_fact("interrupted", reason)
            logger.warning("%s in round %d: everything completed is committed; %d tasks "
                           "unfinished", reason, round_index, unfinished)
            stop_reason = reason
        else:
            for state in self._promotions:
                self._fit_final(state, round_index)
            self.ledger.set_fact("stop_reason", stop_reason)
            logger.info("campaign %s stopped after %d rounds: %s", self.spec.name,
                        round_index, stop_reason)
        return RunSummary(
            run_dir=self.run_dir, name=self.spec.name, rounds=round_index,
            stop_reason=stop_reason, wall_seconds=wall,
            task_counts=self.ledger.task_counts(),
            rows={s.name: self.store.rows(s.name) for s in self.spec.scales},
            interrupted=self.stop.stopping, unfinished=unfinished,
            curves={p.name: self.ledger.rounds(p.name) for p in self.spec.promotions},
        )

    # -- restoring state on resume ---------------------------------------------------
    def _first_round(self) -> int:
        """The round to continue with: an unfinished or not fully planned one, else next."""
        last = self.ledger.last_round()
        if last is None:
            return 0
        if not self.ledger.planned(last) or self.ledger.tasks(status="submitted",
                                                               round_index=last):
            return last
        return last + 1

    def _restore_walkers(self) -> dict[str, np.ndarray]:
        """Each walker continues from the last row its last completed task produced."""
        walkers = {}
        for scale in self.spec.scales:
            if scale.walkers is None:
                continue
            positions = scale.walkers.copy()
            done = [t for t in self.ledger.tasks(scale.name, status="done")
                    if t["walker"] is not None]
            if done:
                task_ids = self.store.read(scale.name).meta["task_id"]
                x = self.store.read(scale.name).x
                for task in done:  # oldest first: the newest task wins
                    rows = np.flatnonzero(task_ids == task["task_id"])
                    positions[task["walker"]] = x[rows[-1]].reshape(positions.shape[1:])
            walkers[scale.name] = positions
        return walkers

    def _restore_learners(self, round_index: int) -> None:
        """Warm-start each learner from the newest model saved before ``round_index``, or
        from round ``round_index``'s own model if that round's batch was already chosen."""
        for state in self._promotions:
            if f"models/{state.promotion.name}" not in self.store.group:
                continue
            saved = sorted(int(r) for r in
                           self.store.group[f"models/{state.promotion.name}"].group_keys())
            chosen = bool(self.ledger.tasks(state.promotion.target, round_index=round_index))
            usable = [r for r in saved if r < round_index or (chosen and r == round_index)]
            if usable:
                state.learner.load_state_dict(self.store.load_model(state.promotion.name,
                                                                    usable[-1]))
                state.fitted_round = usable[-1]
                logger.info("%s: learner restored from the model of round %d",
                            state.promotion.name, usable[-1])

    def _resubmit_unfinished(self) -> dict[concurrent.futures.Future[Any], SubmittedTask]:
        """Submit again every task recorded but never committed (same id and seed)."""
        in_flight = {}
        for task in self.ledger.tasks(status="submitted"):
            if task["parent_row"] >= 0:
                promotion = next(p for p in self.spec.promotions if p.target == task["scale"])
                source_row = self.store.read(promotion.source).x[task["parent_row"]]
                task_input = self._map(promotion, source_row)
            else:
                task_input = np.asarray(json.loads(task["input"]), np.float64)
            submitted = SubmittedTask(task["task_id"], task["scale"], task["round"],
                                      task["parent_row"], time.time(), task_input,
                                      task["attempts"], task["walker"])
            in_flight[self._launch(submitted, task["seed"])] = submitted
        return in_flight

    # -- budget ----------------------------------------------------------------------
    def _tasks_left(self, scale: str) -> int | None:
        limit = self.spec.budget.tasks.get(scale)
        if limit is None:
            return None
        return max(0, limit - sum(self.ledger.task_counts().get(scale, {}).values()))

    def _stop_reason(self, round_index: int, elapsed: float) -> str:
        budget = self.spec.budget
        if budget.rounds is not None and round_index >= budget.rounds:
            return f"round budget reached ({budget.rounds} rounds)"
        if budget.wall_time is not None and elapsed >= budget.wall_time:
            return f"wall-time budget reached ({budget.wall_time:g} s)"
        targets = [p.target for p in self.spec.promotions]
        if targets and all(self._tasks_left(t) == 0 for t in targets):
            spent = ", ".join(f"{t}={budget.tasks[t]}" for t in targets)
            return f"task budget spent ({spent})"
        return self._rule_stop(round_index, elapsed)

    def _rule_stop(self, round_index: int, elapsed: float) -> str:
        """The reason if, for every promotion, one of the spec's stopping rules fires."""
        from learners.stopping import StoppingState, first_to_fire

        if not self.spec.stopping or round_index == 0:
            return ""
        done = {scale: counts.get("done", 0)
                for scale, counts in self.ledger.task_counts().items()}
        budget: dict[str, int | None] = {s.name: self.spec.budget.tasks.get(s.name)
                                         for s in self.spec.scales}
        reasons = []
        for state in self._promotions or [None]:
            posterior, heldout = None, []
            if state is not None:
                heldout = [r["prospective_rmse"] for r in self.ledger.rounds(
                    state.promotion.name) if r.get("prospective_rmse") is not None]
                candidates = self._candidates(state, round_index)
                if state.fitted_round is not None and len(candidates):
                    posterior = state.learner.posterior(candidates)
            check = StoppingState(round=round_index - 1, n_simulations=done, budget=budget,
                                  posterior=posterior, heldout_rmse=heldout,
                                  elapsed_seconds=elapsed)
            fired = first_to_fire(self.spec.stopping, check)
            if fired is None:
                return ""
            reasons.append(f"{type(fired[0]).__name__}: {fired[1]}")
        self.ledger.set_fact("stop_rule", reasons)
        return "stopping rule " + "; ".join(reasons)

    def _candidates(self, state: PromotionState, round_index: int) -> np.ndarray:
        """Features of the source rows from rounds before ``round_index`` not promoted."""
        source = self.store.read(state.promotion.source)
        if len(source) == 0:
            return np.zeros((0, 0))
        features = self._pool_features(state, source.x)
        promoted = {task["parent_row"] for task in self.ledger.tasks(state.promotion.target)}
        rows = [row for row in np.flatnonzero(source.meta["round"] < round_index)
                if row not in promoted]
        return features[rows]

    # -- planning a round ------------------------------------------------------------
    def _plan_round(self, round_index: int) -> dict[concurrent.futures.Future[Any],
                                                    SubmittedTask]:
        """Submit the parts of round ``round_index`` that have no tasks yet."""
        in_flight: dict[concurrent.futures.Future[Any], SubmittedTask] = {}
        self._refresh_params()
        for scale in self.spec.scales:
            if scale.walkers is not None and not self.stop.stopping and not self.ledger.tasks(
                    scale.name, round_index=round_index):
                in_flight.update(self._submit_walkers(scale, round_index))
        for state in self._promotions:
            if not self.stop.stopping and not self.ledger.tasks(state.promotion.target,
                                                                round_index=round_index):
                in_flight.update(self._promote(state, round_index))
        return in_flight

    def _refresh_params(self) -> None:
        """Let scales with a ``refresh_params`` hook update their parameters from data."""
        hooked = [scale for scale in self.spec.scales if scale.refresh_params is not None]
        if not hooked:
            return
        data = {scale.name: self.store.read(scale.name) for scale in self.spec.scales}
        for scale in hooked:
            update = scale.refresh_params(data)
            if not isinstance(update, dict) or "seed" in update:
                raise TypeError(f"refresh_params of scale '{scale.name}' must return a dict "
                                "of app parameters (not 'seed')")
            self._refreshed_params[scale.name] = update

    def _seed_for(self, task_id: int, attempt: int) -> int:
        return task_seed(self.spec.seed, task_id, attempt)

    def _launch(self, task: SubmittedTask, seed: int) -> concurrent.futures.Future[Any]:
        scale = self.spec.scale(task.scale)
        params = {**scale.params, **self._refreshed_params.get(scale.name, {})}
        limits = {} if scale.timeout is None else {"walltime": scale.timeout}
        return self._sim_apps[scale.name](scale.app, task.task_input, seed, params, **limits)

    def _submit_batch(self, scale: Scale, round_index: int, inputs: list[np.ndarray],
                      parents: list[int], walkers: list[int | None]
                      ) -> dict[concurrent.futures.Future[Any], SubmittedTask]:
        """Record a batch in the ledger (one transaction), then submit it."""
        planned = [PlannedTask(scale.name, round_index, parent,
                               task_input.ravel().tolist() if walker is not None else [],
                               walker)
                   for task_input, parent, walker in zip(inputs, parents, walkers, strict=True)]
        ids = self.ledger.plan(planned, self._seed_for)
        fault_point("after-plan")
        in_flight = {}
        for task_id, task_input, parent, walker in zip(ids, inputs, parents, walkers,
                                                       strict=True):
            task = SubmittedTask(task_id, scale.name, round_index, parent, time.time(),
                                 task_input, 1, walker)
            in_flight[self._launch(task, self._seed_for(task_id, 1))] = task
        return in_flight

    def _submit_walkers(self, scale: Scale, round_index: int
                        ) -> dict[concurrent.futures.Future[Any], SubmittedTask]:
        left = self._tasks_left(scale.name)
        walkers = self._walkers[scale.name]
        count = len(walkers) if left is None else min(left, len(walkers))
        return self._submit_batch(scale, round_index, [walkers[w].copy() for w in range(count)],
                                  [-1] * count, list(range(count)))

    @staticmethod
    def _map(promotion: Promotion, source_row: np.ndarray) -> np.ndarray:
        if promotion.mapping is None:
            return np.array(source_row, dtype=np.float64)
        return np.asarray(promotion.mapping(source_row))

    def _promote(self, state: PromotionState, round_index: int
                 ) -> dict[concurrent.futures.Future[Any], SubmittedTask]:
        promotion = state.promotion
        left = self._tasks_left(promotion.target)
        source = self.store.read(promotion.source)
        if len(source) == 0 or left == 0:
            return {}
        features = self._pool_features(state, source.x)
        target_tasks = self.ledger.tasks(promotion.target)
        promoted = {task["parent_row"] for task in target_tasks}
        # quarantined inputs count as pending for good: their neighbourhood has been
        # tried, so uncertainty there must not draw the budget back again and again
        pending_rows = [task["parent_row"] for task in target_tasks
                        if task["status"] in ("submitted", "quarantined")]
        pool_rows = np.flatnonzero(source.meta["round"] < round_index)
        candidates = np.array([row for row in pool_rows if row not in promoted], dtype=np.int64)
        if len(candidates) == 0:
            return {}
        k = promotion.batch_size if left is None else min(left, promotion.batch_size)
        rng = np.random.default_rng([self.spec.seed, round_index, 7919])
        record: dict[str, Any] = {"n_pool": int(len(pool_rows)),
                                  "n_candidates": int(len(candidates)),
                                  "n_pending": len(pending_rows)}
        train_X, train_y = self._training_set(state, round_index, source)
        if len(train_y) == 0:
            k = min(promotion.seed_design_size, k if left is None else left)
            chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
            record.update(policy="seed design (random)", n_train=0)
        else:
            try:
                record.update(self._fit(state, round_index, train_X, train_y))
            except FitAbandonedError:
                return {}
            if self.stop.stopping:  # asked to stop while fitting: submit nothing new
                return {}
            select_started = time.time()
            points = np.concatenate([features[candidates], features[pending_rows]])
            posterior = state.learner.posterior(points)
            positions = np.asarray(promotion.acquisition.select(
                posterior, k, np.arange(len(candidates), len(points), dtype=np.int64), rng),
                dtype=np.int64)
            chosen = candidates[positions]
            record.update(policy=type(promotion.acquisition).__name__,
                          select_seconds=time.time() - select_started,
                          chosen_variance_mean=float(np.mean(posterior.variance[positions]))
                          if len(positions) else None)
        record["chosen_rows"] = [int(row) for row in chosen]
        self.ledger.record_round(round_index, promotion.name, record)
        target = self.spec.scale(promotion.target)
        inputs = [self._map(promotion, source.x[row]) for row in chosen]
        return self._submit_batch(target, round_index, inputs, [int(r) for r in chosen],
                                  [None] * len(chosen))

    def _pool_features(self, state: PromotionState, pool_x: np.ndarray) -> np.ndarray:
        """Features of every source row, computing only rows not seen before."""
        known = 0 if state.features is None else len(state.features)
        if known < len(pool_x):
            new = np.asarray(state.promotion.features(pool_x[known:]), dtype=np.float64)
            if new.ndim != 2 or new.shape[0] != len(pool_x) - known:
                raise BadResultError(f"features of promotion {state.promotion.name} must "
                                     f"return (n, f) for n rows, got {new.shape}")
            state.features = new if state.features is None else np.concatenate(
                [state.features, new])
        return state.features

    def _training_set(self, state: PromotionState, before_round: int | None = None,
                      source: ScaleData | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Learner inputs are the features of the *source* rows that were promoted (so the
        learner predicts the finer scale's quantity where candidates live); only
        committed rows, and only from rounds before ``before_round`` when given."""
        target = self.store.read(state.promotion.target)
        if len(target) == 0:
            return np.zeros((0, 0)), np.zeros(0)
        keep = (np.ones(len(target), bool) if before_round is None
                else target.meta["round"] < before_round)
        quantity = self._quantity(state, target.y)
        values = np.asarray(target.y[quantity], dtype=np.float64)
        if values.ndim > 1:
            if values.shape[1:] != (1,):
                raise BadResultError(f"quantity '{quantity}' must be one number per row to be "
                                     f"learned, got rows of shape {values.shape[1:]}")
            values = values[:, 0]
        if source is None:  # the caller may already hold the source rows
            source = self.store.read(state.promotion.source)
        features = self._pool_features(state, source.x)
        return features[target.meta["parent_row"][keep]], values[keep]

    def _quantity(self, state: PromotionState, outputs: dict[str, np.ndarray]) -> str:
        if state.quantity is None:
            wanted = state.promotion.quantity
            if wanted is None:
                if len(outputs) != 1:
                    raise BadResultError(f"promotion {state.promotion.name}: the target scale "
                                         f"returns {sorted(outputs)}; set quantity= to one")
                wanted = next(iter(outputs))
            if wanted not in outputs:
                raise BadResultError(f"promotion {state.promotion.name}: quantity '{wanted}' "
                                     f"is not an output of scale '{state.promotion.target}' "
                                     f"(outputs: {', '.join(sorted(outputs))})")
            state.quantity = wanted
        return state.quantity

    def _fit(self, state: PromotionState, round_index: int, X: np.ndarray,
             y: np.ndarray) -> dict[str, Any]:
        """Fit on the train executor, save the weights, measure reference error."""
        fitting = self._train_app(state.learner, X, y)
        fault_point("during-fit")
        while not fitting.done():  # a second stop signal must not wait for a long fit
            if self.stop.stop_now:
                raise FitAbandonedError
            concurrent.futures.wait([fitting], timeout=POLL_SECONDS)
        fitted = fitting.result()
        state.learner = fitted["learner"]
        state.fitted_round = round_index
        path = self.store.save_model(state.promotion.name, round_index,
                                     state.learner.state_dict(), len(y),
                                     type(state.learner).__name__)
        record: dict[str, Any] = {"n_train": int(len(y)), "fit_seconds": fitted["seconds"],
                                  "model": path}
        record.update(self._reference_error(state))
        return record

    def _reference_error(self, state: PromotionState) -> dict[str, Any]:
        if state.promotion.reference is None:
            return {}
        if state.reference is None:
            X_ref, y_ref = state.promotion.reference()
            state.reference = (np.asarray(X_ref, np.float64), np.asarray(y_ref, np.float64))
        X_ref, y_ref = state.reference
        posterior = state.learner.posterior(X_ref)
        error = posterior.mean - y_ref
        return {"reference_rmse": float(np.sqrt(np.mean(error**2))),
                "reference_max_error": float(np.max(np.abs(error)))}

    def _fit_final(self, state: PromotionState, round_index: int) -> None:
        """Fit once more on everything, so the learning curve ends at the full budget."""
        train_X, train_y = self._training_set(state)
        if len(train_y) == 0:
            return
        record = {"policy": "final fit", **self._fit(state, round_index, train_X, train_y)}
        self.ledger.record_round(round_index, state.promotion.name, record)
        logger.info("final surrogate for %s: %d training points%s", state.promotion.name,
                    len(train_y), _error_text(record))

    def _score_new_results(self, round_index: int) -> None:
        """Error and calibration (``learners.calibration``) of the model that chose this
        round's points on those points, measured before it is trained on them: an
        honest, prospective estimate. Kept in the ledger's round record and in the
        store (``models/<promotion>/<round>`` attribute ``calibration``)."""
        for state in self._promotions:
            if state.fitted_round != round_index:
                continue
            target = self.store.read(state.promotion.target)
            new = target.meta["round"] == round_index if len(target) else np.zeros(0, bool)
            if not np.any(new):
                continue
            values = np.asarray(target.y[self._quantity(state, target.y)],
                                dtype=np.float64).reshape(len(target))
            features = self._pool_features(state, self.store.read(state.promotion.source).x)
            posterior = state.learner.posterior(features[target.meta["parent_row"][new]])
            calibration = calibration_metrics(posterior, values[new])
            records = {r["round"]: r for r in self.ledger.rounds(state.promotion.name)}
            record = {k: v for k, v in records[round_index].items()
                      if k not in ("round", "promotion")}
            record.update(prospective_rmse=calibration["rmse"], n_scored=int(np.sum(new)),
                          calibration=calibration)
            self.store.record_calibration(state.promotion.name, round_index, calibration)
            self.ledger.record_round(round_index, state.promotion.name, record)

    # -- ingest ----------------------------------------------------------------------
    def _ingest(self, in_flight: dict[concurrent.futures.Future[Any], SubmittedTask]) -> int:
        """Check each result as it completes (retrying failures) and commit rows per
        scale in task order. Returns how many tasks a stop request left unfinished."""
        buffers: dict[str, list[tuple[int, Rows | None, TaskOutcome]]] = {}
        waiting = set(in_flight)
        while waiting and not self.stop.stop_now:
            done, waiting = concurrent.futures.wait(
                waiting, timeout=POLL_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                task = in_flight.pop(future)
                rows, outcome, problem = self._check(future, task)
                if problem is not None:
                    retry = self._retry_or_quarantine(task, problem)
                    if retry is not None:
                        in_flight[retry[0]] = retry[1]
                        waiting.add(retry[0])
                        continue
                    if outcome is None:  # stopping: left 'submitted' for resume
                        continue
                buffer = buffers.setdefault(task.scale, [])
                buffer.append((task.task_id, rows, outcome))
                if rows is not None and task.walker is not None:
                    self._walkers[task.scale][task.walker] = rows.x[-1]
                # while stopping, commit what is ready at once (a SIGKILL may follow soon)
                buffered = sum(len(r) for _, r, _ in buffer if r is not None)
                if self.stop.stopping or buffered >= COMMIT_EVERY_ROWS:
                    running = [t.task_id for t in in_flight.values() if t.scale == task.scale]
                    self._commit(task.scale, buffer, before=min(running, default=None))
        for scale, buffer in buffers.items():
            self._commit(scale, buffer)
        return len(waiting)

    def _commit(self, scale: str, buffer: list[tuple[int, Rows | None, TaskOutcome]],
                before: int | None = None) -> None:
        """Commit buffered results in task order (not completion order, so the same seed
        gives the same store): all of them, or only those of tasks numbered below
        ``before`` (a task still running), leaving the rest buffered."""
        buffer.sort(key=lambda entry: entry[0])
        ready = [entry for entry in buffer if before is None or entry[0] < before]
        if not ready:
            return
        rows = [entry[1] for entry in ready if entry[1] is not None]
        self.store.commit(scale, Rows.concatenate(rows) if rows else None,
                          [entry[2] for entry in ready])
        fault_point("after-commit")
        del buffer[:len(ready)]

    def _retry_or_quarantine(self, task: SubmittedTask, problem: str
                             ) -> tuple[concurrent.futures.Future[Any], SubmittedTask] | None:
        """Submit ``task`` again with a new seed while it has retries left (and no stop
        was asked for); None means its quarantine record (from :meth:`_check`) stands."""
        scale = self.spec.scale(task.scale)
        if self.stop.stopping:
            return None
        if task.attempt <= scale.retries:
            seed = self._seed_for(task.task_id, task.attempt + 1)
            attempt = self.ledger.retry(task.task_id, seed, problem[:2000])
            logger.warning("task %d (%s) attempt %d failed: %s; retrying", task.task_id,
                           task.scale, task.attempt, problem)
            again = dataclasses.replace(task, attempt=attempt, submitted=time.time())
            return self._launch(again, seed), again
        logger.warning("task %d (%s) quarantined after %d attempts: %s", task.task_id,
                       task.scale, task.attempt, problem)
        return None

    def _check(self, future: concurrent.futures.Future[Any], task: SubmittedTask
               ) -> tuple[Rows | None, TaskOutcome | None, str | None]:
        """(rows, outcome, problem): a problem is retried or quarantined by the caller;
        the outcome given with a problem is the quarantine record (None while stopping)."""
        try:
            returned = future.result()
        except Exception as error:  # the app raised, timed out, or its worker died
            problem = f"{type(error).__name__}: {error}"
            return None, self._quarantined(task, problem, None, None), problem
        started, ended = returned["started"], returned["ended"]
        try:
            arrays = check_result(returned["outputs"])
        except BadResultError as error:
            problem = f"bad result: {error}"
            return None, self._quarantined(task, problem, started, ended), problem
        x = arrays.pop("x")
        n = x.shape[0]
        meta = Rows.meta_for(task.task_id, n, task.parent_row, task.round_index,
                             task.submitted, started, ended)
        rows = Rows(x=x, y=arrays, meta=meta)
        return rows, TaskOutcome(task.task_id, "done", started, ended, rows=n), None

    def _quarantined(self, task: SubmittedTask, problem: str, started: float | None,
                     ended: float | None) -> TaskOutcome | None:
        if self.stop.stopping:
            return None
        reason = f"after {task.attempt} attempt{'s' if task.attempt > 1 else ''}: {problem}"
        return TaskOutcome(task.task_id, "quarantined", started, ended, reason=reason[:2000])

    # -- progress --------------------------------------------------------------------
    def _log_round(self, round_index: int) -> None:
        parts = []
        for scale in self.spec.scales:
            limit = self.spec.budget.tasks.get(scale.name)
            tasks = len(self.ledger.tasks(scale.name))
            parts.append(f"{scale.name} {self.store.rows(scale.name)} rows "
                         f"({tasks}{'' if limit is None else f'/{limit}'} tasks)")
        for state in self._promotions:
            records = self.ledger.rounds(state.promotion.name)
            if records and records[-1]["round"] == round_index:
                parts.append(f"{state.promotion.name}{_error_text(records[-1])}")
        logger.info("round %d | %s", round_index, " | ".join(parts))


def _error_text(record: dict[str, Any]) -> str:
    text = ""
    if record.get("fit_seconds") is not None:
        text += f" fit {record['fit_seconds']:.2f} s"
    if record.get("reference_rmse") is not None:
        text += f" reference rmse {record['reference_rmse']:.3g}"
    if record.get("prospective_rmse") is not None:
        text += f" prospective rmse {record['prospective_rmse']:.3g}"
    return text
