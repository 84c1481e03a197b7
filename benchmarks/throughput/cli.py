"""The whole throughput benchmark and its command line: the sizes of a quick and a full
run (:func:`settings`), the parts run in order into one report (:func:`run`), the report
as a table (:func:`table`), and ``main`` (``python -m benchmarks.throughput``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.throughput.colmena_harness import (
    colmena_records,
    colmena_status,
    colmena_utilization_records,
)
from benchmarks.throughput.ingest import durability_record, ingest_records
from benchmarks.throughput.overhead import REPEATS, overhead, paired_throughput
from benchmarks.throughput.quality import TARGET_FACTOR, time_to_quality
from benchmarks.throughput.records import GOALS
from benchmarks.throughput.utilization import utilization

logger = logging.getLogger(__package__)
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "muller_brown.py"
PARTS = ("overhead", "paired", "utilization", "ingest", "quality", "colmena")
DESCRIPTION = ("Engine throughput: overhead against raw Parsl, driver cost, utilization, "
               "ingest, time to quality, Colmena side by side")


def settings(quick: bool) -> dict[str, Any]:
    """The sizes of each part in a quick (``--quick``) or a full run."""
    if quick:
        return {"sizes": {"async": [1000], "rounds": [1000]},
                "sleep_sizes": {"async": [1000]}, "sweep_size": None,
                "utilization_tasks": 200, "ingest": [(100, 50), (10_000, 3)],
                "fine_budget": 40, "colmena_sizes": [1000], "paired_size": 1000}
    return {"sizes": {"async": [1000, 10_000, 100_000], "rounds": [1000, 10_000]},
            "sleep_sizes": {"async": [1000, 10_000], "rounds": [1000, 10_000]},
            "sweep_size": 10_000, "utilization_tasks": 400,
            "ingest": [(100, 1000), (10_000, 20)], "fine_budget": None,
            "colmena_sizes": [1000, 10_000], "paired_size": 10_000}


def run(quick: bool, *, parts: Sequence[str] = PARTS, workdir: Path | None = None,
        sizes: Sequence[int] | None = None, repeats: int = REPEATS) -> dict[str, Any]:
    """Every part of the benchmark in this process; the report (records and details).
    ``sizes``: the no-op sizes of the overhead part (async mode only, no 1 ms tasks), of
    the Colmena part and (the largest) of the paired part, instead of the mode's."""
    chosen = settings(quick)
    if sizes:
        chosen.update(sizes={"async": list(sizes)}, sleep_sizes={}, sweep_size=None,
                      colmena_sizes=list(sizes), paired_size=max(sizes))
    started = time.time()
    load_before = os.getloadavg()
    records: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        folder = Path(workdir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if "overhead" in parts:
            records += overhead(chosen["sizes"], workdir=folder,
                                sleep_sizes=chosen["sleep_sizes"],
                                sweep_size=chosen["sweep_size"])
        if "paired" in parts:
            records += paired_throughput(chosen["paired_size"], workdir=folder,
                                         repeats=repeats)
        if "utilization" in parts:
            found, details["utilization"] = utilization(chosen["utilization_tasks"],
                                                        workdir=folder)
            records += found
            durability = durability_record(details["utilization"])
            if durability is not None:
                records.append(durability)
        if "ingest" in parts:
            records += ingest_records(chosen["ingest"], workdir=folder)
        if "quality" in parts:
            from campaign import Budget
            from campaign.script import load_campaign

            spec = load_campaign(DEMO)
            if chosen["fine_budget"] is not None:  # the demo's coarse work, scaled alike
                fine = chosen["fine_budget"]
                coarse = max(4, round(spec.budget.tasks["coarse"] * fine
                                      / spec.budget.tasks["fine"]))
                spec = spec.model_copy(update={"budget": Budget(fine=fine, coarse=coarse)})
            found, details["quality"] = time_to_quality(spec, workdir=folder)
            records += found
        colmena = colmena_status() if "colmena" in parts else None
        if colmena is not None and colmena["installed"]:
            records += colmena_records(chosen["colmena_sizes"], workdir=folder)
            found, details["colmena_utilization"] = colmena_utilization_records(
                chosen["utilization_tasks"], workdir=folder)
            records += found
    return {"benchmark": "throughput", "quick": quick, "records": records,
            "colmena": colmena, "details": details, "goals": GOALS,
            "machine": {"cpus": os.cpu_count(), "load_before": load_before,
                        "load_after": os.getloadavg()},
            "wall_seconds": time.time() - started}


def _number(value: Any) -> str:
    """A figure for the table: thousands separated, about three significant digits."""
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2e}"


