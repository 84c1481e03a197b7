"""Duration models of the simulated site and the virtual clock."""

import json
import sqlite3

import numpy as np
import pytest

from campaign import clock
from campaign.durations import (
    Fixed,
    FromInput,
    LogNormal,
    Replayed,
    ledger_durations,
    parse_durations,
)
from campaign.ledger import SCHEMA


def test_lognormal_has_the_mean_and_cv_it_was_given():
    rng = np.random.default_rng(1)
    draws = np.array([LogNormal(60.0, 0.5)(None, rng) for _ in range(40000)])
    assert draws.min() > 0
    assert abs(draws.mean() / 60.0 - 1) < 0.02
    assert abs(draws.std() / draws.mean() - 0.5) < 0.03
    assert LogNormal(60.0, 0.0)(None, rng) == pytest.approx(60.0)


def test_models_refuse_what_cannot_be_a_duration():
    with pytest.raises(ValueError, match="> 0"):
        Fixed(0.0)
    with pytest.raises(ValueError, match="cv"):
        LogNormal(10.0, -1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        FromInput(lambda x: -1.0, typical=1.0)(np.zeros(2), np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one"):
        Replayed([])


def test_from_input_scales_a_function_of_the_row():
    model = FromInput(lambda x: 1.0 + float(np.sum(x)), typical=2.0, scale=10.0)
    assert model(np.array([0.5, 0.5]), np.random.default_rng(0)) == pytest.approx(20.0)
    assert model.mean == pytest.approx(20.0)


def test_replay_gives_the_nth_attempt_the_nth_duration_then_draws_from_them():
    model = Replayed([1.0, 2.0, 3.0], scale=2.0)
    rng = np.random.default_rng(0)
    assert [model(None, rng) for _ in range(3)] == [2.0, 4.0, 6.0]
    assert {model(None, rng) for _ in range(50)} <= {2.0, 4.0, 6.0}
    assert model.mean == pytest.approx(4.0)


def test_ledger_durations_are_per_scale_in_submission_order(tmp_path):
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.executescript(SCHEMA)
    tasks = [(1, "coarse"), (2, "fine"), (3, "coarse")]
    db.executemany("INSERT INTO tasks (task_id, scale, round, status, seed, parent_row, input,"
                   " submitted) VALUES (?, ?, 0, 'done', 0, -1, '[]', 0)", tasks)
    attempts = [(1, 1, 0.0, 1.0, 3.0), (2, 1, 1.0, 2.0, 12.0), (3, 1, 2.0, 3.0, 4.5),
                (3, 2, 3.0, None, None)]  # a second attempt that never started
    db.executemany("INSERT INTO attempts (task_id, attempt, submitted, started, ended, outcome)"
                   " VALUES (?, ?, ?, ?, ?, 'done')", attempts)
    db.commit()
    db.close()
    assert ledger_durations(tmp_path) == {"coarse": [2.0, 1.5], "fine": [10.0]}
    models = parse_durations(tmp_path, scale=2.0)
    assert models["fine"](None, np.random.default_rng(0)) == 20.0
    with pytest.raises(FileNotFoundError, match="run directory"):
        ledger_durations(tmp_path / "nothing")


def test_parse_durations_from_text_json_and_dicts(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"fine": "lognormal:600,0.3", "coarse": 5}))
    models = parse_durations(tmp_path / "d.json")
    assert isinstance(models["fine"], LogNormal) and models["fine"].mean == 600.0
    assert models["coarse"] == Fixed(5.0)
    assert parse_durations("fine=fixed:60") == {"fine": Fixed(60.0)}
    with pytest.raises(ValueError, match="unknown duration model"):
        parse_durations({"fine": "gamma:1,2"})
    with pytest.raises(ValueError, match="SCALE=MODEL"):
        parse_durations("nonsense")


def test_virtual_clock_moves_only_when_told_and_only_forward():
    virtual = clock.VirtualClock(start=10.0)
    with clock.using(virtual):
        assert clock.now() == 10.0
        virtual.advance_to(5.0)  # never back
        assert clock.now() == 10.0
        with pytest.raises(ValueError):
            virtual.advance(-1.0)
        with pytest.raises(RuntimeError, match="already"):
            with clock.using(clock.VirtualClock()):
                pass
    assert abs(clock.now() - __import__("time").time()) < 5.0
