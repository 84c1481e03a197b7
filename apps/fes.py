"""Alanine dipeptide free-energy pieces shared by the FES example, its reference and its
benchmark: the backbone bead map, the backmapper and the AA umbrella window's settings.

The quantity learned is the free-energy gradient in (phi, psi) measured by a restrained
AA window (``apps.md.restrained_window``: ``mean_force`` at the window mean
``dihedrals``); :func:`gradient_observations` packs it in the column layout that
``learners.GradientGP`` reads.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from apps import md
from apps.backmap import Backmapper
from apps.mapping import ALANINE_BACKBONE, BeadMap, bead_map

__all__ = ["FES_WINDOW", "REFERENCE_PATH", "aligned_rmse", "alanine_backmapper", "alanine_beads",
           "cg_model_fes", "fes_window",
           "gradient_observations", "grid_centres", "load_reference", "phi_psi",
           "reference_grid"]

REFERENCE_PATH = Path(__file__).parent / "data" / "alanine_fes_reference.json"
"""The reference FES (made by ``python -m benchmarks.fes_reference``; provenance inside)."""


def grid_centres(n: int) -> np.ndarray:
    """(n,) window centres in radians: -pi + (i + 1/2) 2 pi / n."""
    return -np.pi + (np.arange(n) + 0.5) * 2 * np.pi / n


def load_reference(path: Path | str = REFERENCE_PATH) -> dict[str, Any]:
    """The reference record with arrays as numpy arrays (``fes`` (grid, grid) kJ/mol,
    ``centres`` (grid,), ``windows[key]`` (grid*grid, 2))."""
    record = json.loads(Path(path).read_text())
    for key in ("centres", "fes", "fes_uncertainty", "fes_fourier"):
        record[key] = np.asarray(record[key], dtype=np.float64)
    record["windows"] = {k: np.asarray(v, dtype=np.float64)
                         for k, v in record["windows"].items()}
    return record


def reference_grid(reference: dict[str, Any] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(points (g*g, 2) radians, F (g*g,) kJ/mol, region (g*g,) bool)`` of the reference:
    bin centres row-major in (phi, psi), and the bins with F <= the recorded region
    threshold (20 kJ/mol), where FES errors are measured."""
    reference = load_reference() if reference is None else reference
    centres = reference["centres"]
    points = np.array([(a, b) for a in centres for b in centres])
    fes = reference["fes"].ravel()
    return points, fes, fes <= reference["settings"]["region_kj"]


@functools.cache
def alanine_beads() -> BeadMap:
    """The 5-bead backbone map (C, N, CA, C, N) of alanine dipeptide."""
    import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention

    return bead_map(mda.Universe(md.ALANINE_DIPEPTIDE_PDB), ALANINE_BACKBONE)


def alanine_backmapper() -> Backmapper:
    """Template backmapping of the 5 beads onto the 22-atom structure."""
    return Backmapper(alanine_beads())


def _phi_psi_atoms() -> np.ndarray:
    atoms = [indices[0] for indices in alanine_beads().atom_indices]
    return np.array([atoms[0:4], atoms[1:5]])


FES_WINDOW: dict = {
    "dihedrals": _phi_psi_atoms(),  # AA atom indices of phi and psi
    "restraint_k": 200.0,  # kJ/(mol rad^2): <xi> within ~6 degrees of xi0 at a basin
    "n_steps": 2_000,  # 4 ps of 2 fs steps
    "stride": 25,
    "equilibration": 500,  # 1 ps after a restrained minimization
}
"""Default AA window of the FES campaign (``md.restrained_window`` keyword arguments)."""


def aligned_rmse(estimate: np.ndarray, reference: np.ndarray, region: np.ndarray) -> float:
    """RMSE of ``estimate - reference`` on ``region`` after removing its mean there (a
    free energy is known up to a constant)."""
    difference = (np.asarray(estimate) - np.asarray(reference))[region]
    return float(np.sqrt(np.mean((difference - difference.mean()) ** 2)))


def cg_model_fes(bead_positions: np.ndarray, bead_forces: np.ndarray, points: np.ndarray,
                 order: int = 4) -> np.ndarray:
    """The CG model's FES at ``points`` (radians, (q, 2)) after force matching its dihedral
    correction (Fourier order ``order``) to mapped AA frames.

    With bonds, angles and a correction in (phi, psi) only, the CG chain's FES in (phi,
    psi) is its correction up to a constant (the chain's Jacobian does not depend on the
    dihedrals), so it is evaluated, not sampled.

    Args:
        bead_positions, bead_forces: mapped frames, any shape reshapeable to (F, B, 3).
    """
    import warnings

    from apps import cg

    beads = alanine_beads()
    positions = np.asarray(bead_positions, np.float64).reshape(-1, beads.n_beads, 3)
    forces = np.asarray(bead_forces, np.float64).reshape(-1, beads.n_beads, 3)
    prior = cg.chain_force_field(beads.masses, positions[0], order=order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = cg.fit_force_matching(prior, positions, forces)
    values, _ = cg.correction_basis(points, order)
    return values @ fitted.weights


def phi_psi():
    """Features of CG rows: (phi, psi) in radians from the 5 backbone beads."""
    from apps.featurize import RowDihedrals

    return RowDihedrals([(0, 1, 2, 3), (1, 2, 3, 4)], encoding="angles")


def fes_window(x: np.ndarray, *, seed: int, **params: object) -> dict[str, np.ndarray]:
    """AA app of the FES campaign: ``md.restrained_window`` with :data:`FES_WINDOW`
    (overridden by ``params``), plus ``gradient_window`` (1, 6), the learned quantity
    (:func:`gradient_observations`)."""
    out = md.restrained_window(x, seed=seed, **{**FES_WINDOW, **params})
    out["gradient_window"] = gradient_observations(out)
    return out


def gradient_observations(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """(n, 6) rows ``[dF/dphi, dF/dpsi, stderr_phi, stderr_psi, phi, psi]`` from
    ``restrained_window`` outputs: the mean force, its standard error and where it was
    measured (the window mean), the layout of ``learners.GradientGP``."""
    return np.hstack([outputs["mean_force"], outputs["mean_force_stderr"],
                      outputs["dihedrals"]])