def table(report: dict[str, Any]) -> str:
    """The records as a fixed-width table, goals alongside."""
    header = ("metric", "mode", "n", "value", "baseline", "ratio", "unit", "goal")
    rows = [header]
    for r in report["records"]:
        mode = r["mode"] + (f" {r['scale']}" if "scale" in r else "")
        goal = r.get("goal") or ""
        if goal and r.get("meets_goal") is not None:
            goal += "  [met]" if r["meets_goal"] else "  [NOT met]"
        if "paired_ratios" in r:
            goal += (f"  (median paired ratio {r['paired_ratio_median']:.2f}x; per repeat "
                     + ", ".join(f"{x:.2f}" for x in r["paired_ratios"]) + ")")
        if r.get("reached") is False:
            goal += "  (never reached the target: lower bound)"
        for side, who in (("method", "value"), ("baseline_method", "baseline")):
            if r.get(side, "difference") != "difference":
                goal += f"  ({who}: {r[side]})"
        rows.append((r["metric"], mode, str(r["n_tasks"]), _number(r["value"]),
                     _number(r["baseline"]), f"{r['ratio']:.2f}x", r["unit"], goal))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    machine = report["machine"]
    lines.append("")
    lines.append(f"machine: {machine['cpus']} cpus, load average before "
                 f"{machine['load_before'][0]:.2f}, after {machine['load_after'][0]:.2f} "
                 "(other jobs may share the cores: timings are upper bounds)")
    quality = report["details"].get("quality")
    if quality:
        lines.append(f"time to quality: target reference RMSE {quality['target_rmse']:.3g} "
                     f"(= {TARGET_FACTOR} x rounds-mode final)")
    if report.get("colmena") is not None:
        lines.append(f"colmena: {report['colmena']['note']}")
    if report["quick"]:
        lines.append("cpu_per_task_growth: n/a in --quick (one size)")
    lines.append(f"benchmark wall time: {report['wall_seconds']:.0f} s")
    return "\n".join(lines)


def quiet_logging() -> None:
    """Warnings only from the engine and Parsl (whose loggers pass DEBUG records to the
    root handler); this benchmark's progress lines at INFO."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    progress = logging.StreamHandler()
    progress.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(progress)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.throughput``: run the parts asked for, print the table,
    write the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput",
                                     description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true",
                        help="10^3 tasks only, 200 tasks per utilization scale, fine=40")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--workdir", type=Path, help="run directories here (default: a "
                        "temporary folder); each run's folder is removed after it")
    parser.add_argument("--sizes", help="comma-separated no-op task counts for the overhead "
                        "(async only) and Colmena parts, the largest for the paired part, "
                        "e.g. 10000")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"engine/raw alternations of the paired part (default {REPEATS})")
    args = parser.parse_args(argv)
    try:
        sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else None
    except ValueError:
        parser.error(f"--sizes takes comma-separated integers, got {args.sizes!r}")
    if sizes and min(sizes) < 4:
        parser.error("--sizes: each run is also made at half its size: use 4 or more")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    quiet_logging()
    report = run(args.quick, parts=parts, workdir=args.workdir, sizes=sizes,
                 repeats=args.repeats)
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")

