"""Fault injection: SIGKILL the campaign driver again and again, kill workers, inject
failing and NaN simulations, resume after each kill, then audit the run directory.

A campaign whose fine scale fails on purpose (one region always returns NaN, one always
raises, and some seeds fail transiently) runs once without interruption (the reference)
and once under faults: the driver is killed (with its whole process group, as a node
failure would) at random moments and at the named fault points of
:mod:`campaign.faults` (between the zarr write and the ledger commit, while a
learner is being fitted, after a batch is recorded but before it is submitted, right
after a commit), and resumed with ``campaign resume`` after each kill. A worker killed
mid-task is tested separately (``tests/test_faults.py``): repeated worker deaths within
seconds were seen to leave a task hanging inside Parsl's HTEX (docs/reliability.md).

The audit compares the faulty run with its own ledger and with the reference:

``lost``        simulations the reference completed that the faulty run never committed,
                plus done tasks whose rows are missing from the store
``duplicated``  rows of a task committed more than once
``torn``        arrays of a scale whose length differs from the committed count, rows
                whose task is not a done task of that scale, misaligned row counts
``quarantined`` tasks quarantined (expected > 0: faults are injected on purpose)
``trained_on_quarantined``  training inputs of any saved model that are quarantined inputs

Usage::

    python -m benchmarks.faults [--quick] [--json PATH] [--site local|threads] [--kills N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from campaign.faults import FAULT_POINTS
from campaign.ledger import Ledger
from campaign.store import Store

SCRIPT = textwrap.dedent('''
    """Müller-Brown campaign whose fine scale fails on purpose (benchmarks.faults)."""
    import numpy as np

    from apps import toy
    from campaign import Budget, Campaign, Promotion, Scale
    from learners import ExactGP
    from learners.acquisition import MaxVariance


    def flaky_fine(x, *, seed, n_samples):
        if x[0] > 0.45:  # a region that always returns NaN
            return {{"x": np.atleast_2d(x), "energy": np.array([np.nan])}}
        if x[1] > 1.6:  # a region that always raises
            raise RuntimeError("injected failure")
        if seed % 5 == 0:  # transient: the retry's new seed usually passes
            raise RuntimeError("injected transient failure")
        return toy.smeared_energy(x, seed=seed, n_samples=n_samples)


    campaign = Campaign(
        name="faults",
        scales=[Scale("coarse", app=toy.langevin, params={{"n_steps": 2000, "stride": 100}},
                      walkers=toy.initial_walkers(3)),
                Scale("fine", app=flaky_fine, params={{"n_samples": 8192}}, retries=1)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=60),
                              acquisition=MaxVariance(), batch_size=4, quantity="energy")],
        budget=Budget(fine={budget}),
        seed=3,
    )
''')


def campaign_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "campaign"), *args]


def launch(args: list[str], log: Path, fault_point: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CAMPAIGN_FAULT_POINT", None)
    if fault_point:
        env["CAMPAIGN_FAULT_POINT"] = fault_point
    handle = open(log, "a")  # noqa: SIM115 - closed by the caller through the process
    handle.write(f"\n$ {' '.join(args)}  [{fault_point or 'no fault point'}]\n")
    handle.flush()
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _has_campaign(out: Path) -> bool:
    if not (out / "ledger.sqlite").exists():
        return False
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    try:
        return ledger.fact("name") is not None
    finally:
        ledger.close()


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the driver and everything in its session (Parsl's interchange and worker
    pools start their own process groups, but stay in the session), as a node failure
    would."""
    import psutil

    for other in psutil.process_iter(["pid"]):
        try:
            if other.pid != os.getpid() and os.getsid(other.pid) == process.pid:
                other.kill()
        except (psutil.Error, ProcessLookupError):
            continue
    process.wait()


def run_faulty(script: Path, out: Path, site: str, kills: int, reference_seconds: float,
               rng: random.Random, log: Path) -> dict[str, Any]:
    """Run under ``kills`` driver kills (half at random times, half at fault points)."""
    events = []
    driver_kills = 0
    attempt = 0
    while True:
        attempt += 1
        # a driver killed before it recorded its campaign left nothing to resume: run again
        started = _has_campaign(out)
        args = (campaign_command("run", str(script), "--site", site, "--out", str(out),
                                 "--no-report") if not started else
                campaign_command("resume", str(out), "--site", site, "--no-report"))
        kill_left = driver_kills < kills
        point = None
        if kill_left and driver_kills % 2 == 1:
            point = f"{FAULT_POINTS[(driver_kills // 2) % len(FAULT_POINTS)]}:{rng.randint(1, 2)}"
        process = launch(args, log, point)
        if kill_left and point is None:
            # a resumed driver must get past start-up and some rounds before it dies
            delay = rng.uniform(0.3 * reference_seconds, 0.6 * reference_seconds)
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                kill_group(process)
                driver_kills += 1
                events.append({"kill": driver_kills, "how": "random time", "after_s": delay})
                continue
        else:
            process.wait(timeout=600)
            kill_group(process)  # its workers, if any are left
            if process.returncode == -signal.SIGKILL:
                driver_kills += 1
                events.append({"kill": driver_kills, "how": f"fault point {point}"})
                continue
        if process.returncode != 0:
            raise RuntimeError(f"campaign exited {process.returncode}; see {log}")
        ledger = Ledger(out / "ledger.sqlite", read_only=True)
        finished = ledger.fact("stop_reason") is not None
        ledger.close()
        if finished and driver_kills >= kills:
            break
        if finished:  # the run ended before the planned kill: nothing more to kill
            events.append({"kill": None, "how": "run finished before the next planned kill"})
            break
    return {"events": events, "driver_kills": driver_kills, "attempts": attempt}


