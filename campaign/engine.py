"""The steering loop: the only process that writes a run's store and ledger.

One round (DESIGN's flow):

1. every walker of a broadly sampled scale runs one task from its last configuration;
2. for every promotion, at the same time: fit the learner on the finer scale's results
   (a task on the ``train`` executor), take its posterior over the candidate pool (rows
   of the source scale not yet promoted) and over pending points, let the acquisition
   choose a batch, map the chosen rows and submit them to the finer scale;
3. results are checked and committed as they complete; failures and bad results are
   recorded and quarantined, never stored as rows, never trained on.

The loop is round-locked (it waits for the round's tasks) but is written as
submit / ingest steps around ``concurrent.futures.wait`` so that an asynchronous
version only changes :meth:`Engine._run_round`.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from campaign.ledger import Ledger, TaskOutcome
from campaign.lock import RunLock
from campaign.spec import CampaignSpec, Promotion, Scale
from campaign.store import Rows, Store
from campaign.task import BadResultError, check_result, fit_learner, run_app

logger = logging.getLogger(__name__)

COMMIT_EVERY_ROWS = 10_000


class RunDirError(RuntimeError):
    """The output directory cannot hold this campaign (it holds another one)."""


@dataclass
class SubmittedTask:
    """A task in flight: its ledger id and what the engine needs when it completes."""

    task_id: int
    scale: str
    round_index: int
    parent_row: int
    submitted: float
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
    """What a finished run reports: where it is, what ran, why it stopped."""

    run_dir: Path
    name: str
    rounds: int
    stop_reason: str
    wall_seconds: float
    task_counts: dict[str, dict[str, int]]
    rows: dict[str, int]
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


def prepare_run_dir(run_dir: Path, name: str, overwrite: bool) -> None:
    """Refuse a directory holding another campaign, or this one already run, unless
    ``overwrite`` (which deletes only a previous run of a campaign, nothing else)."""
    ledger_path = run_dir / "ledger.sqlite"
    if not ledger_path.exists():
        if run_dir.exists() and any(p.name != "campaign.lock" for p in run_dir.iterdir()):
            raise RunDirError(f"{run_dir} exists and is not a campaign run directory; "
                              "choose a new --out")
        return
    ledger = Ledger(ledger_path)
    holder = ledger.fact("name")
    done = sum(sum(c.values()) for c in ledger.task_counts().values())
    ledger.close()
    if holder != name:
        raise RunDirError(f"{run_dir} holds campaign '{holder}', not '{name}'; choose a "
                          "new --out")
    if not overwrite:
        raise RunDirError(f"{run_dir} already holds a run of '{name}' ({done} tasks); choose "
                          "a new --out or pass --overwrite to replace it")
    import shutil

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


class Engine:
    """Runs one campaign spec into one run directory on one Parsl site."""

    def __init__(self, spec: CampaignSpec, run_dir: str | Path, *, site: str = "local",
                 site_params: dict[str, Any] | None = None, script: str | None = None,
                 overwrite: bool = False, torch_threads: int = 1) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.site = site
        self.site_params = site_params or {}
        self.script = script
        self.overwrite = overwrite
        self.torch_threads = torch_threads

    # -- the whole run ---------------------------------------------------------------
    def run(self) -> RunSummary:
        import parsl

        from site_configs import get_config

        config = get_config(self.site, scales=[s.name for s in self.spec.scales],
                            run_dir=str(self.run_dir / "parsl"), **self.site_params)
        self._set_torch_threads()
        with RunLock(self.run_dir):
            prepare_run_dir(self.run_dir, self.spec.name, self.overwrite)
            self.ledger = Ledger(self.run_dir / "ledger.sqlite")
            try:
                self.store = Store(self.run_dir, self.ledger)
                self._record_facts()
                put_interpreter_on_path()
                dfk = parsl.load(config)
                try:
                    return self._steer(dfk)
                finally:
                    dfk.cleanup()
                    parsl.clear()
            finally:
                self.ledger.close()

    def _set_torch_threads(self) -> None:
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(self.torch_threads)

    def _record_facts(self) -> None:
        self.ledger.set_fact("name", self.spec.name)
        self.ledger.set_fact("spec", self.spec.describe())
        self.ledger.set_fact("script", self.script)
        self.ledger.set_fact("site", self.site)
        self.ledger.set_fact("versions", versions())
        self.ledger.set_fact("created", time.time())

    def _steer(self, dfk: Any) -> RunSummary:
        from parsl.app.app import python_app

        self._sim_apps = {
            scale.name: python_app(run_app, executors=[scale.executor_label],
                                   data_flow_kernel=dfk)
            for scale in self.spec.scales
        }
        self._train_app = python_app(fit_learner, executors=["train"], data_flow_kernel=dfk)
        self._refreshed_params: dict[str, dict[str, Any]] = {}
        self._walkers = {s.name: s.walkers.copy() for s in self.spec.scales
                         if s.walkers is not None}
        # a copy: the spec's learner stays unfitted (a thread executor fits in place)
        self._promotions = [PromotionState(p, copy.deepcopy(p.learner))
                            for p in self.spec.promotions]
        started = time.time()
        round_index = 0
        stop_reason = ""
        while not stop_reason:
            stop_reason = self._stop_reason(round_index, started)
            if stop_reason:
                break
            submitted = self._run_round(round_index)
            round_index += 1
            if submitted == 0:
                stop_reason = "nothing left to run (candidate pool exhausted)"
        for state in self._promotions:
            self._fit_final(state, round_index)
        self.ledger.set_fact("stop_reason", stop_reason)
        self.ledger.set_fact("wall_seconds", time.time() - started)
        logger.info("campaign %s stopped after %d rounds: %s", self.spec.name, round_index,
                    stop_reason)
        return RunSummary(
            run_dir=self.run_dir, name=self.spec.name, rounds=round_index,
            stop_reason=stop_reason, wall_seconds=time.time() - started,
            task_counts=self.ledger.task_counts(),
            rows={s.name: self.store.rows(s.name) for s in self.spec.scales},
            curves={p.name: self.ledger.rounds(p.name) for p in self.spec.promotions},
        )

    # -- budget ----------------------------------------------------------------------
    def _tasks_left(self, scale: str) -> int | None:
        limit = self.spec.budget.tasks.get(scale)
        if limit is None:
            return None
        return max(0, limit - len(self.ledger.tasks(scale)))

    def _stop_reason(self, round_index: int, started: float) -> str:
        budget = self.spec.budget
        if budget.rounds is not None and round_index >= budget.rounds:
            return f"round budget reached ({budget.rounds} rounds)"
        if budget.wall_time is not None and time.time() - started >= budget.wall_time:
            return f"wall-time budget reached ({budget.wall_time:g} s)"
        targets = [p.target for p in self.spec.promotions]
        if targets and all(self._tasks_left(t) == 0 for t in targets):
            spent = ", ".join(f"{t}={budget.tasks[t]}" for t in targets)
            return f"task budget spent ({spent})"
        return ""

    # -- one round -------------------------------------------------------------------
    def _run_round(self, round_index: int) -> int:
        self._refresh_params()
        in_flight: dict[concurrent.futures.Future[Any], SubmittedTask] = {}
        for scale in self.spec.scales:
            if scale.walkers is not None:
                in_flight.update(self._submit_walkers(scale, round_index))
        for state in self._promotions:
            in_flight.update(self._promote(state, round_index))
        self._ingest(in_flight)
        for state in self._promotions:
            self._score_new_results(state, round_index)
        self._log_round(round_index)
        return len(in_flight)

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

    def _submit(self, scale: Scale, round_index: int, task_input: np.ndarray, parent_row: int,
                walker: int | None = None) -> tuple[concurrent.futures.Future[Any], SubmittedTask]:
        seed_sequence = np.random.SeedSequence([self.spec.seed, len(self.ledger.tasks()) + 1])
        seed = int(seed_sequence.generate_state(1)[0])
        task_id = self.ledger.submit(scale.name, round_index, seed, parent_row,
                                     np.asarray(task_input, dtype=np.float64).ravel().tolist())
        params = {**scale.params, **self._refreshed_params.get(scale.name, {})}
        future = self._sim_apps[scale.name](scale.app, task_input, seed, params)
        return future, SubmittedTask(task_id, scale.name, round_index, parent_row,
                                     time.time(), walker)

    def _submit_walkers(self, scale: Scale, round_index: int) -> dict[Any, SubmittedTask]:
        left = self._tasks_left(scale.name)
        walkers = self._walkers[scale.name]
        count = len(walkers) if left is None else min(left, len(walkers))
        return dict(self._submit(scale, round_index, walkers[w], -1, walker=w)
                    for w in range(count))

    def _promote(self, state: PromotionState, round_index: int) -> dict[Any, SubmittedTask]:
        promotion = state.promotion
        left = self._tasks_left(promotion.target)
        pool = self.store.read(promotion.source)
        if len(pool) == 0 or left == 0:
            return {}
        features = self._pool_features(state, pool.x)
        promoted = {task["parent_row"] for task in self.ledger.tasks(promotion.target)}
        pending_rows = [task["parent_row"] for task in
                        self.ledger.tasks(promotion.target, status="submitted")]
        candidates = np.array([row for row in range(len(pool)) if row not in promoted],
                              dtype=np.int64)
        k = promotion.batch_size if left is None else min(left, promotion.batch_size)
        if len(candidates) == 0:
            return {}
        rng = np.random.default_rng([self.spec.seed, round_index, 7919])
        record: dict[str, Any] = {"n_pool": int(len(pool)), "n_candidates": int(len(candidates))}
        train_X, train_y = self._training_set(state)
        if len(train_y) == 0:
            k = min(promotion.seed_design_size, k if left is None else left)
            chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
            record.update(policy="seed design (random)", n_train=0)
        else:
            record.update(self._fit(state, round_index, train_X, train_y))
            select_started = time.time()
            points = np.concatenate([features[candidates], features[pending_rows]])
            posterior = state.learner.posterior(points)
            positions = promotion.acquisition.select(
                posterior, k, np.arange(len(candidates), len(points), dtype=np.int64), rng)
            chosen = candidates[np.asarray(positions, dtype=np.int64)]
            record.update(policy=type(promotion.acquisition).__name__,
                          select_seconds=time.time() - select_started,
                          chosen_variance_mean=float(np.mean(posterior.variance[positions]))
                          if len(positions) else None)
        record["chosen_rows"] = [int(row) for row in chosen]
        self.ledger.record_round(round_index, promotion.name, record)
        target = self.spec.scale(promotion.target)
        submitted = {}
        for row in chosen:
            task_input = pool.x[row] if promotion.mapping is None else promotion.mapping(
                pool.x[row])
            future, task = self._submit(target, round_index, np.asarray(task_input), int(row))
            submitted[future] = task
        return submitted

    def _pool_features(self, state: PromotionState, pool_x: np.ndarray) -> np.ndarray:
        """Features of every source row, computing only rows not seen before."""
        known = 0 if state.features is None else len(state.features)
        if known < len(pool_x):
            new = np.asarray(state.promotion.features(pool_x[known:]), dtype=np.float64)
            if new.ndim != 2 or new.shape[0] != len(pool_x) - known:
                raise BadResultError(f"features of promotion {state.promotion.name} must return "
                                f"(n, f) for n rows, got {new.shape}")
            state.features = new if state.features is None else np.concatenate(
                [state.features, new])
        return state.features

    def _training_set(self, state: PromotionState) -> tuple[np.ndarray, np.ndarray]:
        """Learner inputs are the features of the *source* rows that were promoted (so the
        learner predicts the finer scale's quantity where candidates live)."""
        target = self.store.read(state.promotion.target)
        if len(target) == 0:
            return np.zeros((0, 0)), np.zeros(0)
        quantity = self._quantity(state, target.y)
        values = np.asarray(target.y[quantity], dtype=np.float64)
        if values.ndim > 1:
            if values.shape[1:] != (1,):
                raise BadResultError(f"quantity '{quantity}' must be one number per row to be "
                                f"learned, got rows of shape {values.shape[1:]}")
            values = values[:, 0]
        parents = target.meta["parent_row"]
        return state.features[parents], values

    def _quantity(self, state: PromotionState, outputs: dict[str, np.ndarray]) -> str:
        if state.quantity is None:
            wanted = state.promotion.quantity
            if wanted is None:
                if len(outputs) != 1:
                    raise BadResultError(f"promotion {state.promotion.name}: the target scale "
                                    f"returns {sorted(outputs)}; set quantity= to one of them")
                wanted = next(iter(outputs))
            if wanted not in outputs:
                raise BadResultError(f"promotion {state.promotion.name}: quantity '{wanted}' is "
                                f"not an output of scale '{state.promotion.target}' "
                                f"(outputs: {', '.join(sorted(outputs))})")
            state.quantity = wanted
        return state.quantity

    def _fit(self, state: PromotionState, round_index: int, X: np.ndarray,
             y: np.ndarray) -> dict[str, Any]:
        """Fit on the train executor, save the weights, measure reference error."""
        fitted = self._train_app(state.learner, X, y).result()
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

    def _score_new_results(self, state: PromotionState, round_index: int) -> None:
        """Error of the model that chose this round's points on those points, measured
        before it is trained on them: an honest, prospective error estimate."""
        if state.fitted_round != round_index:
            return
        target = self.store.read(state.promotion.target)
        new = target.meta["round"] == round_index if len(target) else np.zeros(0, bool)
        if not np.any(new):
            return
        values = np.asarray(target.y[state.quantity], dtype=np.float64).reshape(len(target))
        posterior = state.learner.posterior(state.features[target.meta["parent_row"][new]])
        error = posterior.mean - values[new]
        z = error / np.sqrt(posterior.variance + posterior.noise_variance)
        records = {r["round"]: r for r in self.ledger.rounds(state.promotion.name)}
        record = records[round_index]
        record.pop("round")
        record.pop("promotion")
        record.update(prospective_rmse=float(np.sqrt(np.mean(error**2))),
                      prospective_z_std=float(np.std(z)), n_scored=int(np.sum(new)))
        self.ledger.record_round(round_index, state.promotion.name, record)

    # -- ingest ----------------------------------------------------------------------
    def _ingest(self, in_flight: dict[concurrent.futures.Future[Any], SubmittedTask]) -> None:
        """Check each result as it completes; commit rows per scale in batches."""
        buffers: dict[str, tuple[list[Rows], list[TaskOutcome]]] = {}
        for future in concurrent.futures.as_completed(in_flight):
            task = in_flight[future]
            rows, outcome = self._check(future, task)
            batch, outcomes = buffers.setdefault(task.scale, ([], []))
            outcomes.append(outcome)
            if rows is not None:
                batch.append(rows)
                if task.walker is not None:
                    self._walkers[task.scale][task.walker] = rows.x[-1]
            if sum(len(r) for r in batch) >= COMMIT_EVERY_ROWS:
                self._commit(task.scale, batch, outcomes)
        for scale, (batch, outcomes) in buffers.items():
            self._commit(scale, batch, outcomes)

    def _commit(self, scale: str, batch: list[Rows], outcomes: list[TaskOutcome]) -> None:
        # rows in task order, not completion order: the same seed gives the same store
        batch.sort(key=lambda rows: int(rows.meta["task_id"][0]))
        if batch or outcomes:
            self.store.commit(scale, Rows.concatenate(batch) if batch else None, list(outcomes))
        batch.clear()
        outcomes.clear()

    def _check(self, future: concurrent.futures.Future[Any],
               task: SubmittedTask) -> tuple[Rows | None, TaskOutcome]:
        try:
            returned = future.result()
        except Exception as error:  # the app raised, or its worker died
            reason = f"{type(error).__name__}: {error}"
            logger.warning("task %d (%s) failed: %s", task.task_id, task.scale, reason)
            return None, TaskOutcome(task.task_id, "failed", reason=reason[:2000])
        started, ended = returned["started"], returned["ended"]
        try:
            arrays = check_result(returned["outputs"])
        except BadResultError as error:
            logger.warning("task %d (%s) quarantined: %s", task.task_id, task.scale, error)
            return None, TaskOutcome(task.task_id, "quarantined", started, ended,
                                     reason=str(error))
        x = arrays.pop("x")
        n = x.shape[0]
        meta = Rows.meta_for(task.task_id, n, task.parent_row, task.round_index,
                             task.submitted, started, ended)
        rows = Rows(x=x, y=arrays, meta=meta)
        return rows, TaskOutcome(task.task_id, "done", started, ended, rows=n)

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
