"""Ramachandran and free-energy reports of a CG -> AA campaign run.

``ramachandran_figure(run_dir, path)`` draws (left) the (phi, psi) of every CG candidate in
the store with the configurations each round chose for AA simulation, coloured by round,
and (right) the surrogate's learning curve against the random-selection baseline when the
run has one (``<run>/baseline-random``, written by ``campaign report``/``campaign run``).

``latent_figure(run_dir, path)`` draws the CG pool of a latent-space campaign
(``examples/peptide_latent.py``) in the autoencoder's latent space, the AA-simulated frames
coloured by the round that chose them and by the AA quantity they gave.

Command line: ``python -m apps.molecular_report RUN_DIR [PATH]`` (default
``RUN_DIR/ramachandran.png``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apps.featurize import RowDihedrals

__all__ = ["chosen_by_round", "fes_figure", "fes_report", "latent_figure", "latent_report",
           "ramachandran_figure", "ramachandran_report"]


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


def ramachandran_report(run_dir: str | Path) -> Path:
    """Report hook (``Campaign(reports=[ramachandran_report])``): writes
    ``<run_dir>/ramachandran.png`` for the default cg -> aa promotion."""
    return ramachandran_figure(run_dir, Path(run_dir) / "ramachandran.png")


def fes_figure(run_dir: str | Path, path: str | Path, *, source: str = "cg",
               target: str = "aa", cg_order: int = 4) -> Path:
    """Write the free-energy report of an FES campaign (``examples/alanine_fes.py``).

    Four panels: the newest model's FES (kJ/mol, lowest grid bin 0) with the windows
    chosen per round on top; its standard deviation (of F relative to its average over
    the torus); its error against the reference FES (constant aligned on the reference's
    low-free-energy region, outlined); and the learning curve, reference RMSE against AA
    windows, beside the CG model's own FES error when its dihedral correction (order
    ``cg_order``) is force-matched to the bead forces of the windows committed so far.
    The reference is ``apps/data/alanine_fes_reference.json``. A run whose model is not
    a ``learners.GradientGP`` on (phi, psi) angles is refused (ValueError).

    Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from apps.fes import aligned_rmse, cg_model_fes, load_reference, reference_grid
    from campaign.report import open_run
    from campaign.resume import saved_models
    from learners import GradientGP

    run_dir = Path(run_dir)
    promotion = f"{source}-to-{target}"
    reference = load_reference()
    points, fes_ref, region = reference_grid(reference)
    n = len(reference["centres"])
    degrees = np.degrees(reference["centres"])
    ledger, store = open_run(run_dir)
    try:
        models = saved_models(store, promotion)
        if not models:
            raise ValueError(f"run {run_dir} has no saved model of {promotion} yet")
        learner = GradientGP().load_state_dict(store.load_model(promotion, models[-1]))
        rounds = {r["round"]: list(r["chosen_rows"]) for r in ledger.rounds(promotion)
                  if r.get("chosen_rows")}
        curve = [(r["n_train"], r["reference_rmse"]) for r in ledger.rounds(promotion)
                 if r.get("reference_rmse") is not None and r.get("n_train")]
        aa = store.read(target)
        pool = store.read(source)
        centres = np.degrees(np.asarray(aa.y["restraint_centre"]).reshape(len(aa), -1)) \
            if len(aa) else np.zeros((0, 2))
        aa_round = np.asarray(aa.meta["round"]) if len(aa) else np.zeros(0, int)
        cg_curve = []
        if len(aa) and "bead_forces" in aa.y:
            positions = np.asarray(aa.y["bead_positions"])
            forces = np.asarray(aa.y["bead_forces"])
            for count in sorted({*range(4, len(aa) + 1, 4), len(aa)}):
                fes_cg = cg_model_fes(positions[:count], forces[:count], points, cg_order)
                cg_curve.append((count, aligned_rmse(fes_cg, fes_ref, region)))
        name = ledger.fact("name")
    finally:
        ledger.close()
    if learner.n_features_in_ != 2:
        raise ValueError("the FES report needs a GradientGP on (phi, psi)")
    posterior = learner.posterior(points)
    fes = posterior.mean - posterior.mean.min()
    sd = np.sqrt(posterior.variance)
    difference = posterior.mean - fes_ref
    difference = difference - difference[region].mean()

    figure, axes = plt.subplots(2, 2, figsize=(11, 9))
    extent = (-180, 180, -180, 180)

    def show(axis: Any, values: np.ndarray, title: str, cmap: str, **kwargs: Any) -> None:
        image = axis.imshow(values.reshape(n, n).T, origin="lower", extent=extent, cmap=cmap,
                            aspect="equal", **kwargs)
        axis.contour(degrees, degrees, region.reshape(n, n).T, levels=[0.5], colors="k",
                     linewidths=0.8)
        figure.colorbar(image, ax=axis, shrink=0.85)
        axis.set(xlabel="phi (degrees)", ylabel="psi (degrees)", title=title)

    show(axes[0, 0], np.minimum(fes, 40.0), "learned FES (kJ/mol) and chosen windows",
         "viridis")
    if len(pool):
        angles = np.degrees(RowDihedrals(((0, 1, 2, 3), (1, 2, 3, 4))).angles(pool.x))
        axes[0, 0].scatter(angles[:, 0], angles[:, 1], s=2, c="0.85", alpha=0.5)
    colours = plt.cm.autumn(np.linspace(0, 1, max(len(set(aa_round.tolist())), 1)))
    for colour, round_index in zip(colours, sorted(set(aa_round.tolist())), strict=False):
        picked = centres[aa_round == round_index]
        axes[0, 0].scatter(picked[:, 0], picked[:, 1], s=22, color=colour, edgecolors="k",
                           linewidths=0.4, label=f"round {round_index}")
    if len(rounds) <= 12 and len(aa):
        axes[0, 0].legend(fontsize=6, loc="upper right", ncol=2)
    show(axes[0, 1], sd, "posterior sd of F (kJ/mol)", "magma")
    limit = max(float(np.abs(difference[region]).max()), 1.0)
    show(axes[1, 0], difference, "learned - reference (kJ/mol, aligned on the outlined "
         "region)", "coolwarm", vmin=-limit, vmax=limit)
    curve_axis = axes[1, 1]
    if curve:
        curve_axis.plot(*zip(*curve, strict=True), "o-", label="learned FES (GradientGP)")
    if cg_curve:
        curve_axis.plot(*zip(*cg_curve, strict=True), "s--",
                        label="CG model's FES (force matched)")
    curve_axis.axhline(4.184, color="0.5", lw=0.8, ls=":", label="1 kcal/mol")
    curve_axis.set(xlabel="AA windows", ylabel="FES RMSE vs reference (kJ/mol)",
                   title="error on the region F_ref <= "
                         f"{reference['settings']['region_kj']:.0f} kJ/mol")
    curve_axis.set_yscale("log")
    curve_axis.legend(fontsize=8)
    figure.suptitle(f"campaign '{name}': free-energy surface from umbrella windows")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def fes_report(run_dir: str | Path) -> Path:
    """Report hook (``Campaign(reports=[fes_report])``): writes ``<run_dir>/fes.png``."""
    return fes_figure(run_dir, Path(run_dir) / "fes.png")


