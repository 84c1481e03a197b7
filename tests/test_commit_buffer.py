"""The commit buffer: when a batch is due, and many results committed as one batch."""

import numpy as np
import pytest

from campaign import clock, ingest
from campaign.ingest import CommitBuffer
from campaign.ledger import Ledger, PlannedTask, TaskOutcome
from campaign.store import Rows, Store


def one_row(task_id: int) -> Rows:
    return Rows(x=np.full((1, 2), float(task_id)), y={"energy": np.array([task_id * 0.5])},
                meta=Rows.meta_for(task_id=task_id, rows=1))


@pytest.fixture
def buffer(tmp_path):
    store = Store(tmp_path, Ledger(tmp_path / "ledger.sqlite"))
    told: list[tuple[str, int, int]] = []
    buffer = CommitBuffer(store, lambda scale, rows, outcomes: told.append(
        (scale, 0 if rows is None else len(rows), len(outcomes))), ordered=False)
    buffer.told = told
    yield buffer
    store.ledger.close()


def test_nothing_is_due_while_nothing_waits(buffer):
    with clock.using(clock.VirtualClock(0.0)) as virtual:
        virtual.advance(100.0)
        assert not buffer.due() and not buffer.due(idle=True)


def test_results_are_due_when_idle_or_after_the_window(buffer):
    with clock.using(clock.VirtualClock(0.0)) as virtual:
        buffer.add("fine", one_row(1), TaskOutcome(1, "done", rows=1))
        assert not buffer.due()  # busy, and the oldest has not waited yet
        assert buffer.due(idle=True)  # idle: committing now delays nothing
        virtual.advance(ingest.COMMIT_EVERY_SECONDS)
        assert buffer.due()


def test_a_slow_commit_widens_the_window_up_to_its_limit(buffer):
    assert buffer.window == ingest.COMMIT_EVERY_SECONDS  # no commit yet
    buffer.last_commit_seconds = 0.05
    assert buffer.window == pytest.approx(ingest.COMMIT_COST_FACTOR * 0.05)
    buffer.last_commit_seconds = 60.0
    assert buffer.window == ingest.COMMIT_MAX_SECONDS
    with clock.using(clock.VirtualClock(0.0)) as virtual:
        buffer.add("fine", one_row(1), TaskOutcome(1, "done", rows=1))
        virtual.advance(ingest.COMMIT_MAX_SECONDS - 0.01)
        assert not buffer.due()
        virtual.advance(0.01)
        assert buffer.due()


def test_enough_rows_are_due_at_once(buffer, monkeypatch):
    monkeypatch.setattr(ingest, "COMMIT_EVERY_ROWS", 3)
    with clock.using(clock.VirtualClock(0.0)):
        for task_id in (1, 2):
            buffer.add("fine", one_row(task_id), TaskOutcome(task_id, "done", rows=1))
        assert not buffer.due()
        buffer.add("fine", one_row(3), TaskOutcome(3, "done", rows=1))
        assert buffer.due()


def test_many_results_are_one_commit_and_every_one_is_recorded(buffer):
    store = buffer.store
    ids = store.ledger.plan([PlannedTask("fine", 0, -1, [])] * 50, lambda task, attempt: 0)
    with clock.using(clock.VirtualClock(0.0)):
        for task_id in ids:
            if task_id % 10 == 0:  # a failed task has an outcome and no rows
                buffer.add("fine", None, TaskOutcome(task_id, "quarantined", reason="bad"))
            else:
                buffer.add("fine", one_row(task_id), TaskOutcome(task_id, "done", rows=1))
        buffer.flush()
        assert not buffer.due(idle=True) and len(buffer) == 0 and buffer.rows == 0
    assert store.commit_counts.commits == 1 and buffer.last_commit_seconds > 0
    done = [t for t in ids if t % 10]
    assert buffer.told == [("fine", len(done), 50)]
    assert store.read("fine").meta["task_id"].tolist() == done
    counts = store.ledger.task_counts()["fine"]
    assert counts == {"done": len(done), "quarantined": 50 - len(done)}

