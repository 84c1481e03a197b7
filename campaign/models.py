"""The model keeper: every promotion's surrogate, fitted, installed once, scored.

Owns: the warm-up fit at launch, fits (waited for in rounds mode and for the final
fit; in the background on ``train`` in async mode, or in this process when no ``train``
worker is up yet, so the first model never waits for a late worker), the
one install of a fitted model (saved to the store, recorded in the ledger, a refitted
featurizer swapped in with it), taking committed results into the posterior at once
(``learner.condition``, where the learner supports it), prospective scoring, and the
reference error. Round records live in memory (``PromotionState.records``): no
decision reads them back from the ledger.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from campaign.dispatcher import Dispatcher
from campaign.events import FitReturned, ModelReady, PosteriorConditioned, Scored
from campaign.faults import fault_point
from campaign.ledger import Ledger
from campaign.planner import featurize
from campaign.progress import error_text, score_of
from campaign.signals import StopRequest
from campaign.spec import CampaignSpec
from campaign.state import CampaignState, PromotionState
from campaign.store import Store
from campaign.task import fit_features_and_learner, fit_learner
from learners.calibration import calibration_metrics

logger = logging.getLogger(__name__)

WARM_UP_POINTS = 8  # random 2-D points a learner's warm-up fit sees (campaign.task.warm_learner)
POLL_SECONDS = 0.2


class FitAbandonedError(Exception):
    """A second stop signal arrived while a learner was being fitted."""


class ModelKeeper:
    """Fits, installs and scores the promotions' models (steering thread)."""

    def __init__(self, spec: CampaignSpec, state: CampaignState, store: Store, ledger: Ledger,
                 parsl: Any, dispatcher: Dispatcher, stop: StopRequest,
                 on_wait: Callable[[], None]) -> None:
        self.spec, self.state, self.store, self.ledger = spec, state, store, ledger
        self.parsl, self.dispatcher, self.stop, self.on_wait = parsl, dispatcher, stop, on_wait
        self.warmups = {p.name: self._warm_up(p) for p in state.promotions}

    # -- fits ------------------------------------------------------------------------
    def _warm_up(self, held: PromotionState) -> concurrent.futures.Future[Any]:
        """At launch: fit a copy of the learner on a few random points on ``train``, so
        the first real fit finds a warm worker; a failure is logged, never raised."""
        X = np.random.default_rng(self.spec.seed).normal(size=(WARM_UP_POINTS, 2))
        future = self.parsl.warm_app(copy.deepcopy(held.learner), X, self.spec.seed)
        future.add_done_callback(lambda done: _warmed(held.name, done))
        return future

    def train_worker_up(self, held: PromotionState) -> bool:
        """Whether a ``train`` worker has answered (its warm-up fit came back)."""
        warming = self.warmups.get(held.name)
        return warming is None or (warming.done() and warming.exception() is None)

    def fit_now(self, held: PromotionState, X: np.ndarray, y: np.ndarray,
                before_round: int | None = None) -> dict[str, Any]:
        """Fit a copy of the learner on ``train`` and wait for it (a second stop signal
        abandons the wait). A warm-up fit still running is waited for first: two fits
        at once on a thread executor would share torch's global seed, and rounds mode
        replays exactly."""
        warming = self.warmups.pop(held.name, None)
        if warming is not None:
            self._wait_for(warming)
        if held.promotion.refits_features:
            fitting = self.parsl.refit_app(*self._refit_args(held, before_round))
        else:
            fitting = self.parsl.train_app(copy.deepcopy(held.learner), X, y)
        fault_point("during-fit")
        self._wait_for(fitting)
        return fitting.result()

    def _wait_for(self, future: concurrent.futures.Future[Any]) -> None:
        while not future.done():
            if self.stop.stop_now:
                raise FitAbandonedError
            concurrent.futures.wait([future], timeout=POLL_SECONDS)
            self.on_wait()

    def _refit_args(self, held: PromotionState, before_round: int | None) -> tuple[Any, ...]:
        """Refittable features: one job refits the featurizer on the committed source
        rows (of rounds before ``before_round`` when given), featurizes every source row
        and fits the learner there. Rounds mode refits the spec's featurizer (exact
        replay needs nothing saved); async mode the current one (a warm start)."""
        promotion = held.promotion
        source = self.state.scales[promotion.source]
        n = source.committed_rows
        assert source.x is not None and source.row_round is not None
        rows, values = held.training_rows(before_round)
        fit_rows = None
        if before_round is not None:
            fit_rows = np.flatnonzero(source.row_round.values[:n] < before_round)
        base = promotion.features if self.spec.mode == "rounds" else held.featurizer
        return (base, source.x.values[:n].copy(), rows, copy.deepcopy(held.learner), values,
                fit_rows)

    def start_fit(self, held: PromotionState) -> None:
        """Async: fit on every committed result in the background. The first fit runs
        in this process (``Dispatcher.fit_here``) while no ``train`` worker is up yet."""
        n = len(held.train_rows)
        X, y = held.training_set()
        if held.fitted and held.features is not None:  # prospective: never seen by it
            rows = np.asarray(held.train_rows[held.trained_on:], np.int64)
            values = np.asarray(held.train_y[held.trained_on:])
            generation = held.generation
            self.dispatcher.on_model_thread(
                prospective, (held.installed, held.features.values[rows], values),
                lambda result: Scored(held, generation, result))
        held.trained_on = n
        held.fitting = True

        def returned(future: concurrent.futures.Future[Any]) -> FitReturned:
            try:
                return FitReturned(held, n, future.result())
            except Exception as error:  # a failing fit keeps the previous model
                return FitReturned(held, n, None, f"{type(error).__name__}: {error}")

        if held.promotion.refits_features:
            args = self._refit_args(held, None)
            if self.train_worker_up(held) or held.fitted:
                self.dispatcher.on_train("refit_app", args, returned)
            else:
                self.dispatcher.fit_here(fit_features_and_learner, args, returned)
        elif self.train_worker_up(held) or held.fitted:
            self.dispatcher.on_train("train_app", (copy.deepcopy(held.learner), X, y),
                                     returned)
        else:
            self.dispatcher.fit_here(
                fit_learner, (copy.deepcopy(held.learner), X, y), returned)
        fault_point("during-fit")

    def prepare_install(self, event: FitReturned) -> None:
        """Async: a fit returned; its reference error (and, with refittable features,
        the new features of rows featurized since) is computed on the model thread."""
        held = event.promotion
        held.fitting = False
        if event.fitted is None:
            logger.warning("%s: fit on %d points failed (%s); keeping the previous model",
                           held.name, event.n_train, event.error)
            held.trained_on = min(held.trained_on, event.n_train - 1)
            return
        fitted, n_train = event.fitted, event.n_train
        held.installing = True
        if "features" in fitted:
            more = self._source_rows(held, len(fitted["X"]))
            self.dispatcher.on_model_thread(
                self._features_and_error, (held, fitted, more),
                lambda scored: ModelReady(held, fitted, n_train, scored))
        else:
            self.dispatcher.on_model_thread(
                self.reference_error, (held, fitted["learner"]),
                lambda scored: ModelReady(held, fitted, n_train, scored))

    def _source_rows(self, held: PromotionState, start: int) -> np.ndarray:
        source = self.state.scales[held.promotion.source]
        if source.x is None or held.featurized <= start:
            return np.zeros((0, 0))
        return source.x.values[start:held.featurized].copy()

    def _features_and_error(self, held: PromotionState, fitted: dict[str, Any],
                            more_rows: np.ndarray) -> dict[str, Any]:
        """Model thread: refitted features of rows featurized since the fit was
        submitted (appended to ``fitted["X"]``), and the new model's reference error."""
        more = featurize(held.promotion, more_rows, fitted["features"])
        if len(more):
            fitted["X"] = np.concatenate([np.asarray(fitted["X"], np.float64), more])
        return self.reference_error(held, fitted["learner"], fitted["features"])

    # -- installing ------------------------------------------------------------------
    def install(self, held: PromotionState, fitted: dict[str, Any], model_index: int,
                n_train: int, record: dict[str, Any]) -> None:
        """Make ``fitted`` the promotion's newest model, once: swap in a refitted
        featurizer with it, save it, record it under ``model_index`` (``record`` holds
        its reference error when it was measured on the model thread)."""
        if "features" in fitted:  # rows featurized meanwhile: recomputed with the refit
            featurized = held.featurized
            held.replace_features(fitted["features"], fitted["X"])
            self.featurize_all(held, upto=featurized)
            record.update(features_refit_on=fitted["features_fitted_on"],
                          features_seconds=fitted["features_seconds"])
        held.learner = held.installed = fitted["learner"]
        held.fitted = True
        held.installing = False
        held.generation = model_index
        held.seen = n_train
        path = self.store.save_model(held.name, model_index, held.learner.state_dict(),
                                     n_train, type(held.learner).__name__)
        record.update(n_train=int(n_train), fit_seconds=fitted["seconds"], model=path,
                      fit_started=fitted.get("started"), fit_ended=fitted.get("ended"))
        if "reference_rmse" not in record and held.promotion.reference is not None:
            record.update(self.reference_error(held, held.learner))
        self.record(held, model_index, record)

    def installed(self, event: ModelReady) -> None:
        """Async: a fitted model with its reference error is ready: install it."""
        held = event.promotion
        record = {"policy": type(held.promotion.acquisition).__name__, **event.scored}
        self.install(held, event.fitted, held.generation + 1, event.n_train, record)
        logger.info("%s: model %d fitted on %d points%s", held.name, held.generation,
                    event.n_train, error_text(record))

    def record(self, held: PromotionState, model_index: int, record: dict[str, Any]) -> None:
        """Keep ``record`` as model ``model_index``'s, in memory and in the ledger."""
        held.records[model_index] = record
        if model_index == held.generation or not held.last_record:
            held.last_record = record
        self.ledger.record_round(model_index, held.name, record)

    def condition(self, held: PromotionState) -> None:
        """Async: take committed results the posterior has not seen into it at once
        (``learner.condition(X, y)``: fixed hyperparameters, on the model thread),
        where the learner supports it; refits still run on ``train``."""
        if (not held.fitted or held.conditioning or held.features is None
                or not getattr(held.learner, "supports_condition", False)):
            return
        n = len(held.train_rows)
        if n <= held.seen:
            return
        rows = np.asarray(held.train_rows[held.seen:n], np.int64)
        X, y = held.features.values[rows], np.asarray(held.train_y[held.seen:n])
        held.conditioning = True
        generation, learner = held.generation, held.learner
        self.dispatcher.on_model_thread(
            learner.condition, (X, y),
            lambda new: PosteriorConditioned(held, new, generation, n))

    def conditioned(self, event: PosteriorConditioned) -> None:
        held = event.promotion
        held.conditioning = False
        if event.generation == held.generation and event.seen > held.seen:
            held.learner, held.seen = event.learner, event.seen  # else a newer model came

    # -- scores ----------------------------------------------------------------------
    def reference_error(self, held: PromotionState, learner: Any,
                        featurizer: Any = None) -> dict[str, Any]:
        """Error of ``learner`` against the promotion's reference (async: on the model
        thread, the only user of the cached reference there)."""
        promotion = held.promotion
        if promotion.reference is None:
            return {}
        if held.reference is None:
            X_ref, y_ref = promotion.reference()
            held.reference = (np.asarray(X_ref, np.float64), np.asarray(y_ref, np.float64))
        X_ref, y_ref = held.reference
        if promotion.refits_features:
            X_ref = featurize(promotion, X_ref, featurizer if featurizer is not None
                              else held.featurizer)
        error = learner.posterior(X_ref).mean - y_ref
        if getattr(learner, "defined_up_to_constant", False):
            error = error - error.mean()  # e.g. a free energy learned from its gradient
        return {"reference_rmse": float(np.sqrt(np.mean(error**2))),
                "reference_max_error": float(np.max(np.abs(error)))}

    def score(self, held: PromotionState, model_index: int, rows: np.ndarray,
              values: np.ndarray) -> None:
        """Prospective error and calibration of model ``model_index`` on results it had
        not been trained on, measured here (rounds mode, the end of async mode)."""
        if len(rows) == 0 or held.features is None:
            return
        self.scored(Scored(held, model_index,
                           prospective(held.installed, held.features.values[rows], values)))

    def scored(self, event: Scored) -> None:
        """Add prospective calibration to the model's record and store group."""
        held, model_index = event.promotion, event.model_index
        record = held.records.get(model_index)
        if record is None:
            return
        calibration = event.calibration
        record.update(prospective_rmse=calibration["rmse"], n_scored=int(calibration["n"]),
                      calibration=calibration)
        held.scored = score_of(record, model_index)
        self.store.record_calibration(held.name, model_index, calibration)
        self.record(held, model_index, record)

    def fit_final(self, held: PromotionState, model_index: int) -> None:
        """Fit once more on everything, so the learning curve ends at the full budget."""
        X, y = held.training_set()
        if len(y) == 0:
            return
        try:
            fitted = self.fit_now(held, X, y)  # refittable: on every source row
        except FitAbandonedError:
            raise
        except Exception as error:  # e.g. a site whose train executor never started
            logger.warning("%s: final fit failed (%s: %s); the newest model stays",
                           held.name, type(error).__name__, error)
            return
        record: dict[str, Any] = {"policy": "final fit"}
        self.install(held, fitted, model_index, len(y), record)
        logger.info("final surrogate for %s: %d training points%s", held.name, len(y),
                    error_text(record))

    def featurize_all(self, held: PromotionState, upto: int | None = None) -> None:
        """Featurize the committed source rows not featurized yet (up to row ``upto``)."""
        source = self.state.scales[held.promotion.source]
        end = source.committed_rows if upto is None else min(upto, source.committed_rows)
        if source.x is None or held.featurized >= end:
            return
        new = featurize(held.promotion, source.x.values[held.featurized:end], held.featurizer)
        held.add_features(new, end - held.featurized)


def prospective(learner: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Calibration of ``learner`` on points it was not trained on. A learner of
    structured observations (``observation_posterior``) is scored on what they measured."""
    if hasattr(learner, "observation_posterior"):
        posterior, observed = learner.observation_posterior(X, y)
        return calibration_metrics(posterior, observed)
    return calibration_metrics(learner.posterior(X), y)


def _warmed(name: str, future: concurrent.futures.Future[Any]) -> None:
    try:
        result = future.result()
    except Exception as error:  # the train executor went away: the real fit will say so
        logger.debug("%s: warm-up fit did not run (%s)", name, error)
        return
    if result["problem"]:
        logger.debug("%s: warm-up fit on random targets failed (%s); no harm done", name,
                     result["problem"])
    else:
        logger.debug("%s: warm-up fit took %.2f s (ended %.3f)", name, result["seconds"],
                     result["ended"])
