"""Warm starts, early stopping and fit-time budgets of DeepEnsemble and ExactGP.

Work is counted in optimizer steps (DeepEnsemble) and marginal-likelihood evaluations
(ExactGP), not wall time, so the tests do not depend on the machine."""

from __future__ import annotations

import itertools
import types

import numpy as np
import pytest

import learners.gp
from learners import DeepEnsemble, ExactGP
from learners.ensemble import _held_out


def truth(X: np.ndarray) -> np.ndarray:
    """A smooth 2-D landscape with amplitude 1 on the unit square."""
    return np.sin(3.0 * X[:, 0]) * np.cos(2.0 * X[:, 1])


RNG = np.random.default_rng(11)
X_ALL = RNG.uniform(0.0, 1.0, size=(220, 2))
Y_ALL = truth(X_ALL)
X_TEST = RNG.uniform(0.0, 1.0, size=(500, 2))
Y_TEST = truth(X_TEST)


def rmse(learner, X: np.ndarray = X_TEST, y: np.ndarray = Y_TEST) -> float:
    return float(np.sqrt(np.mean((learner.posterior(X).mean - y) ** 2)))


def small_ensemble(**params) -> DeepEnsemble:
    return DeepEnsemble(**{"members": 3, "hidden": (32, 32), "steps": 800, "warm_steps": 150,
                           **params})


# -- DeepEnsemble -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ensembles() -> dict[str, DeepEnsemble]:
    warm = small_ensemble().fit(X_ALL[:200], Y_ALL[:200])
    first = {"steps": warm.n_steps_, "warm": warm.warm_started_, "new": warm.n_new_}
    warm.fit(X_ALL, Y_ALL)  # 10% more points: the same object warm-starts
    return {"warm": warm, "cold": small_ensemble().fit(X_ALL, Y_ALL), "first": first}


def test_ensemble_refit_warm_starts_with_fewer_steps_and_comparable_accuracy(ensembles):
    warm, cold = ensembles["warm"], ensembles["cold"]
    assert ensembles["first"]["warm"] is False and ensembles["first"]["new"] == 200
    assert warm.warm_started_ and not cold.warm_started_
    assert warm.n_new_ == 20 and cold.n_new_ == 220
    assert warm.n_steps_ <= 150 < 3 * 150 <= cold.n_steps_
    assert rmse(cold) < 0.05  # a fair baseline: the cold fit learned the function
    assert rmse(warm) <= 1.5 * rmse(cold) + 0.005


def test_ensemble_warm_start_after_load_state_dict_is_the_same_fit(ensembles):
    # The engine restores models from plain arrays on resume: a restored ensemble refits
    # exactly as the object it came from would have.
    first = small_ensemble().fit(X_ALL[:200], Y_ALL[:200])
    restored = small_ensemble().load_state_dict(first.state_dict())
    assert not hasattr(restored, "n_steps_")  # no fit of this object yet
    restored.fit(X_ALL, Y_ALL)
    assert restored.warm_started_
    for key, value in ensembles["warm"].state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key], value, err_msg=key)


def test_ensemble_cold_when_asked_or_when_the_architecture_changes(ensembles):
    state = ensembles["warm"].state_dict()
    for learner in (small_ensemble(warm_start=False), small_ensemble(hidden=(16, 16)),
                    small_ensemble(members=4)):
        learner.load_state_dict(state).fit(X_ALL[:50], Y_ALL[:50])
        assert not learner.warm_started_
    wider = np.column_stack([X_ALL[:50], X_ALL[:50, 0]])  # another number of columns
    assert not small_ensemble().load_state_dict(state).fit(wider, Y_ALL[:50]).warm_started_


def test_warm_start_keeps_the_function_when_the_standardization_moves():
    # One step of a negligible learning rate: the warm weights are the previous network
    # re-expressed for the new data's offsets and scales, so it predicts the same.
    first = small_ensemble(validation_fraction=0.0).fit(X_ALL[:100], Y_ALL[:100])
    before = first.posterior(X_TEST).mean
    grown_X = np.vstack([X_ALL[:100], X_ALL[100:] * 3.0 + 1.0])  # moves every scale
    grown_y = np.concatenate([Y_ALL[:100], Y_ALL[100:] * 5.0 - 2.0])
    first.warm_learning_rate, first.warm_steps = 1e-300, 1
    first.fit(grown_X, grown_y)
    assert first.warm_started_ and first.n_steps_ == 1
    np.testing.assert_allclose(first.posterior(X_TEST).mean, before, rtol=1e-9, atol=1e-9)


