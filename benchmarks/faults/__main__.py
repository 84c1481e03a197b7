"""``python -m benchmarks.faults``: run the fault suite, print its table, write its
JSON, exit 0 when every mode passed (the package's docstring says what it does)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.faults import __doc__ as suite_doc
from benchmarks.faults.schedule import FULL, MODES, QUICK
from benchmarks.faults.suite import failures, passed, run_suite
from campaign.faults import FAULT_POINTS


def _print(results: dict[str, dict[str, Any]], site: str) -> None:
    rows: list[tuple[str, list[Any]]] = [
        ("kills", [r["kills"] for r in results.values()]),
        ("random_kills", [r["random_kills"] for r in results.values()])]
    rows += [(f"fired at {point}", [r["points_fired"][point] for r in results.values()])
             for point in FAULT_POINTS]
    rows += [(key, [r[key] for r in results.values()]) for key in (
        "worker_kills", "double_worker_kills", "attempts_worker_lost", "attempts_lost",
        "refusals", "refusals_stopped_run", "refusals_handled", "deadline_exceeded",
        "leftover_processes", "committed", "lost", "duplicated", "torn", "unfinished",
        "quarantined", "quarantined_for_infrastructure", "infrastructure_charged_to_app",
        "trained_on_quarantined", "retried", "app_retries", "identical_to_uninterrupted",
        "final_exit_code", "wall_seconds")]
    width = max(len(name) for name, _ in rows)
    print(f"fault suite on site '{site}':")
    print(f"  {'':<{width}}" + "".join(f"  {m:>8}" for m in results))
    for name, values in rows:
        cells = ("n/a" if v is None else f"{v:.0f}" if isinstance(v, float) else str(v)
                 for v in values)
        print(f"  {name:<{width}}" + "".join(f"  {c:>8}" for c in cells))
    for mode, result in results.items():
        if result.get("could_not_progress"):
            print(f"{mode}: the run ended with exit 1: {result['could_not_progress']}")
        print(f"{mode}: PASS" if passed(result) else
              f"{mode}: FAIL ({', '.join(failures(result))}) {result['problems']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults",
                                     description=suite_doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['kills']} driver kills, {QUICK['worker_kills']} worker "
                        f"kills, {QUICK['refusals']} refusal on {QUICK['site']}, budget "
                        f"{QUICK['budget']}")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both")
    parser.add_argument("--site", choices=("local", "threads"), default=None)
    parser.add_argument("--kills", type=int, default=None)
    parser.add_argument("--worker-kills", type=int, default=None,
                        help="HTEX worker SIGKILLs (site local only)")
    parser.add_argument("--refusals", type=int, default=None,
                        help="refused sim-fine block submissions (site local only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="run in this folder and keep it (logs, ledgers, stores); "
                        "default: a temporary folder, removed at the end")
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("site", "kills", "worker_kills", "refusals"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    started = time.time()
    result = run_suite(kills=settings["kills"], site=settings["site"],
                       budget=settings["budget"], seed=args.seed, mode=args.mode,
                       worker_kills=settings["worker_kills"],
                       driver_timeout=settings["driver_timeout"],
                       refusals=settings["refusals"], workdir=args.workdir)
    results = result if args.mode == "both" else {args.mode: result}
    _print(results, settings["site"])
    print(f"total wall time {time.time() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": settings, "modes": results,
                                         "wall_seconds": time.time() - started},
                                        indent=2) + "\n")
    raise SystemExit(0 if all(passed(r) for r in results.values()) else 1)


if __name__ == "__main__":
    main()
