"""Steering decisions, unit-tested with a fake dispatcher: no Parsl, no threads.

The async steerer's reactions run on a hand-made state over a real store and ledger in
a temporary directory; the fake dispatcher records what would be submitted and runs a
model-thread job only when the test says so.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import numpy as np
import pytest

from campaign import Budget, Campaign, Promotion, Scale
from campaign.events import FitReturned, TaskFinished
from campaign.ingest import Completion, SubmittedTask
from campaign.ledger import Ledger
from campaign.models import ModelKeeper
from campaign.planner import select_batch, space_filling
from campaign.policy import fit_due, picks_wanted
from campaign.resume import restore_state
from campaign.retry import RetryPolicy
from campaign.signals import StopRequest
from campaign.steer_async import AsyncSteerer
from campaign.store import Rows, Store
from learners.posterior import IndependentPosterior


class FakeLearner:
    """A learner whose posterior variance grows with the distance to its data.
    ``supports_condition`` switches the cheap conditioning path on or off."""

    supports_condition = False

    def __init__(self, X: np.ndarray | None = None, y: np.ndarray | None = None) -> None:
        self.X, self.y = X, y

    def fit(self, X: np.ndarray, y: np.ndarray) -> FakeLearner:
        return type(self)(np.asarray(X, float), np.asarray(y, float))

    def condition(self, X: np.ndarray, y: np.ndarray) -> FakeLearner:
        return type(self)(np.concatenate([self.X, X]), np.concatenate([self.y, y]))

    def posterior(self, X: np.ndarray) -> IndependentPosterior:
        X = np.asarray(X, float)
        distance = np.min(np.abs(X[:, None, 0] - self.X[None, :, 0]), axis=1)
        return IndependentPosterior(np.zeros(len(X)), distance**2 + 1e-9, X=X)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"X": self.X, "y": self.y}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> FakeLearner:
        self.X, self.y = state["X"], state["y"]
        return self


class ConditionedLearner(FakeLearner):
    supports_condition = True


class FakeDispatcher:
    """Records launches and jobs; runs a model-thread or train job when asked."""

    def __init__(self) -> None:
        self.sims: dict[int, SubmittedTask] = {}
        self.launched: list[SubmittedTask] = []
        self.jobs: list[tuple[Any, tuple[Any, ...], Any, bool]] = []

    def launch(self, task: SubmittedTask, params: dict[str, Any]) -> None:
        self.sims[task.task_id] = task
        self.launched.append(task)

    def on_model_thread(self, fn, args, then) -> None:
        self.jobs.append((fn, args, then, False))

    def on_train(self, app, args, then) -> None:
        self.jobs.append((app, args, then, True))

    fit_here = on_train

    def busy(self) -> bool:
        return bool(self.sims or self.jobs)

    def in_flight(self) -> list[SubmittedTask]:
        return list(self.sims.values())

    def close(self) -> None:
        pass

    def pending(self, fn: Any) -> list[tuple[Any, ...]]:
        return [job for job in self.jobs if job[0] is fn or job[0] == fn]

    def run(self, fn: Any) -> list[Any]:
        """Run the first recorded job of ``fn`` now; its event."""
        job = self.pending(fn)[0]
        self.jobs.remove(job)
        fn, args, then, takes_future = job
        if takes_future:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            future.set_result({"learner": args[0].fit(*args[1:3]), "seconds": 0.0})
            return [then(future)]
        return [then(fn(*args))]


class FakeParsl:
    def warm_app(self, *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result({"problem": None, "seconds": 0.0, "ended": 0.0})
        return future


def coarse(x, *, seed):
    return {"x": np.atleast_2d(x), "energy": np.zeros(1)}


def make_steerer(tmp_path, learner: FakeLearner, batch_size: int = 2,
                 fine_checked: bool = True, quantity: str | None = None) -> AsyncSteerer:
    """An async steerer over a fresh run; ``fine_checked``: as if a fine result had
    already been checked against the spec (else one fine attempt at a time at first)."""
    spec = Campaign(name="unit", scales=[
        Scale("coarse", app=coarse, walkers=[[0.0]]), Scale("fine", app=coarse)],
        promotions=[Promotion(source="coarse", target="fine", features=lambda x: x,
                              learner=learner, acquisition="max_variance",
                              batch_size=batch_size, quantity=quantity)],
        budget=Budget(fine=40))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    store = Store(tmp_path, ledger)
    state = restore_state(spec, store, ledger, [learner])
    dispatcher = FakeDispatcher()
    stop = StopRequest(1.0)
    keeper = ModelKeeper(spec, state, store, ledger, FakeParsl(), dispatcher, stop,
                         lambda: None)
    steerer = AsyncSteerer(spec, state, store, ledger, dispatcher, keeper,
                           RetryPolicy(spec, None), stop, lambda: 0.0,
                           max_in_flight={"coarse": 1, "fine": 2})
    steerer.start([])
    if fine_checked:
        state.scales["fine"].columns = {"x": (np.dtype(float), (1,)),
                                        "y/energy": (np.dtype(float), ())}
    return steerer


def pool(steerer: AsyncSteerer, n: int = 30) -> None:
    """Commit ``n`` coarse rows on a line, 0 .. 1 (one walker task)."""
    x = np.linspace(0.0, 1.0, n)[:, None]
    steerer.state.scales["coarse"].tasks["done"] += 1
    steerer.on_commit("coarse", Rows(x=x, y={"energy": np.zeros(n)},
                                     meta=Rows.meta_for(0, n)), [])


def fitted_model(steerer: AsyncSteerer, rows: list[int]) -> None:
    """Generation 1, fitted on ``rows`` of the pool (as if their results came in)."""
    held = steerer.state.promotions[0]
    steerer.keeper.featurize_all(held)
    X = held.features.values[rows]
    held.learner = held.learner.fit(X, np.zeros(len(rows)))
    held.fitted, held.generation, held.seen, held.trained_on = True, 1, len(rows), len(rows)
    held.promoted.update(rows)
    held.train_rows, held.train_y, held.train_round = list(rows), [0.0] * len(rows), [0] * len(rows)


def finish(steerer: AsyncSteerer, task: SubmittedTask, value: float = 1.0,
           problem: str | None = None) -> TaskFinished:
    """The completion of ``task`` (rows, or a deterministic problem)."""
    del steerer.dispatcher.sims[task.task_id]
    if problem is not None:
        return TaskFinished(Completion(task, None, problem, 0.0, 0.1, deterministic=True))
    x = np.atleast_2d(task.task_input)
    rows = Rows(x=x, y={"energy": np.array([value])},
                meta=Rows.meta_for(task.task_id, 1, task.parent_row, task.round_index))
    return TaskFinished(Completion(task, rows, None, 0.0, 0.1))


def select_and_submit(steerer: AsyncSteerer) -> list[SubmittedTask]:
    """Run the model thread's pending selections (and those they lead to); the tasks
    submitted meanwhile."""
    before = set(steerer.dispatcher.sims)
    while steerer.dispatcher.pending(select_batch):
        steerer.on_events(steerer.dispatcher.run(select_batch))
    return [t for i, t in steerer.dispatcher.sims.items() if i not in before]


def test_a_freed_fine_slot_sends_a_selection_request_on_the_same_event(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    fitted_model(steerer, [0, 29])
    steerer.fill()
    first = select_and_submit(steerer)
    held = steerer.state.promotions[0]
    # slots full, and the next batch chosen while they run
    assert len(first) == 2 and len(held.ready) == 2
    assert not steerer.dispatcher.pending(select_batch)
    launched = len(steerer.dispatcher.launched)
    steerer.on_events([finish(steerer, first[0])])
    # on that same event: the slot gets a ready pick, and a request for more goes out
    (refill,) = steerer.dispatcher.launched[launched:]
    assert refill.scale == "fine" and refill.chosen_by == 1
    assert len(steerer.dispatcher.pending(select_batch)) == 1


def test_a_fully_quarantined_batch_does_not_stall_the_promotion(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    fitted_model(steerer, [0, 29])
    steerer.fill()
    batch = select_and_submit(steerer)
    steerer.on_events([finish(steerer, t, problem="bad result: misshapen") for t in batch])
    steerer.flush()
    held = steerer.state.promotions[0]
    assert held.quarantined == {t.parent_row for t in batch}
    running = [t for t in steerer.dispatcher.sims.values() if t.scale == "fine"]
    assert len(running) == 2 and held.pending == {t.parent_row for t in running}
    assert len(steerer.dispatcher.pending(select_batch)) == 1  # and more are chosen
    assert len(select_and_submit(steerer)) == 0 and len(held.ready) == 2


def test_no_row_is_chosen_twice(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner(), batch_size=3)
    pool(steerer)
    fitted_model(steerer, [0])
    steerer.fill()
    select_and_submit(steerer)
    for _ in range(10):  # picks go out from ready batches and from new selections
        task = next(t for t in steerer.dispatcher.sims.values() if t.scale == "fine")
        steerer.on_events([finish(steerer, task)])
        steerer.flush()
        select_and_submit(steerer)
    chosen = [t.parent_row for t in steerer.dispatcher.launched if t.scale == "fine"]
    assert len(chosen) == len(set(chosen)) == 12 and 0 not in chosen


def test_ready_picks_fill_freed_slots_and_a_newer_model_drops_them(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner(), batch_size=4)
    pool(steerer)
    fitted_model(steerer, [0, 29])
    steerer.fill()
    first = select_and_submit(steerer)
    held = steerer.state.promotions[0]
    # 2 free slots took 2 of the first batch; the next batch was chosen meanwhile
    assert len(first) == 2 and len(held.ready) == 6
    steerer.on_events([finish(steerer, first[0])])  # a freed slot: a ready pick goes out
    assert not steerer.dispatcher.pending(select_batch) and len(held.ready) == 5
    dropped = [row for row, _, _ in held.ready]
    held.generation = 2  # a newer model was installed
    steerer.on_events([finish(steerer, first[1])])
    assert not set(dropped) & held.promoted and not held.ready
    assert len(steerer.dispatcher.pending(select_batch)) == 1  # the new model chooses


def test_a_result_arriving_while_a_model_is_installed_is_counted_once(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    fitted_model(steerer, [0, 29])
    steerer.fill()
    batch = select_and_submit(steerer)
    held = steerer.state.promotions[0]
    steerer.on_events([finish(steerer, batch[0])])
    steerer.flush()  # one new result: a refit on 3 points starts
    steerer.keeper.start_fit(held)
    assert not fit_due(held)  # one fit at a time
    steerer.on_events(steerer.dispatcher.run("train_app"))  # fitted: install prepared
    assert held.installing
    steerer.on_events([finish(steerer, batch[1])])  # arrives during the install
    steerer.flush()
    assert not fit_due(held)  # the next fit starts from the installed model
    steerer.on_events(steerer.dispatcher.run(steerer.keeper.reference_error))
    assert held.generation == 2 and not held.installing and held.seen == 3
    assert len(held.train_rows) == 4 == len(set(held.train_rows))
    assert steerer.store.rows("fine") == 2
    assert len(held.train_rows) - held.trained_on == 1  # the next fit takes it


def test_a_model_that_fails_to_fit_keeps_the_previous_one(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    fitted_model(steerer, [0, 29])
    held = steerer.state.promotions[0]
    previous = held.learner
    held.fitting = True
    steerer.on_events([FitReturned(held, 3, None, "RuntimeError: singular")])
    assert held.learner is previous and held.generation == 1 and not held.fitting
    assert not held.installing and held.trained_on <= 2


@pytest.mark.parametrize("learner", [FakeLearner(), ConditionedLearner()])
def test_committed_results_are_conditioned_on_or_fantasized(tmp_path, learner):
    steerer = make_steerer(tmp_path, learner, batch_size=1)
    pool(steerer)
    fitted_model(steerer, [0, 29])
    steerer.fill()
    a, b = select_and_submit(steerer)  # 2 free slots, and one pick waits ready
    steerer.on_events([finish(steerer, a)])  # the ready pick c goes out; a request
    (c,) = [t for t in steerer.dispatcher.sims.values() if t.task_id > b.task_id]
    assert c.staleness == 0  # a is not committed yet
    steerer.flush()  # a committed
    held = steerer.state.promotions[0]
    conditioning = steerer.dispatcher.pending(held.learner.condition)
    if learner.supports_condition:  # the posterior takes the result in at once
        assert len(conditioning) == 1
        steerer.on_events(steerer.dispatcher.run(held.learner.condition))
        assert held.seen == 3 and len(held.learner.X) == 3 and held.generation == 1
    else:
        assert not conditioning and held.seen == 2
    select_and_submit(steerer)  # d, chosen from the snapshot before a's commit
    steerer.on_events([finish(steerer, b)])  # d goes out; a request after a's commit
    request = steerer.dispatcher.pending(select_batch)[0][1][0]
    pending = set(request.pending.tolist())
    assert {b.parent_row, c.parent_row} <= pending  # running: fantasized
    # a committed result the posterior has not taken in is fantasized too
    assert (a.parent_row in pending) != learner.supports_condition
    select_and_submit(steerer)  # e waits ready: no free slot
    steerer.on_events([finish(steerer, c)])
    e = steerer.dispatcher.launched[-1]  # the ready pick that went out on c's slot
    assert e.staleness == (0 if learner.supports_condition else 1)


def test_before_the_first_model_free_slots_get_a_space_filling_design(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer, 31)
    steerer.fill()
    seed = select_and_submit(steerer)
    held = steerer.state.promotions[0]
    assert len(seed) == 2 and len(held.ready) == 2  # the seed design, then more design
    launched = len(steerer.dispatcher.launched)
    steerer.on_events([finish(steerer, seed[0])])
    (more,) = steerer.dispatcher.launched[launched:]
    assert more.chosen_by == -1 and more.staleness == -1
    rows = sorted([t.parent_row for t in seed] + [row for row, _, _ in held.ready]
                  + [more.parent_row])
    assert min(np.diff(rows)) >= 5  # spread over the pool, not bunched


def test_space_filling_picks_far_from_each_other_and_from_taken_rows():
    features = np.linspace(0.0, 1.0, 101)[:, None]
    candidates = np.arange(101)
    chosen = space_filling(features, candidates[candidates != 50], np.array([50]), 2,
                           np.random.default_rng(0))
    assert sorted(chosen.tolist()) == [0, 100]
    chosen = space_filling(features, candidates, np.zeros(0, np.int64), 5,
                           np.random.default_rng(1))
    assert len(set(chosen.tolist())) == 5 and min(np.diff(np.sort(chosen))) >= 10


def test_picks_wanted_keeps_one_batch_chosen_ahead(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner(), batch_size=4)
    held = steerer.state.promotions[0]
    assert picks_wanted(held, 0, 30, 1, free=2, left=None) == 0  # a walker not in yet
    assert picks_wanted(held, 1, 30, 1, free=0, left=None) == 0  # no slot for a seed
    assert picks_wanted(held, 1, 30, 1, free=2, left=None) == 4  # the seed design
    held.pending.add(3)
    held.promoted.update({3, 4, 5, 6})
    assert picks_wanted(held, 1, 30, 1, free=0, left=None) == 4  # chosen while they run
    assert picks_wanted(held, 1, 30, 1, free=2, left=1) == 1
    # before the first model: at most half the budget on the design
    assert picks_wanted(held, 1, 30, 1, free=2, left=None, budget=10) == 1
    held.fitted = True
    assert picks_wanted(held, 1, 30, 1, free=2, left=None, budget=20) == 4
    held.ready = [(7, 1, 2)]
    assert picks_wanted(held, 1, 30, 1, free=0, left=None) == 4  # less than a batch waits
    assert picks_wanted(held, 1, 30, 1, free=0, left=1) == 0  # the budget's last is ready
    held.ready = [(r, 1, 2) for r in range(7, 11)]
    assert picks_wanted(held, 1, 30, 1, free=2, left=None) == 0  # a batch waits ready
    held.ready = []
    held.selecting = True
    assert picks_wanted(held, 1, 30, 1, free=2, left=None) == 0  # one request at a time