def test_early_stopping_stops_on_noisy_data_and_helps():
    rng = np.random.default_rng(2)
    X = rng.uniform(0.0, 1.0, size=(300, 2))
    y = truth(X) + 0.3 * rng.standard_normal(300)
    stopping = small_ensemble(steps=3000, patience=50).fit(X, y)
    full = small_ensemble(steps=3000, validation_fraction=0.0).fit(X, y)
    assert stopping.stopped_early_ and stopping.n_steps_ < 3000
    assert not full.stopped_early_ and full.n_steps_ == 3000
    assert rmse(stopping) < rmse(full)  # stopping before it fits the noise
    # No split below 10 held-out rows per member: all steps, all rows.
    few = small_ensemble(steps=200, patience=10).fit(X[:60], y[:60])
    assert few.n_steps_ == 200 and not few.stopped_early_


def test_held_out_rows_stay_held_out_as_the_data_grow():
    first = _held_out(X_ALL[:150], Y_ALL[:150], 5, 0.1, seed=0)
    grown = _held_out(X_ALL, Y_ALL, 5, 0.1, seed=0)
    np.testing.assert_array_equal(grown[:, :150], first)
    assert not grown.all(axis=0).any()  # every row trains some member
    assert 0.05 < grown.mean() < 0.15
    assert not np.array_equal(_held_out(X_ALL, Y_ALL, 5, 0.1, seed=1), grown)
    assert _held_out(X_ALL[:50], Y_ALL[:50], 5, 0.1, seed=0) is None  # 5 rows: no split


def test_ensemble_fits_are_deterministic_for_a_seed_and_history():
    def history() -> dict[str, np.ndarray]:
        learner = small_ensemble(warm_steps=40).fit(X_ALL[:120], Y_ALL[:120])
        return learner.fit(X_ALL[:160], Y_ALL[:160]).state_dict()

    a, b = history(), history()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(("params", "argument"), [
    ({"warm_steps": 0}, "warm_steps"), ({"warm_steps": 2.5}, "warm_steps"),
    ({"patience": 0}, "patience"), ({"validation_fraction": 0.6}, "validation_fraction"),
    ({"validation_fraction": -0.1}, "validation_fraction"),
    ({"validation_fraction": True}, "validation_fraction"),
    ({"validation_fraction": "0.1"}, "validation_fraction"),
    ({"warm_start": "yes"}, "warm_start"),
    ({"warm_learning_rate": 0.0}, "warm_learning_rate"),
    ({"warm_learning_rate": float("inf")}, "warm_learning_rate"),
])
def test_ensemble_bad_new_parameters_raise_at_fit(params, argument):
    with pytest.raises(ValueError, match=rf"^{argument} "):
        DeepEnsemble(**params).fit(X_ALL[:10], Y_ALL[:10])


def test_ensemble_params_and_repr():
    params = DeepEnsemble().get_params()
    assert {"warm_start": True, "warm_steps": 300, "warm_learning_rate": None,
            "validation_fraction": 0.1, "patience": 100}.items() <= params.items()
    assert repr(DeepEnsemble(warm_steps=50, warm_start=False)) == (
        "DeepEnsemble(warm_start=False, warm_steps=50)")


# -- ExactGP ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gps() -> dict[str, ExactGP]:
    warm = ExactGP().fit(X_ALL[:100], Y_ALL[:100])
    first = {"evaluations": warm.n_evaluations_, "starts": warm.n_starts_,
             "warm": warm.warm_started_}
    warm.fit(X_ALL[:110], Y_ALL[:110])
    return {"warm": warm, "cold": ExactGP().fit(X_ALL[:110], Y_ALL[:110]), "first": first}


def test_gp_refit_warm_starts_with_one_start_and_fewer_evaluations(gps):
    warm, cold, first = gps["warm"], gps["cold"], gps["first"]
    assert first["warm"] is False and first["starts"] == 3
    assert warm.warm_started_ and warm.n_starts_ == 1
    assert not cold.warm_started_ and cold.n_starts_ == 3
    assert warm.n_evaluations_ < cold.n_evaluations_ / 2
    assert not warm.stopped_early_ and not cold.stopped_early_
    assert rmse(warm) <= 1.2 * rmse(cold) + 1e-3


def test_gp_warm_restarts_are_capped_by_restarts(gps):
    state = gps["warm"].state_dict()
    for params, starts in (({"warm_restarts": 1}, 2), ({"warm_restarts": 5}, 3),
                           ({"warm_restarts": 5, "restarts": 0}, 1)):
        gp = ExactGP(**params).load_state_dict(state).fit(X_ALL[:60], Y_ALL[:60])
        assert gp.warm_started_ and gp.n_starts_ == starts