def latent_figure(run_dir: str | Path, path: str | Path, *, source: str = "cg",
                  target: str = "aa", quantity: str = "helicity",
                  features: Any = None) -> Path:
    """Write the latent-space report of a campaign whose features are learned.

    The latent space is that of ``features`` (default ``apps.latent.LatentFeatures`` for
    the source rows' bead count, seed 0) refitted on the whole final CG pool, so every
    frame, early or late, is drawn in one space (the engine's last refit saw the pool as
    it was then). Left: the pool (grey) and the AA-simulated frames coloured by the round
    that chose them; right: the same frames coloured by the AA ``quantity``; both on the
    first two latent coordinates.

    Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from apps.latent import LatentFeatures
    from campaign.report import open_run

    ledger, store = open_run(run_dir)
    try:
        pool = store.read(source)
        aa = store.read(target)
        name = ledger.fact("name")
    finally:
        ledger.close()
    if len(pool) == 0:
        raise ValueError(f"run {run_dir} has no {source} rows yet")
    x = np.asarray(pool.x, dtype=np.float64)
    if features is None:
        n_beads = x.shape[1] // 6 if x.shape[1] % 6 == 0 else x.shape[1] // 3
        features = LatentFeatures(n_beads)
    latent = features.refit(x)(x)
    parents = np.asarray(aa.meta["parent_row"], np.int64) if len(aa) else np.zeros(0, int)
    rounds = np.asarray(aa.meta["round"], np.int64) if len(aa) else np.zeros(0, int)
    values = np.asarray(aa.y[quantity], np.float64).reshape(len(aa), -1)[:, 0] \
        if len(aa) else np.zeros(0)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    for axis, colour, label in ((axes[0], rounds, "round chosen"),
                                (axes[1], values, f"AA {quantity}")):
        axis.scatter(latent[:, 0], latent[:, 1], s=3, c="0.8", label=f"{source} pool")
        if len(parents):
            points = axis.scatter(latent[parents, 0], latent[parents, 1], c=colour, s=28,
                                  cmap="viridis", edgecolors="k", linewidths=0.4,
                                  label=f"simulated in {target}")
            figure.colorbar(points, ax=axis, label=label)
        axis.set_xlabel("latent 1")
        axis.set_ylabel("latent 2")
        axis.legend(loc="best", fontsize=8)
    axes[0].set_title(f"{name}: {len(x)} {source} frames, {len(parents)} {target} runs")
    axes[1].set_title(f"{target} {quantity} of the simulated frames")
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def latent_report(run_dir: str | Path) -> Path:
    """Report hook (``Campaign(reports=[latent_report])``): writes ``<run_dir>/latent.png``."""
    return latent_figure(run_dir, Path(run_dir) / "latent.png")


if __name__ == "__main__":  # pragma: no cover - thin command line
    run = Path(sys.argv[1])
    ramachandran_figure(run, sys.argv[2] if len(sys.argv) > 2 else run / "ramachandran.png")
