"""Ramachandran report of a CG -> AA campaign run.

``ramachandran_figure(run_dir, path)`` draws (left) the (phi, psi) of every CG candidate in
the store with the configurations each round chose for AA simulation, coloured by round,
and (right) the surrogate's learning curve against the random-selection baseline when the
run has one (``<run>/baseline-random``, written by ``campaign report``/``campaign run``).

Command line: ``python -m apps.molecular_report RUN_DIR [PATH]`` (default
``RUN_DIR/ramachandran.png``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from apps.featurize import RowDihedrals

__all__ = ["chosen_by_round", "ramachandran_figure"]


def chosen_by_round(run_dir: str | Path, promotion: str) -> dict[int, list[int]]:
    """``{round: source rows chosen}`` of ``promotion`` in a run directory."""
    from campaign.report import open_run

    ledger, _ = open_run(run_dir)
    try:
        return {r["round"]: list(r["chosen_rows"]) for r in ledger.rounds(promotion)
                if r.get("chosen_rows")}
    finally:
        ledger.close()


def ramachandran_figure(run_dir: str | Path, path: str | Path, *, source: str = "cg",
                        target: str = "aa",
                        torsions: Sequence[Sequence[int]] = ((0, 1, 2, 3), (1, 2, 3, 4))
                        ) -> Path:
    """Write the Ramachandran figure of a run; returns ``path``.

    Args:
        run_dir: a campaign run directory.
        path: image file to write (format from the suffix).
        source, target: the promotion's scales.
        torsions: bead quadruples of phi and psi in the source rows.

    Raises:
        campaign.report.ReportError: ``run_dir`` is not a run.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from campaign.ledger import Ledger
    from campaign.report import BASELINE_DIR, learning_curve, open_run

    run_dir = Path(run_dir)
    promotion = f"{source}-to-{target}"
    ledger, store = open_run(run_dir)
    try:
        pool = store.read(source)
        angles = (np.degrees(RowDihedrals(torsions).angles(pool.x)) if len(pool)
                  else np.zeros((0, 2)))
        chosen = {r["round"]: list(r["chosen_rows"]) for r in ledger.rounds(promotion)
                  if r.get("chosen_rows")}
        curves = [("this campaign", *learning_curve(ledger, promotion))]
        baseline_path = run_dir / BASELINE_DIR / "ledger.sqlite"
        if baseline_path.exists():
            baseline = Ledger(baseline_path)
            curves.append(("random selection", *learning_curve(baseline, promotion)))
            baseline.close()
        name = ledger.fact("name")
    finally:
        ledger.close()

    figure, (rama, curve) = plt.subplots(1, 2, figsize=(11, 4.8))
    rama.scatter(angles[:, 0], angles[:, 1], s=4, c="0.75", label=f"{source} candidates")
    colours = plt.cm.viridis(np.linspace(0, 1, max(len(chosen), 1)))
    for colour, (round_index, rows) in zip(colours, sorted(chosen.items()), strict=False):
        rows = [row for row in rows if row < len(angles)]
        rama.scatter(angles[rows, 0], angles[rows, 1], s=30, color=colour, edgecolors="k",
                     linewidths=0.5, label=f"round {round_index}")
    rama.set(xlim=(-180, 180), ylim=(-180, 180), xlabel="phi (degrees)", ylabel="psi (degrees)",
             title="CG candidates and the frames chosen for AA")
    rama.legend(fontsize=7, loc="upper right", ncol=2)
    for label, n, error in curves:
        if len(n):
            curve.plot(n, error, "o-" if label == "this campaign" else "s--", label=label)
    curve.set(xlabel="AA simulations (training points)", ylabel="surrogate RMSE vs reference",
              title="learning curve")
    if any(len(n) for _, n, _ in curves):
        curve.legend()
    figure.suptitle(f"campaign '{name}'")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


if __name__ == "__main__":  # pragma: no cover - thin command line
    run = Path(sys.argv[1])
    ramachandran_figure(run, sys.argv[2] if len(sys.argv) > 2 else run / "ramachandran.png")


def ramachandran_report(run_dir: str | Path) -> Path:
    """Report hook (``Campaign(reports=[ramachandran_report])``): writes
    ``<run_dir>/ramachandran.png`` for the default cg -> aa promotion."""
    return ramachandran_figure(run_dir, Path(run_dir) / "ramachandran.png")