def audit(run_dir: Path, reference_dir: Path) -> dict[str, Any]:
    """Compare a run directory with its ledger and with an uninterrupted reference."""
    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    store = Store(run_dir, ledger, read_only=True)
    reference_ledger = Ledger(reference_dir / "ledger.sqlite", read_only=True)
    reference = Store(reference_dir, reference_ledger, read_only=True)
    torn = duplicated = lost = committed = 0
    for scale in ("coarse", "fine"):
        rows = store.rows(scale)
        group = store.group[scale]
        lengths = [group["x"].shape[0]] + [a.shape[0] for _, a in group["y"].arrays()] + [
            a.shape[0] for _, a in group["meta"].arrays()]
        torn += sum(abs(length - rows) for length in lengths)
        data = store.read(scale)
        done = {t["task_id"]: t for t in ledger.tasks(scale, status="done")}
        task_ids = data.meta["task_id"]
        unique, counts = np.unique(task_ids, return_counts=True)
        for task_id, count in zip(unique.tolist(), counts.tolist(), strict=True):
            if task_id not in done:
                torn += count
            elif count > done[task_id]["rows"]:
                duplicated += count - done[task_id]["rows"]
            elif count < done[task_id]["rows"]:
                torn += done[task_id]["rows"] - count
        lost += sum(1 for task_id in done if task_id not in set(unique.tolist()))
        committed += len(done)
        # what the uninterrupted run completed must be here too
        key = ("walker", "parent_row", "round")
        ours = {tuple(t[k] for k in key) for t in done.values()}
        theirs = {tuple(t[k] for k in key) for t in reference_ledger.tasks(scale, "done")}
        lost += len(theirs - ours)
    quarantined = ledger.tasks("fine", status="quarantined")
    source_x = store.read("coarse").x
    bad_inputs = {tuple(np.round(source_x[t["parent_row"]], 12)) for t in quarantined}
    trained_on_quarantined = 0
    models = store.group["models/coarse-to-fine"] if "models" in store.group else None
    for name in (models.group_keys() if models is not None else []):
        state = store.load_model("coarse-to-fine", int(name))
        if "x_train" in state:
            trained_on_quarantined += sum(tuple(np.round(row, 12)) in bad_inputs
                                          for row in state["x_train"])
    same = all(
        np.array_equal(store.read(scale).x, reference.read(scale).x)
        and all(np.array_equal(store.read(scale).y[k], reference.read(scale).y[k])
                for k in reference.read(scale).y)
        for scale in ("coarse", "fine"))
    worker_kills = sum(1 for t in ledger.tasks() if t["reason"] and "Lost" in t["reason"])
    result = {"committed": committed, "lost": lost, "duplicated": duplicated, "torn": torn,
              "worker_kills": worker_kills,
              "quarantined": len(quarantined),
              "trained_on_quarantined": trained_on_quarantined,
              "unfinished": len(ledger.tasks(status="submitted")),
              "identical_to_uninterrupted": bool(same),
              "retried": sum(1 for t in ledger.tasks() if t["attempts"] > 1)}
    ledger.close()
    reference_ledger.close()
    return result


def run_suite(kills: int, site: str = "threads", budget: int = 24, seed: int = 0,
              workdir: Path | None = None) -> dict[str, Any]:
    """The whole suite in ``workdir`` (a temporary folder by default)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        folder = Path(workdir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "fault_campaign.py"
        script.write_text(SCRIPT.format(budget=budget))
        log = folder / "campaign.log"
        started = time.time()
        reference = launch(campaign_command("run", str(script), "--site", site, "--out",
                                            str(folder / "reference"), "--no-report"), log)
        if reference.wait(timeout=900) != 0:
            raise RuntimeError(f"reference run failed; see {log}")
        reference_seconds = time.time() - started
        faulty = run_faulty(script, folder / "faulty", site, kills, reference_seconds,
                            rng, log)
        result = {"site": site, "budget": budget, "seed": seed,
                  "kills": faulty["driver_kills"],
                  "driver_starts": faulty["attempts"], "events": faulty["events"],
                  "reference_seconds": reference_seconds,
                  **audit(folder / "faulty", folder / "reference")}
        result["wall_seconds"] = time.time() - started
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 kills on threads")
    parser.add_argument("--site", choices=("local", "threads"), default=None)
    parser.add_argument("--kills", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    site = args.site or ("threads" if args.quick else "local")
    kills = args.kills or (6 if args.quick else 20)
    result = run_suite(kills=kills, site=site, budget=32 if args.quick else 48)
    keys = ("kills", "worker_kills", "committed", "lost", "duplicated", "torn", "quarantined",
            "trained_on_quarantined", "retried", "identical_to_uninterrupted", "wall_seconds")
    width = max(len(k) for k in keys)
    print(f"fault suite on site '{site}':")
    for key in keys:
        value = result[key]
        print(f"  {key:<{width}}  {value:.0f}" if isinstance(value, float)
              else f"  {key:<{width}}  {value}")
    ok = result["lost"] == result["duplicated"] == result["torn"] == 0
    ok = ok and result["trained_on_quarantined"] == 0
    print("PASS: lost = duplicated = torn = 0" if ok else "FAIL")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
