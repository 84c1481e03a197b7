"""The first result of a promoted scale is checked against the spec before a batch is
spent: one attempt at a time until then (for at most FIRST_RESULT_WAIT seconds), and a
misspelled quantity stops the run after one simulation. Steering with fakes, no Parsl."""

from __future__ import annotations

import numpy as np
from test_steering import FakeLearner, finish, make_steerer, pool, select_and_submit

from campaign.events import TaskFinished
from campaign.ingest import Completion
from campaign.ledger import Ledger
from campaign.policy import free_slots
from campaign.store import Rows


def test_free_slots_are_one_until_a_result_of_the_scale_was_checked():
    assert free_slots(8, 0, checked=False) == 1
    assert free_slots(8, 1, checked=False) == 0
    assert free_slots(0, 0, checked=False) == 0
    assert free_slots(8, 1, checked=True) == 7
    assert free_slots(8, 9, checked=True) == 0


def test_free_slots_wait_for_the_first_result_no_longer_than_first_result_wait():
    """Long simulations: the workers wait at most FIRST_RESULT_WAIT for the check."""
    from campaign.policy import FIRST_RESULT_WAIT

    assert free_slots(8, 1, checked=False, waited=FIRST_RESULT_WAIT / 2) == 0
    assert free_slots(8, 1, checked=False, waited=FIRST_RESULT_WAIT) == 7


def test_a_promoted_scale_gets_one_task_until_its_first_result_is_checked(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner(), fine_checked=False)
    pool(steerer)
    steerer.fill()
    (first,) = select_and_submit(steerer)  # the seed design is chosen; one goes out
    held = steerer.state.promotions[0]
    assert len(held.ready) >= 1
    launched = len(steerer.dispatcher.launched)
    steerer.on_events([finish(steerer, first)])  # checked against the spec: fill up
    fine = [t for t in steerer.dispatcher.launched[launched:] if t.scale == "fine"]
    assert len(fine) == 2
    assert steerer.state.scales["fine"].columns is not None


def test_long_first_simulation_holds_the_other_workers_back_no_longer_than_the_wait(
        tmp_path):
    from campaign import clock
    from campaign.policy import FIRST_RESULT_WAIT

    virtual = clock.VirtualClock(1000.0)
    with clock.using(virtual):
        steerer = make_steerer(tmp_path, FakeLearner(), fine_checked=False)
        pool(steerer)
        steerer.fill()
        select_and_submit(steerer)  # one goes out; its result is long in coming
        launched = len(steerer.dispatcher.launched)
        virtual.advance(FIRST_RESULT_WAIT / 2)
        steerer.fill()
        assert [t for t in steerer.dispatcher.launched[launched:] if t.scale == "fine"] == []
        virtual.advance(FIRST_RESULT_WAIT)
        steerer.fill()
        assert len([t for t in steerer.dispatcher.launched[launched:]
                    if t.scale == "fine"]) == 1  # the slots fill (a limit of 2 here)
        assert steerer.state.scales["fine"].columns is None  # still not checked


def test_a_first_result_without_the_quantity_stops_after_one_simulation(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner(), fine_checked=False, quantity="energy")
    pool(steerer)
    steerer.fill()
    (first,) = select_and_submit(steerer)
    launched = len(steerer.dispatcher.launched)
    del steerer.dispatcher.sims[first.task_id]
    rows = Rows(x=np.atleast_2d(first.task_input), y={"enrgy": np.array([1.0])},
                meta=Rows.meta_for(first.task_id, 1, first.parent_row, first.round_index))
    steerer.on_events([TaskFinished(Completion(first, rows, None, 0.0, 0.1))])
    steerer.fill()
    select_and_submit(steerer)
    assert [t for t in steerer.dispatcher.launched[launched:] if t.scale == "fine"] == []
    reason = steerer.state.status.failed_reason
    assert "quantity 'energy'" in reason and "enrgy" in reason


def test_run_with_a_misspelled_quantity_stops_after_one_fine_simulation(tmp_path):
    from conftest import tiny_campaign

    spec = tiny_campaign(mode="async", promotion={"quantity": "enrgy"})
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert summary.failed
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite", read_only=True)
    fine = ledger.tasks("fine")
    attempts = [a for a in ledger.attempts() if a["scale"] == "fine"]
    reason = ledger.fact("stop_reason")
    ledger.close()
    assert len(fine) == 1 and fine[0]["attempts"] == 1 and len(attempts) == 1, (fine, attempts)
    assert "quantity 'enrgy'" in reason and "outputs: energy" in reason, reason
    assert "did you mean 'energy'?" in reason, reason
