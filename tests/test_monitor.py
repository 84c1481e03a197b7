"""Segment monitors: the built-in rules on arrays, and the engine acting on decisions
(stopped walkers keep their rows, marked in meta, and stay stopped on resume; restarts
start from an earlier frame; a monitor that reads the surrogate runs on the model
thread)."""

import time

import numpy as np
import pytest
from conftest import TINY_COARSE, tiny_campaign
from scipy.spatial.distance import cdist

from apps import toy
from campaign import Budget, Campaign, Scale
from campaign.ledger import Ledger
from campaign.monitoring import ACTIONS, ScaleMonitor
from campaign.spec import SpecError
from campaign.state import WalkerState
from campaign.store import Store
from learners.monitor import (
    ConfidenceMonitor,
    Monitor,
    NoveltyMonitor,
    Segment,
    knn_distances,
)

RNG = np.random.default_rng(3)
POOL = RNG.normal(size=(600, 2))
CROWDED = RNG.normal(scale=0.2, size=(10, 2))
FAR = RNG.normal(loc=5.0, scale=0.2, size=(10, 2))


# -- the rules ----------------------------------------------------------------------
def test_knn_distances_match_a_full_distance_matrix():
    points = RNG.normal(size=(7, 3))
    pool = RNG.normal(size=(50, 3))
    expected = np.sort(cdist(points, pool), axis=1)[:, 3]
    np.testing.assert_allclose(knn_distances(points, pool, 4, chunk=3), expected)
    self_expected = np.sort(cdist(pool, pool), axis=1)[:, 4]  # the first is itself
    np.testing.assert_allclose(knn_distances(pool, pool, 4, exclude_self=True), self_expected,
                               atol=1e-6)


def test_novelty_scores_rank_frames_against_the_pool():
    monitor = NoveltyMonitor()
    crowded = monitor.frame_scores(Segment(CROWDED, POOL))
    far = monitor.frame_scores(Segment(FAR, POOL))
    assert crowded.mean() < 0.3 and np.all(far == 1.0)


@pytest.mark.parametrize("restart", [True, False])
def test_crowded_segments_stop_or_restart_after_patience(restart):
    monitor = NoveltyMonitor(patience=3, restart=restart)
    scores: tuple[float, ...] = ()
    actions = []
    for _ in range(4):
        decision = monitor.decide(Segment(CROWDED, POOL, scores))
        actions.append(decision.action)
        scores = (*scores, decision.score)
    assert actions == ["continue", "continue", "restart" if restart else "stop"] * 1 + [
        "restart" if restart else "stop"]
    assert "NoveltyMonitor" in decision.reason


def test_a_novel_segment_resets_the_patience():
    monitor = NoveltyMonitor(patience=2)
    assert monitor.decide(Segment(FAR, POOL, (0.1,))).action == "continue"
    assert monitor.decide(Segment(CROWDED, POOL, (1.0,))).action == "continue"


def test_too_small_a_pool_is_not_judged():
    decision = NoveltyMonitor(min_pool=200).decide(Segment(CROWDED, POOL[:100]))
    assert decision.action == "continue" and np.isnan(decision.score)
    assert np.isnan(decision.frame_scores).all() and len(decision.frame_scores) == 10


def test_large_pools_are_thinned_to_max_pool():
    big = RNG.normal(size=(20_000, 2))
    thinned = NoveltyMonitor(max_pool=1000).frame_scores(Segment(CROWDED, big))
    full = NoveltyMonitor(max_pool=20_000).frame_scores(Segment(CROWDED, big))
    assert abs(thinned.mean() - full.mean()) < 0.15  # ranks, so thinning keeps the scale


def test_confidence_monitor_reads_the_posterior_std():
    monitor = ConfidenceMonitor(std_below=0.5, patience=1)
    assert monitor.decide(Segment(CROWDED, POOL)).action == "continue"  # no model yet
    sure = monitor.decide(Segment(CROWDED, POOL, uncertainty=lambda f: np.full(len(f), 0.1)))
    unsure = monitor.decide(Segment(CROWDED, POOL, uncertainty=lambda f: np.ones(len(f))))
    assert (sure.action, unsure.action) == ("restart", "continue")
    np.testing.assert_allclose(sure.frame_scores, 0.1)


@pytest.mark.parametrize("make", [lambda: NoveltyMonitor(k=0), lambda: NoveltyMonitor(
    min_pool=3, k=5), lambda: ConfidenceMonitor(std_below=0.0),
    lambda: NoveltyMonitor(patience=0)])
def test_bad_monitor_parameters_raise(make):
    with pytest.raises(ValueError):
        make()


def test_restart_frames_are_the_best_scored_and_used_once():
    held = ScaleMonitor(NoveltyMonitor(min_pool=20, k=2), None)
    walker = WalkerState(np.zeros(2))
    frames = np.array([[0.0, 0.0], [9.0, 9.0], [0.1, 0.0]])
    first = held.judge(held.request(walker, frames, None))
    held.apply(walker, frames, first)  # pool too small: continue, scores NaN
    assert held.restart_frames == {}
    for _ in range(10):
        segment = RNG.normal(scale=0.1, size=(3, 2))
        held.apply(walker, segment, held.judge(held.request(walker, segment, None)))
    lone = np.array([[4.0, -4.0], [0.0, 0.05], [0.02, 0.0]])
    held.apply(walker, lone, held.judge(held.request(walker, lone, None)))
    crowded = np.zeros((3, 2))
    judgement = held.judge(held.request(walker, crowded, None))
    assert judgement.decision.action == "restart"
    action, start, meta = held.apply(walker, crowded, judgement)
    assert action == "restart"
    np.testing.assert_array_equal(start, [4.0, -4.0])  # the most novel frame seen
    assert np.all(meta["monitor"] == ACTIONS.index("restart"))
    assert not any(np.array_equal(x, [4.0, -4.0]) for _, x in held.restart_frames.values())