def test_gp_warm_start_is_the_previous_fit_in_the_new_units(gps):
    # A budget that allows one evaluation leaves the fit at its first start: the previous
    # hyperparameters, re-expressed for the new data's scales.
    old = gps["cold"]
    grown_X = np.vstack([X_ALL[:110], X_ALL[110:] * 2.0])
    grown_y = np.concatenate([Y_ALL[:110], Y_ALL[110:] * 3.0])
    gp = ExactGP(max_fit_seconds=1e-9).load_state_dict(old.state_dict()).fit(grown_X, grown_y)
    assert gp.stopped_early_ and gp.n_evaluations_ == 1 and gp.warm_started_
    new, before = gp.state_dict(), old.state_dict()
    np.testing.assert_allclose(new["lengthscale"] * new["x_scale"],
                               before["lengthscale"] * before["x_scale"], rtol=1e-6)
    np.testing.assert_allclose(new["outputscale"] * new["y_scale"] ** 2,
                               before["outputscale"] * before["y_scale"] ** 2, rtol=1e-6)
    # The noise of noise-free data sits at its floor, which holds in standardized units.
    expected_noise = max(before["noise"][0] * (before["y_scale"][0] / new["y_scale"][0]) ** 2,
                         2 * gp.noise_floor)
    assert new["noise"][0] == pytest.approx(expected_noise, rel=1e-6)
    np.testing.assert_allclose(new["constant"] * new["y_scale"] + new["y_offset"],
                               before["constant"] * before["y_scale"] + before["y_offset"],
                               rtol=1e-6)


def test_gp_budget_stops_cleanly_and_keeps_the_best_so_far(monkeypatch):
    # A clock that advances 1 s per reading: the budget then allows a known amount of work.
    ticks = itertools.count()
    monkeypatch.setattr(learners.gp, "time",
                        types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    free = ExactGP(restarts=2).fit(X_ALL[:60], Y_ALL[:60])
    assert not free.stopped_early_
    budget = ExactGP(restarts=2, max_fit_seconds=40).fit(X_ALL[:60], Y_ALL[:60])
    assert budget.stopped_early_ and 1 < budget.n_evaluations_ < free.n_evaluations_
    assert budget.n_starts_ <= 3
    # 40 one-second readings, three per evaluation: about 13 evaluations, then a clean
    # stop with a model that predicts.
    assert budget.n_evaluations_ <= 20
    start = ExactGP(max_fit_seconds=1e-9).fit(X_ALL[:60], Y_ALL[:60])  # the first start
    assert start.n_evaluations_ == 1 and start.n_starts_ == 1 and start.stopped_early_
    assert rmse(budget) < 0.5 * rmse(start)  # it kept its progress, not the first start
    assert np.all(np.isfinite(budget.posterior(X_TEST).variance))


def test_gp_generous_budget_changes_nothing(gps):
    a = ExactGP(max_fit_seconds=1e6).fit(X_ALL[:110], Y_ALL[:110])
    assert not a.stopped_early_
    np.testing.assert_array_equal(a.lengthscale_, gps["cold"].lengthscale_)
    assert a.n_evaluations_ == gps["cold"].n_evaluations_


@pytest.mark.parametrize(("params", "argument"), [
    ({"warm_restarts": -1}, "warm_restarts"), ({"warm_restarts": 1.5}, "warm_restarts"),
    ({"warm_restarts": True}, "warm_restarts"), ({"max_fit_seconds": 0}, "max_fit_seconds"),
    ({"max_fit_seconds": -1.0}, "max_fit_seconds"),
    ({"max_fit_seconds": float("nan")}, "max_fit_seconds"),
    ({"max_fit_seconds": "10"}, "max_fit_seconds"),
    ({"max_fit_seconds": True}, "max_fit_seconds"),
])
def test_gp_bad_new_parameters_raise_at_fit(params, argument):
    with pytest.raises(ValueError, match=rf"^{argument} "):
        ExactGP(**params).fit(X_ALL[:10], Y_ALL[:10])


def test_gp_params_repr_and_load_clears_fit_attributes(gps):
    assert {"warm_restarts": 0, "max_fit_seconds": None}.items() <= ExactGP().get_params().items()
    assert repr(ExactGP()) == "ExactGP()"
    assert repr(ExactGP(max_fit_seconds=10.0, warm_restarts=1)) == (
        "ExactGP(warm_restarts=1, max_fit_seconds=10.0)")
    loaded = ExactGP().load_state_dict(gps["warm"].state_dict())
    assert not hasattr(loaded, "n_evaluations_") and not hasattr(loaded, "stopped_early_")
