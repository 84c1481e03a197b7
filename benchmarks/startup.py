"""Start-up time of the ``campaign`` command: how long a user waits for ``--help``.

Each command runs as a fresh subprocess (the installed ``campaign`` script next to this
interpreter, else ``python -m campaign.cli``), output discarded, ``--repeats`` times
(default 5); the median and the minimum wall time are reported. Commands:

- ``help``: ``campaign --help``;
- ``version``: ``campaign --version``;
- ``sites``: ``campaign sites``;
- ``status``: ``campaign status RUN`` on a real run directory: a tiny two-scale
  Müller-Brown campaign (2 walkers, 4 fine tasks) run on the ``threads`` site into a
  temporary directory first (not timed);
- ``status_json``: ``campaign status RUN --json``;
- ``learners``: ``campaign learners``;
- ``policies``: ``campaign policies``.

For comparison, ``python`` is the interpreter's own start-up (``python -c pass``). For
each command one more run (not timed) lists which heavy libraries the command imports
(``imports``: of torch, gpytorch, parsl, matplotlib, sklearn, scipy, zarr, numpy,
xarray).

Records: ``{"command", "argv", "median_seconds", "min_seconds", "runs", "imports"}``;
``runs`` holds every timed run in seconds.

Run: ``python -m benchmarks.startup [--json PATH] [--repeats N] [--only help,status]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COMMANDS: dict[str, list[str]] = {
    "help": ["--help"],
    "version": ["--version"],
    "sites": ["sites"],
    "status": ["status", "{run}"],
    "status_json": ["status", "{run}", "--json"],
    "learners": ["learners"],
    "policies": ["policies"],
}
HEAVY = ("torch", "gpytorch", "parsl", "matplotlib", "sklearn", "scipy", "zarr", "numpy",
         "xarray")
# Runs the CLI in-process and prints the heavy top-level modules it imported (stderr).
_PROBE = """
import json, sys
from campaign.cli import app
sys.argv = ["campaign", *sys.argv[1:]]
try:
    app()
except SystemExit:
    pass
sys.stderr.write("IMPORTS " + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def campaign_command() -> list[str]:
    """How to start the CLI: the console script beside this interpreter if installed."""
    script = Path(sys.executable).with_name("campaign")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("campaign")
    return [found] if found else [sys.executable, "-m", "campaign.cli"]


def make_run(run_dir: Path) -> Path:
    """A tiny finished two-scale run in ``run_dir`` (threads site, a few seconds)."""
    from apps import toy
    from campaign import Budget, Campaign, Promotion, Scale
    from campaign.engine import Engine
    from learners import ExactGP
    from learners.acquisition import MaxVariance

    spec = Campaign(
        name="startup",
        scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 2000, "stride": 100},
                      walkers=toy.initial_walkers(2)),
                Scale("fine", app=toy.smeared_energy, params={"n_samples": 4096})],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=0, iterations=30),
                              acquisition=MaxVariance(), batch_size=2, quantity="energy")],
        budget=Budget(fine=4, coarse=4),
    )
    Engine(spec, run_dir, site="threads", overwrite=True).run()
    return run_dir


def time_command(argv: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` fresh runs of ``argv`` (output discarded)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        completed = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   check=False)
        seconds.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {completed.returncode}: "
                               f"{completed.stderr.decode(errors='replace')[-500:]}")
    return seconds


def imported(arguments: list[str]) -> list[str]:
    """The heavy libraries ``campaign ARGUMENTS`` imports (one untimed in-process run)."""
    completed = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *arguments],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    text = completed.stderr.decode(errors="replace")
    marker = text.rfind("IMPORTS ")
    return json.loads(text[marker + len("IMPORTS "):]) if marker >= 0 else []


def record(command: str, argv: list[str], runs: list[float],
           imports: list[str] | None) -> dict[str, Any]:
    return {"command": command, "argv": argv, "median_seconds": statistics.median(runs),
            "min_seconds": min(runs), "runs": runs, "imports": imports}


def measure(names: list[str], repeats: int, workdir: Path) -> list[dict[str, Any]]:
    """One record per command name (plus ``python``, the bare interpreter)."""
    unknown = sorted(set(names) - set(COMMANDS))
    if unknown:
        raise ValueError(f"unknown commands {unknown}; known: {', '.join(COMMANDS)}")
    run_dir = None
    if any("{run}" in " ".join(COMMANDS[name]) for name in names):
        run_dir = make_run(workdir / "run")
    bare = [sys.executable, "-c", "pass"]
    records = [record("python", ["python", "-c", "pass"], time_command(bare, repeats), None)]
    base = campaign_command()
    for name in names:
        arguments = [part.format(run=run_dir) for part in COMMANDS[name]]
        runs = time_command([*base, *arguments], repeats)
        shown = ["campaign", *[("RUN" if part == str(run_dir) else part) for part in arguments]]
        records.append(record(name, shown, runs, imported(arguments)))
    return records


def table(records: list[dict[str, Any]]) -> str:
    lines = [f"{'command':<34} {'median s':>9} {'min s':>7}  imports"]
    for r in records:
        imports = "-" if r["imports"] is None else (", ".join(r["imports"]) or "none")
        lines.append(f"{' '.join(r['argv']):<34} {r['median_seconds']:>9.3f} "
                     f"{r['min_seconds']:>7.3f}  {imports}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line entry point (see the module docstring); returns the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--repeats", type=int, default=5, help="runs per command")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(COMMANDS)}")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    names = args.only.split(",") if args.only else list(COMMANDS)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="campaign-startup-") as scratch:
        records = measure(names, args.repeats, Path(scratch))
    report = {"benchmark": "startup", "repeats": args.repeats, "python": sys.version.split()[0],
              "cpus": os.cpu_count(), "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "records": records}
    print(table(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
