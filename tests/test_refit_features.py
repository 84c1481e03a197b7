"""Refittable features: refitted before each learner fit, every stored feature recomputed,
in rounds mode (with exact replay on resume) and in async mode."""

import time

import numpy as np
import pytest
from conftest import TINY_COARSE, TINY_FINE, tiny_campaign
from test_resume import open_run, signal_on_call, stores_equal

from apps import toy
from campaign import Budget, Scale
from campaign.engine import Engine
from campaign.spec import refittable


class StandardizedPositions:
    """Refittable featurizer: the 2-D positions, standardized by the rows of its refit."""

    def __init__(self, mean=(0.0, 0.0), sd=(1.0, 1.0), refits=0, fitted_on=0):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.sd = np.asarray(sd, dtype=np.float64)
        self.refits = refits
        self.fitted_on = fitted_on

    def __call__(self, x):
        return (toy.positions(x) - self.mean) / self.sd

    def refit(self, x_source):
        positions = toy.positions(x_source)
        return StandardizedPositions(positions.mean(axis=0), positions.std(axis=0) + 1e-9,
                                     self.refits + 1, len(positions))

    def __repr__(self):
        return f"StandardizedPositions(refits={self.refits})"


def refit_campaign(**changes):
    promotion = {"features": StandardizedPositions(), **changes.pop("promotion", {})}
    return tiny_campaign(promotion=promotion, **changes)


def run_engine(spec, run_dir, **options):
    engine = Engine(spec, run_dir, site="threads", **options)
    return engine, engine.run()


def check_features_are_the_refits(engine):
    held = engine.state.promotions[0]
    source = engine.state.scales["coarse"]
    featurizer = held.featurizer
    assert isinstance(featurizer, StandardizedPositions) and featurizer.refits >= 1
    assert held.featurized == source.committed_rows
    x = source.x.values[:source.committed_rows]
    np.testing.assert_allclose(held.features.values, featurizer(x), rtol=0, atol=1e-12)
    X, _ = held.training_set()
    np.testing.assert_allclose(X, featurizer(x[np.asarray(held.train_rows)]), atol=1e-12)
    return held


def test_protocol_is_detected():
    assert refittable(StandardizedPositions()) and not refittable(toy.positions)
    spec = refit_campaign()
    assert spec.promotions[0].refits_features and not tiny_campaign().promotions[0].refits_features


def test_rounds_mode_refits_before_each_fit_from_the_spec_featurizer(tmp_path):
    spec = refit_campaign()
    engine, summary = run_engine(spec, tmp_path / "run")
    assert summary.stop_reason == "task budget spent (fine=12)"
    held = check_features_are_the_refits(engine)
    assert spec.promotions[0].features.refits == 0  # the spec's featurizer is untouched
    # rounds mode refits the spec's featurizer each time: deterministic, no chain
    assert held.featurizer.refits == 1
    assert held.featurizer.fitted_on == engine.state.scales["coarse"].committed_rows
    ledger, store = open_run(tmp_path / "run")
    fitted = [r for r in ledger.rounds("coarse-to-fine") if r.get("n_train")]
    assert [r["n_train"] for r in fitted] == [4, 8, 12]
    coarse = store.read("coarse")
    for record in fitted[:-1]:  # round r refitted on the source rows of rounds < r
        r = record["round"]
        assert record["features_refit_on"] == int(np.sum(coarse.meta["round"] < r))
    assert all(r["reference_rmse"] > 0 for r in fitted)  # reference rows featurized
    assert fitted[-1]["features_refit_on"] == len(coarse)
    ledger.close()


def test_non_refittable_features_are_unchanged(tmp_path):
    engine, _ = run_engine(tiny_campaign(budget=Budget(fine=8)), tmp_path / "plain")
    held = engine.state.promotions[0]
    assert held.featurizer is toy.positions and held.features_version == 0
    ledger, _ = open_run(tmp_path / "plain")
    assert not any("features_refit_on" in r for r in ledger.rounds("coarse-to-fine"))
    ledger.close()


def test_async_mode_refits_on_the_train_executor_and_swaps_in_together(tmp_path):
    spec = refit_campaign(mode="async", budget=Budget(fine=16))
    engine, summary = run_engine(spec, tmp_path / "run")
    assert not summary.failed and summary.stop_reason == "task budget spent (fine=16)"
    held = check_features_are_the_refits(engine)
    ledger, _ = open_run(tmp_path / "run")
    fitted = [r for r in ledger.rounds("coarse-to-fine") if r.get("n_train")]
    assert len(fitted) >= 2 and all(r["features_refit_on"] > 0 for r in fitted)
    # warm: each refit starts from the current featurizer, one per installed model
    assert held.featurizer.refits == len(fitted) == held.features_version
    assert fitted[-1]["policy"] == "final fit"
    ledger.close()