# -- the engine -------------------------------------------------------------------
class Always(Monitor):
    """Decides ``action`` for every segment (after ``after`` segments of a walker)."""

    def __init__(self, action: str, after: int = 0) -> None:
        super().__init__(stop_below=1.0, patience=1, restart=action == "restart")
        self.action, self.after = action, after

    def frame_scores(self, segment):
        if len(segment.previous_scores) < self.after:
            return np.full(len(segment.frames), 2.0)  # above stop_below: continue
        return np.linspace(0.0, 0.5, len(segment.frames))


def walkers_only(monitor, coarse=40, walkers=3):
    return Campaign(name="walk", mode="async", seed=2,
                    scales=[Scale("coarse", app=toy.langevin, params=TINY_COARSE,
                                  walkers=toy.initial_walkers(walkers), monitor=monitor)],
                    budget=Budget(coarse=coarse))


def read(run_dir):
    ledger = Ledger(run_dir / "ledger.sqlite")
    return ledger, Store(run_dir, ledger, read_only=True)


def test_stopped_walkers_keep_their_rows_marked_and_stay_stopped_on_resume(tmp_path):
    summary = walkers_only(Always("stop", after=2)).run(site="threads", out=tmp_path / "run")
    assert not summary.failed and "nothing left to run" in summary.stop_reason
    ledger, store = read(tmp_path / "run")
    data = store.read("coarse")
    assert sum(ledger.task_counts()["coarse"].values()) == 9  # 3 walkers x 3 segments
    _, first_rows = np.unique(data.meta["task_id"], return_index=True)
    codes = data.meta["monitor"][first_rows]
    assert sorted(codes.tolist()) == [0] * 6 + [1] * 3
    assert np.isfinite(data.meta["monitor_score"]).all()
    assert len(data) == 9 * 20  # the stopped segments' rows are all there
    ledger.close()
    resumed = walkers_only(Always("stop", after=2), coarse=80).run(
        site="threads", out=tmp_path / "run", resume=True)
    assert resumed.task_counts["coarse"] == {"done": 9}  # nobody walked again


def test_restarts_start_from_an_earlier_frame_of_the_scale(tmp_path):
    walkers_only(Always("restart", after=1), coarse=12).run(site="threads",
                                                            out=tmp_path / "run")
    ledger, store = read(tmp_path / "run")
    data = store.read("coarse")
    tasks = {t["task_id"]: t for t in ledger.tasks("coarse")}
    last_row = {}
    for row, task_id in enumerate(data.meta["task_id"].tolist()):
        last_row[task_id] = row
    restarted = 0
    for task_id, row in last_row.items():
        task = tasks[task_id]
        if data.meta["monitor"][row] != ACTIONS.index("restart"):
            continue
        successor = min((t for t in tasks.values() if t["walker"] == task["walker"]
                         and t["task_id"] > task_id), key=lambda t: t["task_id"], default=None)
        if successor is None:
            continue
        start = np.asarray(__import__("json").loads(successor["input"]))
        assert not np.allclose(start, data.x[row])  # not where it ended ...
        assert np.any(np.all(np.isclose(data.x, start), axis=1))  # ... an earlier frame
        restarted += 1
    assert restarted >= 3
    ledger.close()


def slow_langevin(x, *, seed, **params):
    """A coarse segment that takes long enough for models to be fitted meanwhile."""
    time.sleep(0.05)
    return toy.langevin(x, seed=seed, **params)


def test_a_monitor_that_reads_the_surrogate_runs_on_the_model_thread(tmp_path):
    spec = tiny_campaign(mode="async", budget=Budget(fine=12, coarse=400),
                         scales=[Scale("coarse", app=slow_langevin, params=TINY_COARSE,
                                       walkers=toy.initial_walkers(2),
                                       monitor=ConfidenceMonitor(std_below=1e9, patience=1)),
                                 Scale("fine", app=toy.smeared_energy,
                                       params={"n_samples": 4096})])
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert not summary.failed
    ledger, store = read(tmp_path / "run")
    data = store.read("coarse")
    codes = data.meta["monitor"]
    scored = np.isfinite(data.meta["monitor_score"])
    # before the first model: not judged (continue, NaN); after it: restarts, std scored
    assert (~scored).any() and scored.any()
    assert np.all(codes[~scored] == 0) and np.any(codes[scored] == ACTIONS.index("restart"))
    ledger.close()


def test_monitor_spec_errors():
    with pytest.raises(SpecError, match="decide"):
        Scale("coarse", app=toy.langevin, walkers=toy.initial_walkers(1), monitor=object())
    with pytest.raises(SpecError, match="no walkers"):
        tiny_campaign(mode="async", scales=[
            Scale("coarse", app=toy.langevin, walkers=toy.initial_walkers(1)),
            Scale("fine", app=toy.smeared_energy, monitor=NoveltyMonitor())])
    with pytest.raises(SpecError, match="rounds"):
        walkers_only(NoveltyMonitor()).model_copy(update={}).__class__(
            **{**dict(walkers_only(NoveltyMonitor())), "mode": "rounds"})
