"""The simulated site against a real Slurm: the benchmark's two-scale campaign run on the
test suite's private one-node Slurm (tests/test_slurm.py's fixture: it starts and stops
that Slurm, and skips, or fails under ``CI``, exactly as there), then replayed on the
virtual clock with what its ledger recorded (benchmarks.replay, ``latencies``): each
attempt's duration and start delay (the batch job's queue wait and start, a cold worker,
dispatch), and from its driver, metered: each fit's turnaround and its wall seconds per
CPU second.
Makespan and per-scale utilization agree within ``TOLERANCE`` (docs/benchmarks.md gives
the spread measured under load)."""

import pytest
from test_replay import check_replay_agrees
from test_slurm import slurm_conf  # noqa: F401 (a fixture: the same Slurm)

from benchmarks import replay

pytestmark = [pytest.mark.slow, pytest.mark.htex]


def test_simulated_replay_of_a_real_slurm_run_agrees_with_it(slurm_conf, tmp_path):  # noqa: F811
    result = replay.run("slurm", 48, tmp_path, duration_scale=1.0, replays=("latencies",))
    assert result["workers"] == {"sim-coarse": 2, "sim-fine": 2}, result
    check_replay_agrees(result)  # within test_replay.TOLERANCE
