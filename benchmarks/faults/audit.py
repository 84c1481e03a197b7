"""The fault suite's audit: check a run directory against its own ledger and store
(and, rounds mode, against an uninterrupted reference run).

Owns: what counts as lost, duplicated or torn, and which failure reasons are the
infrastructure's (:data:`INFRASTRUCTURE`: charged to the app, they break the suite).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.store import Store

LOST_WORKER = re.compile(r"WorkerLost|ManagerLost|loss of worker", re.IGNORECASE)
# reasons that are the infrastructure's (or a deadline, which this app never needs)
INFRASTRUCTURE = re.compile(r"WorkerLost|ManagerLost|loss of worker|BadStateException|"
                            r"ScalingFailed|SubmitException|InterchangeLost|ExecutorError|"
                            r"DeadlineExceeded", re.IGNORECASE)


def audit(run_dir: Path, budget: int, reference_dir: Path | None = None) -> dict[str, Any]:
    """Check a run directory against its own ledger and store, and (rounds mode,
    ``reference_dir``) against an uninterrupted reference run."""
    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    store = Store(run_dir, ledger, read_only=True)
    problems: list[str] = []
    torn = duplicated = lost = committed = 0
    for scale in ("coarse", "fine"):
        done = {t["task_id"]: t for t in ledger.tasks(scale, status="done")}
        committed += len(done)
        rows = store.rows(scale)
        if scale in store.group:
            group = store.group[scale]
            lengths = [group["x"].shape[0]] + [a.shape[0] for _, a in group["y"].arrays()] + [
                a.shape[0] for _, a in group["meta"].arrays()]
            if any(length != rows for length in lengths):
                problems.append(f"{scale}: array lengths {sorted(set(lengths))}, {rows} "
                                "committed")
            torn += sum(abs(length - rows) for length in lengths)
            task_ids = store.read(scale).meta["task_id"]
        else:
            task_ids = np.zeros(0, np.int64)
        unique, counts = np.unique(task_ids, return_counts=True)
        in_store = dict(zip(unique.tolist(), counts.tolist(), strict=True))
        for task_id, count in in_store.items():
            if task_id not in done:
                torn += count
                problems.append(f"{scale}: {count} rows of task {task_id}, not a done task")
            elif count > done[task_id]["rows"]:
                duplicated += count - done[task_id]["rows"]
                problems.append(f"{scale}: task {task_id} has {count} rows, recorded "
                                f"{done[task_id]['rows']}")
            elif count < done[task_id]["rows"]:
                torn += done[task_id]["rows"] - count
                problems.append(f"{scale}: task {task_id} has {count} rows, recorded "
                                f"{done[task_id]['rows']}")
        missing = [task_id for task_id, task in done.items()
                   if task["rows"] and task_id not in in_store]
        lost += len(missing)
        if missing:
            problems.append(f"{scale}: done tasks without rows: {missing[:10]}")
        if reference_dir is not None:  # what the uninterrupted run completed must be here
            reference_ledger = Ledger(reference_dir / "ledger.sqlite", read_only=True)
            key = ("walker", "parent_row", "round")
            ours = {tuple(t[k] for k in key) for t in done.values()}
            theirs = {tuple(t[k] for k in key)
                      for t in reference_ledger.tasks(scale, "done")}
            reference_ledger.close()
            lost += len(theirs - ours)
            if theirs - ours:
                problems.append(f"{scale}: {len(theirs - ours)} tasks done in the reference "
                                "and not here")
    unfinished = ledger.tasks(status="submitted")
    lost += len(unfinished)
    fine = ledger.tasks("fine")
    stop_reason = ledger.fact("stop_reason")
    if stop_reason and "task budget spent" in stop_reason and len(fine) != budget:
        lost += abs(budget - len(fine))
        problems.append(f"'{stop_reason}' with {len(fine)} fine tasks recorded")
    parents, times = np.unique([t["parent_row"] for t in fine], return_counts=True)
    if np.any(times > 1):
        duplicated += int(np.sum(times[times > 1] - 1))
        problems.append(f"source rows promoted more than once: {parents[times > 1].tolist()}")
    quarantined = ledger.tasks(status="quarantined")
    source_x = store.read("coarse").x
    bad_inputs = {tuple(np.round(source_x[t["parent_row"]], 12)) for t in quarantined
                  if t["scale"] == "fine"}
    trained_on_quarantined = 0
    models = "models/coarse-to-fine" in store.group
    for name in (store.group["models/coarse-to-fine"].group_keys() if models else []):
        state = store.load_model("coarse-to-fine", int(name))
        if "x_train" in state:
            trained_on_quarantined += sum(tuple(np.round(row, 12)) in bad_inputs
                                          for row in state["x_train"])
    same = None
    if reference_dir is not None:
        reference_ledger = Ledger(reference_dir / "ledger.sqlite", read_only=True)
        reference = Store(reference_dir, reference_ledger, read_only=True)
        same = all(
            np.array_equal(store.read(scale).x, reference.read(scale).x)
            and all(np.array_equal(store.read(scale).y[k], reference.read(scale).y[k])
                    for k in reference.read(scale).y)
            for scale in ("coarse", "fine"))
        reference_ledger.close()
    attempts = ledger.attempts()
    charged = [a for a in attempts if a["outcome"] in ("failed", "quarantined")
               and INFRASTRUCTURE.search(a["reason"] or "")]
    for attempt in charged[:10]:
        problems.append(f"task {attempt['task_id']} attempt {attempt['attempt']} charged to "
                        f"the app: {(attempt['reason'] or '')[:200]}")
    for_infrastructure = [t for t in quarantined if INFRASTRUCTURE.search(t["reason"] or "")]
    for task in for_infrastructure[:10]:
        problems.append(f"task {task['task_id']} quarantined for the infrastructure: "
                        f"{(task['reason'] or '')[:200]}")
    reasons = {(a["task_id"], a["attempt"]): a["reason"] or "" for a in attempts}
    for task in ledger.tasks():  # a done task keeps the reason of its last failed attempt
        reasons.setdefault((task["task_id"], task["attempts"] - 1), task["reason"] or "")
    result = {"mode": ledger.fact("mode"), "stop_reason": stop_reason,
              "committed": committed, "lost": lost, "duplicated": duplicated, "torn": torn,
              "quarantined": len(quarantined),
              "quarantined_for_infrastructure": len(for_infrastructure),
              "infrastructure_charged_to_app": len(charged),
              "attempts_lost": sum(1 for a in attempts if a["outcome"] == "lost"),
              "trained_on_quarantined": trained_on_quarantined,
              "unfinished": len(unfinished),
              "identical_to_uninterrupted": same,
              "retried": sum(1 for t in ledger.tasks() if t["attempts"] > 1),
              "app_retries": sum(1 for a in attempts if a["outcome"] == "failed"),
              "attempts_worker_lost": sum(1 for r in reasons.values() if LOST_WORKER.search(r)),
              "deadline_exceeded": sum(1 for r in reasons.values() if "DeadlineExceeded" in r),
              "problems": problems[:30]}
    result["needed_deadline"] = result["deadline_exceeded"] > 0
    ledger.close()
    return result

