"""The AA scale of a CG -> AA bridge on deca-alanine: backmap a CG frame, then run AA MD.

One app, :func:`aa_from_cg`, run on a worker: the CG row (bead positions, Å) is
backmapped with the learned backmapper when its parameters are given and it is confident
(``apps.backmap.LearnedBackmapper``), else with the template method (rigid placement of
the helix template + restrained minimization, ``apps.backmap.Backmapper``); either way a
short restrained minimization follows. Then an unrestrained AA window runs
(``apps.peptide.aa_window``: amber14 + OBC2, 4 fs with hydrogen mass repartitioning). The
result carries the window's quantities (helicity, end-to-end distance, energy), the AA
frames and their mapped CG beads (the pairs the learned backmapper is retrained on, and
the force-matching data of the CG model), and how the backmapping went.

The learned backmapper is retrained between rounds by ``Scale(refresh_params=
apps.backmap.BackmapRefresh(...))`` on the campaign's own AA frames; the refreshed
parameters reach this app as ``backmapper=``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["aa_from_cg", "backmapper_from", "learned_backmapper"]


def learned_backmapper(**options: Any) -> Any:
    """An unfitted learned backmapper on the CA map with the helix PDB as its template
    (unfitted, its :meth:`~apps.backmap.LearnedBackmapper.backmap` is the template
    method: rigid placement of the helix + restrained minimization)."""
    from apps.backmap import LearnedBackmapper
    from apps.peptide import HELIX_PDB, ca_map

    return LearnedBackmapper(ca_map(), HELIX_PDB, **options)


_LOCAL = threading.local()


def backmapper_from(params: Mapping[str, Any] | None) -> Any:
    """The backmapper of ``params`` (None: unfitted), one per thread and parameter set:
    each holds an OpenMM context that takes about a second to build and that two threads
    must not share (a ``threads`` executor runs several tasks in one process)."""
    from apps.backmap import LearnedBackmapper

    if params is None:
        key = "template"
    else:
        digest = hashlib.sha1()
        for name in sorted(params):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(np.asarray(params[name])).tobytes()
                          if not isinstance(params[name], str) else params[name].encode())
        key = digest.hexdigest()
    if not hasattr(_LOCAL, "cache"):
        _LOCAL.cache = {}
    cache: dict[str, Any] = _LOCAL.cache
    if key not in cache:
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[key] = (learned_backmapper() if params is None
                      else LearnedBackmapper.from_params(params))
    return cache[key]


def aa_from_cg(
    x: np.ndarray,
    *,
    seed: int,
    backmapper: Mapping[str, Any] | None = None,
    n_steps: int = 250,
    equilibration: int = 50,
    stride: int = 25,
) -> dict[str, np.ndarray]:
    """AA app: backmap CG row ``x`` and run an AA window from it.

    Args:
        x: a CG row, (3B,) bead positions Å (or (6B,) with velocities after them).
        seed: of the AA window's velocities and random force.
        backmapper: ``LearnedBackmapper.to_params()`` (from ``BackmapRefresh``); None or
            an unfitted one: the template method.
        n_steps, equilibration, stride: of the AA window (4 fs steps).

    Returns:
        :func:`apps.peptide.aa_window`'s rows plus ``"backmap_learned"`` (1,) 1.0 if the
        learned model placed the atoms, ``"backmap_uncertainty"`` (1,) Å, the ensemble's
        spread (-1 while the model is unfitted) and ``"minimization_steps"`` (1,) of the
        restrained minimization.
    """
    from apps.peptide import aa_window, ca_map

    beads = ca_map()
    cg = np.asarray(x, dtype=np.float64).ravel()[: 3 * beads.n_beads].reshape(1, -1, 3)
    aa, infos = backmapper_from(backmapper).backmap(cg)
    info = infos[0]
    out = aa_window(aa.reshape(-1), seed=seed, n_steps=n_steps,
                    equilibration=equilibration, stride=stride)
    out["backmap_learned"] = np.array([1.0 if info["method"] == "learned" else 0.0])
    uncertainty = float(info["uncertainty"])  # inf while the model is unfitted
    out["backmap_uncertainty"] = np.array([uncertainty if np.isfinite(uncertainty) else -1.0])
    out["minimization_steps"] = np.array([float(info["minimization_steps"])])
    return out
