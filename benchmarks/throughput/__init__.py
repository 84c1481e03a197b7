"""Engine throughput: overhead against raw Parsl, driver cost, utilization, ingest, time to
quality, all in one run on one machine and one executor configuration.

This package owns the throughput benchmark; this file only says what is where and
re-exports the names other code imports (``from benchmarks.throughput import ...``).

Every figure is a JSON record ``{"metric", "mode", "n_tasks", "value", "baseline",
"ratio", "unit"}`` with ``ratio = value / baseline`` (:mod:`.records`); ``mode`` is the
engine's ``async`` or ``rounds``, or what a record varies. The parts, each a module that
says in its docstring what it measures and how:

1. and 2. **Overhead and scaling** (:mod:`.overhead`): no-op and 1 ms throughput and
   the round trip against raw Parsl, the driver's CPU and memory per task, and the
   paired no-op throughput (part ``paired``).
3. **Utilization** (:mod:`.utilization`): two scales of heavy-tailed sleep tasks with a
   GP in the loop, busy worker-seconds against the ideal list schedule.
4. **Ingest** (:mod:`.ingest`): ``Store.commit`` rows per second, the durability window.
5. **Time to quality** (:mod:`.quality`): the Müller-Brown demo, async against rounds.
6. **Colmena** (:mod:`.colmena_harness`, ``pip install -e .[bench]``): the same
   workloads through a Colmena thinker.

Beside them: the tasks the workers run (:mod:`.apps`), one timed run through the engine
or raw Parsl (:mod:`.runs`), the schedule arithmetic (:mod:`.schedule`), and the whole
benchmark, its table and command line (:mod:`.cli`).

Goals are printed next to the figures; nothing is tuned to meet them. Timings depend on
what else runs on the machine: the JSON records the load average before and after.

Usage::

    python -m benchmarks.throughput [--quick] [--json PATH] [--parts a,b] [--workdir DIR]
        [--sizes N,N] [--repeats R]

``--quick`` (~6 min on an idle 2-core machine, far longer when it is shared): 10^3 tasks
only (1 ms sleep tasks in async mode only, no sweep), 200 tasks per utilization scale,
``Budget(fine=40, coarse=21)`` for time to quality. Full: 10^3 and 10^4 (and 10^5 async, no-op),
sleep tasks in both modes, the sweep at 10^4, 400 tasks per utilization scale, the
demo's own budget (an hour or more on 2 cores).
"""

from __future__ import annotations

from benchmarks.throughput.apps import (
    DURATION_ALPHA,
    DURATION_HIGH,
    DURATION_LOW,
    heavy_tail_seconds,
    noop_app,
    sleep_app,
    sleep_energy,
    sleep_walker,
)
from benchmarks.throughput.cli import PARTS, main, run, settings, table
from benchmarks.throughput.colmena_harness import (
    colmena_records,
    colmena_status,
    colmena_utilization,
    colmena_utilization_records,
)
from benchmarks.throughput.ingest import durability_record, ingest, ingest_records
from benchmarks.throughput.overhead import overhead, paired_throughput
from benchmarks.throughput.quality import TARGET_FACTOR, time_to_quality
from benchmarks.throughput.records import GOALS, VARIANTS, record
from benchmarks.throughput.runs import engine_run, raw_run
from benchmarks.throughput.schedule import list_schedule, schedule_figures, steady_rate
from benchmarks.throughput.utilization import utilization, utilization_spec

__all__ = [
    "DURATION_ALPHA", "DURATION_HIGH", "DURATION_LOW", "GOALS", "PARTS", "TARGET_FACTOR",
    "VARIANTS", "colmena_records", "colmena_status", "colmena_utilization",
    "colmena_utilization_records", "durability_record", "engine_run", "heavy_tail_seconds",
    "ingest", "ingest_records", "list_schedule", "main", "noop_app", "overhead",
    "paired_throughput", "raw_run", "record", "run", "schedule_figures", "settings",
    "sleep_app", "sleep_energy", "sleep_walker", "steady_rate", "table", "time_to_quality",
    "utilization", "utilization_spec",
]
