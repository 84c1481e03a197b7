"""The simulated site against reality: a real local HTEX run and its simulated replay
agree on makespan and per-scale utilization (benchmarks.replay), and the pieces of that
replay: start delays read from a ledger, fit turnarounds and the driver's pace metered,
and the simulated dispatcher holding a worker through an attempt's start delay, a fit
for its replayed time and the driver for its CPU times the slowdown.

The replay (``latencies``) takes from the real run's ledger each attempt's duration and
start delay, and from its metered driver each fit's turnaround and the driver's wall
seconds per CPU second. Without those (``durations``) it agrees on a quiet machine only:
under load the real fits and driver wait for a core and their wall time stretches, while
the virtual clock charges their CPU time (docs/benchmarks.md has all four replays, with
the spread under load)."""

import sqlite3

import pytest
from conftest import tiny_campaign

from benchmarks import replay
from campaign import Budget
from campaign.durations import Fixed
from campaign.engine import Engine
from campaign.ledger_schema import create_with_schema
from campaign.simulated import Simulation

# The goal, 10%, is the benchmark's (docs/benchmarks.md: met in every repeat, within 1%
# in most, 0.913x at worst). A test allows 15%: a stall of the real driver just when the
# fine workers run dry (seen, about 1.5 s) is what no replay can place. The durations
# alone miss by up to 50% under load.
TOLERANCE = 0.15


def check_replay_agrees(result):
    """A real run finished by its budget, its fits metered, and the ``latencies``
    replay within TOLERANCE on makespan and both scales' utilization."""
    assert result["stop_reason"].startswith("task budget spent"), result
    assert result["fit_turnarounds"], result  # the real driver's fits were metered
    replayed = result["replays"]["latencies"]
    print(", ".join(f"{key} {value['ratio']:.3f}x" for key, value in replayed.items()
                    if isinstance(value, dict) and "ratio" in value))
    for key in ("makespan", "utilization_coarse", "utilization_fine"):
        assert replayed[key]["ratio"] == pytest.approx(1.0, abs=TOLERANCE), (key, result)


@pytest.mark.slow
@pytest.mark.htex
def test_simulated_replay_of_a_real_local_run_agrees_with_it(tmp_path):
    check_replay_agrees(replay.run("local", 48, tmp_path, duration_scale=1.0,
                                   replays=("latencies",)))


def _ledger(path, attempts):
    """A ledger holding ``attempts`` (scale, worker, submitted, started, ended)."""
    path.mkdir()
    create_with_schema(path / "ledger.sqlite")
    db = sqlite3.connect(path / "ledger.sqlite")
    with db:
        for task_id, (scale, worker, submitted, started, ended) in enumerate(attempts):
            db.execute("INSERT INTO tasks (task_id, scale, round, status, seed, parent_row, "
                       "input, submitted) VALUES (?, ?, 0, 'done', 0, -1, '[]', ?)",
                       (task_id, scale, submitted))
            db.execute("INSERT INTO attempts VALUES (?, 1, ?, ?, ?, ?, 'done', NULL)",
                       (task_id, submitted, started, ended, worker))
    db.close()
    return path


def test_start_delays_count_from_the_later_of_submission_and_a_free_worker(tmp_path):
    run_dir = _ledger(tmp_path / "run", [  # in submission order
        ("coarse", "w1", 0.0, 5.0, 6.0),   # first on its worker: a block 5 s in starting
        ("coarse", "w1", 0.0, 6.25, 7.0),  # queued behind the first: 0.25 s of dispatch
        ("coarse", "w3", 6.0, 7.0, 8.0),   # first on a worker up at 7 s (the 2nd submitted
                                           # attempt would have taken it: 7 s after 0)
        ("fine", "w2", 8.0, 8.5, 9.0),     # a worker's first, on another scale
        ("coarse", "w1", 7.5, 8.0, 9.0),   # submitted after its worker freed
    ])
    # each worker's first attempt first (the workers coming up), then the rest in order
    assert replay.start_delays(run_dir) == {"coarse": [5.0, 7.0, 0.25, 0.5], "fine": [0.5]}


def test_fit_turnarounds_leave_out_a_fit_still_out():
    meter = replay.DriverMeter(fits=[[10.0, 12.5], [20.0, None], [30.0, 30.25]])
    assert meter.fit_turnarounds() == [2.5, 0.25]


def test_a_simulated_attempt_waits_its_start_delay_on_the_worker_it_holds(tmp_path):
    spec = tiny_campaign(mode="async", budget=Budget(fine=12, coarse=24))
    delay, seconds = 7.0, 60.0
    simulation = Simulation(workers={"sim-coarse": 2, "sim-fine": 3, "train": 1},
                            durations={"coarse": Fixed(5.0), "fine": Fixed(seconds)},
                            start_delays={"fine": Fixed(delay)})
    Engine(spec, tmp_path / "run", simulation=simulation).run()
    delays = replay.start_delays(tmp_path / "run")
    assert len(delays["fine"]) == 12
    assert delays["fine"] == pytest.approx([delay] * 12, abs=1e-6)
    assert max(delays["coarse"]) < 1e-3  # no delay given: started when in hand


def test_replayed_fits_and_a_slower_driver_lengthen_the_virtual_run(tmp_path):
    spec = tiny_campaign(mode="async", budget=Budget(fine=12, coarse=24))

    def elapsed(name, **simulation):
        sim = Simulation(workers={"sim-coarse": 2, "sim-fine": 3, "train": 1},
                         durations={"coarse": Fixed(5.0), "fine": Fixed(60.0)}, **simulation)
        return Engine(spec, tmp_path / name, simulation=sim).run().wall_seconds

    plain = elapsed("plain")
    assert plain < 1000.0 <= elapsed("fits", fit_durations=Fixed(1000.0))
    # the driver spends well over 1 ms of CPU on this campaign: charged 10^5 times over
    assert elapsed("slow", driver_slowdown=1e5) > plain + 100.0


def test_driver_slowdown_is_wall_per_cpu_second_between_waits_inside_the_window():
    calls = [  # (wall in, cpu in, wall out, cpu out) of each wait
        (0.0, 0.0, 5.0, 0.0),
        (10.0, 1.0, 12.0, 1.0),   # the work from 5 s began before the window
        (15.0, 2.0, 16.0, 2.0),   # from 12 s: 3 s of wall, 1 s of CPU, inside it
        (20.0, 4.0, 30.0, 4.0),   # the work from 16 s ended after the window
    ]
    assert replay.driver_slowdown(calls, (9.0, 19.0)) == pytest.approx(3.0 / 1.0)
    assert replay.driver_slowdown([], (0.0, 1.0)) == 1.0
