"""Reference free-energy surface of alanine dipeptide in (phi, psi), with provenance.

A uniform ``GRID x GRID`` grid of AA umbrella windows (amber14 + OBC2 implicit solvent,
300 K, phi and psi restrained harmonically at the grid point, ``apps.md.restrained_window``
from the template with phi and psi set) is reconstructed by **MBAR** (``pymbar``, a
maintained package that does not use this project's learners) into a histogram FES on
the bins centred at the window centres. As a cross-check the same windows' mean forces
are integrated by least squares (a periodic Fourier series fitted to the gradients at
the windows' mean positions, :func:`fourier_fes`); the two reconstructions are compared
on the low-free-energy region. Published implicit-solvent basins are compared in
:data:`BASINS` (positions from the literature; see ``docs/fes.md``).

Every window also records the statistics of its first ``SHORT_STEPS`` steps, so a uniform
grid at the campaign's window length (the classical baseline of ``benchmarks.fes``) is
available from the same runs.

Usage (MBAR needs ``pymbar``: ``pip install -e .[reference]``)::

    python -m benchmarks.fes_reference [--processes 2] [--cache DIR] [--out PATH]

Cost: ``GRID**2`` windows of ``N_STEPS + EQUILIBRATION`` steps (about 5.5 s each on one
core). Results per window are cached in ``--cache`` so an interrupted run resumes.
The output JSON (default :data:`REFERENCE_PATH`, ``apps/data/alanine_fes_reference.json``)
holds the settings, the command, the
package versions, the per-window statistics and both reconstructions;
``tests/test_fes.py`` checks that the file matches the settings recorded here.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from apps.fes import REFERENCE_PATH, grid_centres, load_reference

__all__ = ["BASINS", "REFERENCE_PATH", "SETTINGS", "basin_table", "fourier_fes",
           "grid_centres", "load_reference"]

SETTINGS: dict[str, Any] = {
    "grid": 24,  # windows per angle; centres at -pi + (i + 1/2) 2 pi / grid
    "restraint_k": 200.0,  # kJ/(mol rad^2), on phi and psi
    "n_steps": 5_000,  # 10 ps of 2 fs steps per window, after equilibration
    "equilibration": 500,  # 1 ps, restrained, after a restrained minimization
    "stride": 25,  # frames every 50 fs
    "short_steps": 2_000,  # the first 4 ps: the campaign's window length
    "temperature": 300.0,
    "timestep": 2.0,
    "friction": 1.0,
    "solvent": "obc2",
    "forcefield": ["amber14-all.xml"],
    "seed_base": 50_000,  # window i (row-major over phi, psi) has seed seed_base + 7 i
    "mbar_every": 1,  # MBAR uses every frame (50 fs apart)
    "fourier_order": 8,  # of the least-squares cross-check
    "region_kj": 20.0,  # the low-free-energy region compared: F - min <= this
}

KT_300 = 0.0083144626 * 300.0  # kJ/mol

#: Alanine dipeptide basins (phi, psi in degrees): a search box for each basin's lowest
#: bin on a surface, and the usual position of the basin in the literature (e.g. the
#: Ramachandran regions of Vymetal and Vondrasek, JPCA 2010; Chodera et al., JCP 2006).
#: A basin whose lowest bin lies on its box's edge is not a local minimum there
#: (``"local_minimum": False`` in :func:`basin_table`).
BASINS: dict[str, dict[str, Any]] = {
    "alpha_R": {"box": [[-120, -30], [-90, 15]], "literature": [-70, -40]},
    "PPII": {"box": [[-105, -45], [105, 180]], "literature": [-75, 145]},
    "C5": {"box": [[-180, -105], [105, 180]], "literature": [-155, 160]},
    "C7eq": {"box": [[-120, -45], [30, 105]], "literature": [-83, 73]},
    "alpha_L": {"box": [[30, 105], [-30, 90]], "literature": [60, 40]},
}


def _window(task: tuple[int, float, float]) -> dict[str, Any]:
    """One reference window (runs in a worker process)."""
    import torch

    torch.set_num_threads(1)
    from apps import md
    from apps.fes import FES_WINDOW, alanine_backmapper

    index, phi, psi = task
    started = time.time()
    s = SETTINGS
    backmapper = alanine_backmapper()
    aa = backmapper.template_at([phi, psi])
    out = md.restrained_window(
        aa.ravel(), seed=s["seed_base"] + 7 * index, dihedrals=FES_WINDOW["dihedrals"],
        restraint_k=s["restraint_k"], n_steps=s["n_steps"], stride=s["stride"],
        equilibration=s["equilibration"], temperature=s["temperature"],
        timestep=s["timestep"], friction=s["friction"], solvent=s["solvent"],
        forcefield=tuple(s["forcefield"]))
    series = out["dihedral_series"][0]
    centre = out["restraint_centre"][0]
    short = series[: s["short_steps"] // s["stride"]]
    force_short, stderr_short, where_short = md.umbrella_mean_force(short, centre,
                                                                    s["restraint_k"])
    return {"index": index, "centre": centre, "location": out["dihedrals"][0],
            "mean_force": out["mean_force"][0], "stderr": out["mean_force_stderr"][0],
            "short_location": where_short, "short_mean_force": force_short,
            "short_stderr": stderr_short, "series": series[:: s["mbar_every"]],
            "seconds": time.time() - started}


def run_windows(processes: int, cache: Path) -> list[dict[str, Any]]:
    """Every window, from the cache where present (one .npz per window)."""
    cache.mkdir(parents=True, exist_ok=True)
    centres = grid_centres(SETTINGS["grid"])
    tasks = [(i, float(phi), float(psi))
             for i, (phi, psi) in enumerate((a, b) for a in centres for b in centres)]
    missing = [t for t in tasks if not (cache / f"window_{t[0]:04d}.npz").exists()]
    started = time.time()
    if missing:
        print(f"fes_reference: {len(missing)} of {len(tasks)} windows to run on "
              f"{processes} processes", flush=True)
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            for done, result in enumerate(pool.imap_unordered(_window, missing), 1):
                np.savez(cache / f"window_{result['index']:04d}.npz",
                         **{k: np.asarray(v) for k, v in result.items()})
                if done % 24 == 0 or done == len(missing):
                    elapsed = time.time() - started
                    print(f"  {done}/{len(missing)} windows, {elapsed:.0f} s, "
                          f"about {elapsed / done * (len(missing) - done):.0f} s left",
                          flush=True)
    windows = []
    for index, _, _ in tasks:
        with np.load(cache / f"window_{index:04d}.npz") as data:
            windows.append({k: data[k] for k in data.files})
    return windows


def mbar_fes(windows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """MBAR (pymbar) histogram FES on the grid bins: (grid, grid) kJ/mol and uncertainty.

    Bins are centred at the window centres (edges half-way between), periodic in both
    angles; F is relative to its lowest bin."""
    import pymbar

    s = SETTINGS
    n = s["grid"]
    beta = 1.0 / (0.0083144626 * s["temperature"])
    centres = np.array([w["centre"] for w in windows])  # (K, 2)
    samples = np.concatenate([w["series"] for w in windows])  # (N, 2)
    counts = np.array([len(w["series"]) for w in windows])
    u_kn = np.empty((len(windows), len(samples)))
    for k, centre in enumerate(centres):
        deviation = (samples - centre + np.pi) % (2 * np.pi) - np.pi
        u_kn[k] = beta * 0.5 * s["restraint_k"] * np.sum(deviation**2, axis=1)
    edges = -np.pi + np.arange(n + 1) * 2 * np.pi / n
    wrapped = (samples + np.pi) % (2 * np.pi) - np.pi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fes = pymbar.FES(u_kn, counts, mbar_options={"solver_protocol": "robust"})
        fes.generate_fes(np.zeros(len(samples)), wrapped, fes_type="histogram",
                         histogram_parameters={"bin_edges": [edges, edges]})
        centres_1d = grid_centres(n)
        points = np.array([(a, b) for a in centres_1d for b in centres_1d])
        result = fes.get_fes(points, reference_point="from-lowest",
                             uncertainty_method="analytical")
    f = np.asarray(result["f_i"], dtype=np.float64) / beta
    df = np.asarray(result["df_i"], dtype=np.float64) / beta
    f = f - np.nanmin(f)
    return f.reshape(n, n), df.reshape(n, n)


def fourier_fes(locations: np.ndarray, gradients: np.ndarray, order: int,
                points: np.ndarray, weights: np.ndarray | None = None,
                ridge: float = 1e-6) -> np.ndarray:
    """Least-squares integration of free-energy gradients with a periodic Fourier series.

    F(phi, psi) = sum over (a, b) != (0, 0) with |a|, |b| <= ``order`` of
    ``c cos(a phi + b psi) + s sin(a phi + b psi)``; its gradient is fitted to ``gradients``
    at ``locations`` (weighted least squares, a small ridge), then F is evaluated at
    ``points`` and shifted so its minimum there is 0.

    Args:
        locations: (m, 2) radians. gradients: (m, 2) kJ/(mol rad).
        order: highest frequency per angle. points: (q, 2) radians.
        weights: (m, 2) inverse variances of the gradient components, or None.

    Returns:
        (q,) kJ/mol.
    """
    freqs = np.array([(a, b) for a in range(-order, order + 1) for b in range(0, order + 1)
                      if b > 0 or a > 0])  # one of each +/- pair
    phase = locations @ freqs.T  # (m, p)
    cos, sin = np.cos(phase), np.sin(phase)
    # d/dx_j of c cos(w.x) + s sin(w.x) = -c w_j sin + s w_j cos
    rows = [np.hstack([-sin * freqs[:, j], cos * freqs[:, j]]) for j in range(2)]
    A = np.vstack(rows)
    g = np.concatenate([gradients[:, 0], gradients[:, 1]])
    w = np.ones_like(g) if weights is None else np.concatenate([weights[:, 0], weights[:, 1]])
    sqrt_w = np.sqrt(w / w.mean())
    A_w = A * sqrt_w[:, None]
    coef = np.linalg.solve(A_w.T @ A_w + ridge * len(g) * np.eye(A.shape[1]), A_w.T @ (g * sqrt_w))
    phase_q = points @ freqs.T
    values = np.hstack([np.cos(phase_q), np.sin(phase_q)]) @ coef
    return values - values.min()


def basin_table(fes: np.ndarray) -> dict[str, dict[str, float]]:
    """Minimum of each :data:`BASINS` box on a (grid, grid) FES: position (degrees) and F."""
    n = fes.shape[0]
    degrees = np.degrees(grid_centres(n))
    out = {}
    for name, basin in BASINS.items():
        (p0, p1), (s0, s1) = basin["box"]
        phi_in = (degrees >= p0) & (degrees <= p1)
        psi_in = (degrees >= s0) & (degrees <= s1)
        sub = np.where(phi_in[:, None] & psi_in[None, :], fes, np.inf)
        i, j = np.unravel_index(np.argmin(sub), sub.shape)
        inside_i, inside_j = np.flatnonzero(phi_in), np.flatnonzero(psi_in)
        edge = i in (inside_i[0], inside_i[-1]) or j in (inside_j[0], inside_j[-1])
        out[name] = {"phi": float(degrees[i]), "psi": float(degrees[j]), "F": float(fes[i, j]),
                     "local_minimum": bool(not edge)}
    lowest = min(b["F"] for b in out.values() if b["local_minimum"]) if any(
        b["local_minimum"] for b in out.values()) else min(b["F"] for b in out.values())
    for basin in out.values():
        basin["F"] -= lowest
    return out


def build(processes: int, cache: Path) -> dict[str, Any]:
    """Run (or read) every window and reconstruct; returns the reference record."""
    import openmm
    import pymbar

    windows = run_windows(processes, cache)
    timed = [float(w["seconds"]) for w in windows if "seconds" in w]
    n = SETTINGS["grid"]
    centres_1d = grid_centres(n)
    points = np.array([(a, b) for a in centres_1d for b in centres_1d])
    fes, fes_sd = mbar_fes(windows)
    locations = np.array([w["location"] for w in windows])
    forces = np.array([w["mean_force"] for w in windows])
    stderr = np.array([w["stderr"] for w in windows])
    ls = fourier_fes(locations, forces, SETTINGS["fourier_order"], points,
                     weights=1.0 / np.maximum(stderr, 1e-3) ** 2).reshape(n, n)
    region = fes <= SETTINGS["region_kj"]
    difference = (ls - fes)[region]
    difference -= difference.mean()
    record = {
        "description": "alanine dipeptide FES in (phi, psi), amber14 + OBC2, 300 K, "
                       "MBAR over a uniform grid of umbrella windows",
        "command": "python -m benchmarks.fes_reference",
        "settings": SETTINGS,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "openmm": openmm.__version__, "pymbar": pymbar.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Per-window seconds are known for windows run since timing was added to the cache.
        "window_seconds_total": float(sum(timed)), "windows_timed": len(timed),
        "centres": centres_1d.tolist(),
        "fes": np.round(fes, 4).tolist(),
        "fes_uncertainty": np.round(fes_sd, 4).tolist(),
        "fes_fourier": np.round(ls, 4).tolist(),
        "mbar_vs_fourier_rmse_region": float(np.sqrt(np.mean(difference**2))),
        "region_fraction": float(region.mean()),
        "basins": basin_table(fes),
        "basins_fourier": basin_table(ls),
        "basins_literature": {name: basin["literature"] for name, basin in BASINS.items()},
        "windows": {
            key: np.round(np.array([w[key] for w in windows]), 6).tolist()
            for key in ("centre", "location", "mean_force", "stderr", "short_location",
                        "short_mean_force", "short_stderr")
        },
    }
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("runs/fes_reference_cache"))
    parser.add_argument("--out", type=Path, default=REFERENCE_PATH)
    args = parser.parse_args(argv)
    record = build(args.processes, args.cache)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}: MBAR vs least-squares RMSE "
          f"{record['mbar_vs_fourier_rmse_region']:.2f} kJ/mol on the region F <= "
          f"{SETTINGS['region_kj']:.0f} kJ/mol ({record['region_fraction']:.0%} of the grid)")
    for name, basin in record["basins"].items():
        print(f"  {name:8s} phi {basin['phi']:7.1f} psi {basin['psi']:7.1f} "
              f"F {basin['F']:5.2f} kJ/mol"
              + ("" if basin["local_minimum"] else "  (not a local minimum: box edge)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
