"""Fault injection: SIGKILL the campaign driver again and again, kill HTEX workers, inject
failing and NaN simulations, resume after each kill, then audit the run directory.

A campaign whose fine scale fails on purpose (one region always returns NaN, one always
raises, and some seeds fail transiently) runs under faults in each engine mode
(``mode="async"``, the default, and ``mode="rounds"``):

* **Driver kills**, on a fixed schedule (:func:`kill_plan`): the first kills go through
  every named point of :mod:`campaign.faults` once, in order (``between-store-and-ledger``,
  ``during-fit``, ``after-plan``, ``after-commit``: the driver SIGKILLs itself on the
  n-th pass of the point, ``CAMPAIGN_FAULT_POINT=<point>:<n>``); later kills alternate a
  kill at a random moment (SIGKILL of the driver's whole process session, as a node
  failure would, once a random share of the remaining fine tasks has finished in this
  start, plus up to half a second) and the next point of the cycle. A point's pass number n
  is drawn from 1..:data:`PASSES` [point], small enough that a start with work left
  reaches it: every start plans a batch and commits, and every start that gets to the
  end fits (the final fit). Each start is resumed with ``campaign resume``. Every event
  records whether the kill happened (``fired``: return code -9 after the point, or the
  driver killed at its moment) or the run finished first; ``points_fired`` counts
  the kills per point. A driver that killed itself at a point leaves its Parsl
  processes behind (as an OOM kill of the driver alone would): the next start must end
  them (``campaign.processes``); ``leftover_processes`` counts those still alive at the
  end (then the suite ends them), and ``leftover_details`` says of each whether its
  driver had recorded it, when it was born and when its driver last recorded
  (seconds after that driver's launch), and its command line.
* **Worker kills** (site ``local`` only, ``worker_kills`` > 0): while a driver runs,
  SIGKILLs of HTEX worker processes of its simulation pools (children of
  ``process_worker_pool.py`` that hold a ``worker_<n>.log``; never the pool's manager or
  resource-tracker process, never the ``train`` pool), at random moments, in a pool with
  a worker mid-task if there is one, busy workers first; the first event, and some later
  ones, kill two workers of one pool within 2 s. A worker killed while it waits for a
  task holds its pool's task-queue lock for ever, and that pool starts no task again
  (Parsl 2026.10): the engine counts an attempt that does not start there as lost after
  ``campaign.dispatcher.STALL_SECONDS`` and replaces the pool's block.
  ``deadline_exceeded`` counts attempts ended by the engine-side deadline. A killed
  worker is an infrastructure loss (Parsl's ``WorkerLost`` or ``ManagerLost``, or the
  worker named by the attempt's start marker is gone): the attempt is recorded with
  outcome ``lost`` and resubmitted with the same seed, using none of the task's
  ``retries`` (``campaign.retry``).
* **Refused submissions** (site ``local`` only, ``refusals`` > 0): from each driver start
  :func:`refusal_starts` names until one start submits its ``sim-fine`` block, the
  local provider refuses that submission once (its ``submit`` raises Parsl's
  ``SubmitException`` with an ``sbatch: error: ...`` message, through a
  ``sitecustomize`` module put on the start's ``PYTHONPATH``), as a batch scheduler
  refusing a job would. Parsl records a failed block; it may submit the block again
  (the run goes on), or give the executor up: then the start must end with exit 1,
  the engine saying the scale cannot run on this site with the scheduler's message,
  and the next start (a resume) goes on. Either way nothing is quarantined or charged
  to the app for it. Driver and worker kills go on as planned in that start.

The audit checks the faulty run against its own ledger and store (both modes):

``lost``        done tasks whose rows are missing from the store; tasks still
                'submitted' at the end; fine tasks recorded != the budget when the run
                says 'task budget spent'; rounds mode also: (walker, parent_row, round)
                tasks the uninterrupted reference completed that the faulty run did not
``duplicated``  rows of a task committed more than once; a source row promoted twice
``torn``        arrays of a scale whose length differs from the committed count, rows
                whose task is not a done task of that scale, done tasks with fewer rows
                in the store than recorded
``quarantined`` tasks quarantined (expected > 0: faults are injected on purpose)
``quarantined_for_infrastructure``  quarantined tasks whose reason is an infrastructure
                loss or an engine-side deadline (the app never hangs: a deadline here
                means a lost attempt was charged to the app); must be 0
``infrastructure_charged_to_app``  attempts recorded 'failed' or 'quarantined' whose
                reason is an infrastructure loss or a deadline (an app retry used by
                the infrastructure); must be 0
``attempts_lost`` attempts recorded with outcome 'lost' (resubmitted, no retry used)
``trained_on_quarantined``  training inputs of any saved model that are quarantined inputs
``identical_to_uninterrupted``  rounds mode: the store equals an uninterrupted reference
                run of the same seed (what rounds mode promises). Async mode: ``None``,
                and no reference is run: async steering reacts to completion order and
                timing, so two runs of one seed differ and there is nothing to equal.

Usage::

    python -m benchmarks.faults [--quick] [--mode async|rounds|both] [--json PATH]
                                [--site local|threads] [--kills N] [--worker-kills N]
                                [--refusals N]

A mode passes when nothing is lost, duplicated, torn or unfinished, nothing quarantined
is trained on, every fault point fired, every planned refusal stopped its start as it
should, no infrastructure fault was charged to the app, no Parsl process of a killed
driver is left, the campaign's own last exit is 0, and (rounds) the store equals the
uninterrupted run's.
"""

from benchmarks.faults.audit import audit
from benchmarks.faults.schedule import (
    FULL,
    MODES,
    QUICK,
    kill_plan,
    refusal_starts,
    worker_kill_plan,
)
from benchmarks.faults.suite import failures, passed, run_mode, run_suite

__all__ = ["FULL", "MODES", "QUICK", "audit", "failures", "kill_plan", "passed",
           "refusal_starts", "run_mode", "run_suite", "worker_kill_plan"]