def refit_campaign_with_hook(hook):
    return refit_campaign(
        scales=[Scale("coarse", app=toy.langevin, params=TINY_COARSE,
                      walkers=toy.initial_walkers(2), refresh_params=hook),
                Scale("fine", app=toy.smeared_energy, params=TINY_FINE)],
        budget=Budget(fine=12))


@pytest.mark.parametrize("stop_at_call", [3])
def test_rounds_resume_chooses_the_same_rows_as_uninterrupted(tmp_path, stop_at_call):
    refit_campaign_with_hook(lambda data: {}).run(site="threads", out=tmp_path / "straight")
    stopped = refit_campaign_with_hook(signal_on_call(stop_at_call)).run(
        site="threads", out=tmp_path / "cut")
    assert stopped.interrupted
    resumed = refit_campaign_with_hook(lambda data: {}).run(site="threads", out=tmp_path / "cut",
                                                            resume=True)
    assert resumed.stop_reason == "task budget spent (fine=12)"
    a, b = open_run(tmp_path / "straight"), open_run(tmp_path / "cut")
    stores_equal(a[1], b[1])
    chosen = [[r.get("chosen_rows") for r in ledger.rounds("coarse-to-fine")
               if "chosen_rows" in r] for ledger, _ in (a, b)]
    assert chosen[0] == chosen[1]
    curve = [[(r["n_train"], r["reference_rmse"]) for r in ledger.rounds("coarse-to-fine")
              if r.get("n_train")] for ledger, _ in (a, b)]
    assert curve[0] == curve[1]


class SlowStandardizedPositions(StandardizedPositions):
    """Refits slowly, so walker rows arrive and selections run while a refit is out."""

    def refit(self, x_source):
        time.sleep(0.3)
        fitted = super().refit(x_source)
        return SlowStandardizedPositions(fitted.mean, fitted.sd, fitted.refits, fitted.fitted_on)


def test_async_model_and_features_are_consistent_in_every_selection(tmp_path, monkeypatch):
    import campaign.steer_async
    import campaign.task

    holder = {}
    checked = []
    fit_and_refit = campaign.task.fit_features_and_learner
    select = campaign.steer_async.select_batch

    def tagging_fit(features, *args, **kwargs):
        result = fit_and_refit(features, *args, **kwargs)
        result["learner"].featurizer_tag = id(result["features"])
        return result

    def checking_select(request):
        source = holder["engine"].state.scales["coarse"]
        known = request.known_features
        if len(known):
            np.testing.assert_allclose(known, request.featurizer(source.x.values[:len(known)]),
                                       atol=1e-12)
        if request.learner is not None:
            assert request.learner.featurizer_tag == id(request.featurizer)
        checked.append(request.learner is not None)
        return select(request)

    monkeypatch.setattr(campaign.task, "fit_features_and_learner", tagging_fit)
    monkeypatch.setattr(campaign.steer_async, "select_batch", checking_select)
    spec = refit_campaign(mode="async", budget=Budget(fine=16),
                          promotion={"features": SlowStandardizedPositions(), "batch_size": 2})
    engine = Engine(spec, tmp_path / "run", site="threads")
    holder["engine"] = engine
    summary = engine.run()
    assert not summary.failed
    assert sum(checked) >= 2  # selections by fitted models were checked
    check_features_are_the_refits(engine)


def test_a_monitor_reading_the_surrogate_is_refused_with_refitted_features():
    from learners.monitor import ConfidenceMonitor, NoveltyMonitor

    def with_monitor(monitor):
        return refit_campaign(mode="async", scales=[
            Scale("coarse", app=toy.langevin, params=TINY_COARSE,
                  walkers=toy.initial_walkers(2), monitor=monitor),
            Scale("fine", app=toy.smeared_energy, params=TINY_FINE)])

    with pytest.raises(ValueError, match="refits its features"):
        with_monitor(ConfidenceMonitor(std_below=0.1))
    with_monitor(NoveltyMonitor())


def test_async_resume_refits_before_the_restored_model_is_used(tmp_path):
    def spec(hook):
        return refit_campaign(mode="async", budget=Budget(fine=16), scales=[
            Scale("coarse", app=toy.langevin, params=TINY_COARSE,
                  walkers=toy.initial_walkers(2), refresh_params=hook),
            Scale("fine", app=toy.smeared_energy, params=TINY_FINE)])

    # the hook runs at start and after each model's install: interrupted after the first
    stopped = spec(signal_on_call(2)).run(site="threads", out=tmp_path / "run")
    assert stopped.interrupted
    engine, resumed = run_engine(spec(lambda data: {}), tmp_path / "run", resume=True)
    assert not resumed.failed and resumed.stop_reason == "task budget spent (fine=16)"
    held = check_features_are_the_refits(engine)
    ledger, _ = open_run(tmp_path / "run")
    fitted = [r for r in ledger.rounds("coarse-to-fine") if r.get("n_train")]
    # the resumed run's first fit started again from the spec's featurizer
    assert held.featurizer.refits == held.features_version < len(fitted)
    ledger.close()
