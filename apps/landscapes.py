"""More multiscale benchmark problems: narrow rare channels in 2-D and 4-D, wells in 6-D.

Both are sums of anisotropic Gaussian wells on a harmonic confinement,

    V(x) = kappa |x|^2 / 2 + sum_k A_k exp(-(x - c_k)^T P_k (x - c_k) / 2),   A_k < 0,

so the thermally smeared energy has a closed form and surrogate errors are measured
against the exact answer, as in :mod:`apps.toy`.

* ``channel`` (2-D, :data:`CHANNEL`): two broad basins at (+-1.2, 0) and, above them, a
  deep but narrow trough (width 0.08 across, 0.9 along x) at y = 0.9. Langevin walkers at
  kT = 1.5 started in the basins visit the trough rarely (about 3% of frames over 12
  segments of 4 walkers, measured), while it is 4% of the reference grid's area: the rare
  channel that a single-length-scale surrogate struggles with. :func:`in_rare_region`
  marks it.
* ``channel4d`` (4-D, :data:`CHANNEL4D`): three broad basins and a deep trough that is
  narrow (0.08) in one direction, 0.35 in two and 0.9 along the fourth, at kT = 1.5.
  Walkers started in the basins spend about 2% of their frames in it (4 walkers x 12
  segments of 2,000 steps: 2.1%, measured): the rare, narrow feature in more than two
  dimensions.
* ``wells6d`` (6-D, :data:`WELLS6D`): four wells of different depth and shape at fixed
  pseudo-random centres (the "several metastable states" of a small molecule's dihedral
  space, without the molecule). At kT = 1 about half of the Langevin frames have
  V < -1, the cut-off of its reference set (the wells' interiors, where the walkers
  spend their time; the rest are thermal excursions up the walls).

Scales (the app contract of :mod:`apps.toy`: ``app(x, *, seed, **params) -> dict``):

* COARSE, :func:`sampler`: overdamped Langevin dynamics (Euler-Maruyama, unit friction)
  on V; a segment of ``n_steps`` steps emits ``n_steps // stride`` frames.
* FINE, :func:`smeared_energy`: Monte Carlo estimate of ``F(x) = E[V(x + w xi)]``,
  ``xi ~ N(0, I_d)``, with ``n_samples`` potential evaluations (real work: cost grows
  linearly with ``n_samples``; standard error ~ sd(V) / sqrt(n_samples)).
* EXACT, :func:`smeared_energy_exact`: per well,
  ``E[A exp(-(z + w xi)^T P (z + w xi) / 2)] = A det(I + w^2 P)^(-1/2)
  exp(-z^T (P^-1 + w^2 I)^-1 z / 2)``, plus ``kappa (|x|^2 + d w^2) / 2`` for the
  confinement.
* REFERENCE, :func:`reference`: exact F on a grid (2-D) or on a fixed uniform sample of
  the accessible region (6-D), where ``V < energy_cutoff``.
* FEATURIZER, :func:`coordinates`: the configuration's coordinates as features.

The problem is chosen by the ``landscape`` parameter (a name in :data:`LANDSCAPES`) of
every function, so one implementation serves every problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CHANNEL",
    "CHANNEL4D",
    "LANDSCAPES",
    "WELLS6D",
    "Landscape",
    "coordinates",
    "energy",
    "gradient",
    "in_rare_region",
    "initial_walkers",
    "reference",
    "sampler",
    "smeared_energy",
    "smeared_energy_exact",
]


@dataclass(frozen=True)
class Landscape:
    """A confined sum of Gaussian wells and the defaults of its two scales.

    Attributes:
        name: registry name.
        amplitudes: (K,) well depths A_k (< 0).
        centers: (K, d) well centres.
        precisions: (K, d, d) symmetric positive definite P_k.
        confinement: kappa of the harmonic term.
        starts: (s, d) walker start points (cycled by :func:`initial_walkers`).
        box: (d, 2) region of the reference set.
        temperature, dt, width: defaults of kT, the Langevin step and the smearing width.
        energy_cutoff: reference points have V below this.
        rare_well: index of the well whose interior is the rare region (or -1).
    """

    name: str
    amplitudes: np.ndarray
    centers: np.ndarray
    precisions: np.ndarray
    confinement: float
    starts: np.ndarray
    box: np.ndarray
    temperature: float
    dt: float
    width: float
    energy_cutoff: float
    rare_well: int = -1

    @property
    def dimension(self) -> int:
        """Number of coordinates d."""
        return int(self.centers.shape[1])


def _channel() -> Landscape:
    return Landscape(
        name="channel",
        amplitudes=np.array([-8.0, -8.0, -6.0]),
        centers=np.array([[-1.2, 0.0], [1.2, 0.0], [0.0, 0.9]]),
        precisions=np.array([np.eye(2) * 4.0, np.eye(2) * 4.0,
                             np.diag([1.0 / 0.9**2, 1.0 / 0.08**2])]),
        confinement=1.0,
        starts=np.array([[-1.2, 0.0], [1.2, 0.0]]),
        box=np.array([[-2.6, 2.6], [-1.6, 1.8]]),
        temperature=1.5,
        dt=5e-4,
        width=0.03,
        energy_cutoff=0.0,
        rare_well=2,
    )


def _wells6d() -> Landscape:
    rng = np.random.default_rng(6)
    d, k = 6, 4
    centers = rng.uniform(-1.5, 1.5, size=(k, d))
    precisions = []
    for _ in range(k):
        rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
        widths = rng.uniform(0.5, 1.2, size=d)
        precisions.append(rotation @ np.diag(1.0 / widths**2) @ rotation.T)
    return Landscape(
        name="wells6d",
        amplitudes=np.array([-9.0, -7.0, -6.0, -5.0]),
        centers=centers,
        precisions=np.array(precisions),
        confinement=0.5,
        starts=centers.copy(),
        box=np.tile([-3.0, 3.0], (d, 1)).astype(np.float64),
        temperature=1.0,
        dt=2e-3,
        width=0.2,
        energy_cutoff=-1.0,
    )


def _channel4d() -> Landscape:
    narrow, across = 0.08, 0.35
    return Landscape(
        name="channel4d",
        amplitudes=np.array([-8.0, -8.0, -8.0, -8.0]),
        centers=np.array([[-1.2, -0.5, 0.0, 0.0], [1.2, -0.5, 0.0, 0.0],
                          [0.0, -0.5, 1.2, 0.0], [0.0, 0.6, 0.0, 0.0]]),
        precisions=np.array([np.eye(4) * 4.0] * 3
                            + [np.diag([1.0 / 0.9**2, 1.0 / narrow**2, 1.0 / across**2,
                                        1.0 / across**2])]),
        confinement=1.0,
        starts=np.array([[-1.2, -0.5, 0.0, 0.0], [1.2, -0.5, 0.0, 0.0],
                         [0.0, -0.5, 1.2, 0.0]]),
        box=np.tile([-2.6, 2.6], (4, 1)).astype(np.float64),
        temperature=1.5,
        dt=4e-4,
        width=0.03,
        energy_cutoff=0.0,
        rare_well=3,
    )


CHANNEL = _channel()
"""The 2-D rare-channel landscape."""
WELLS6D = _wells6d()
"""The 6-D four-well landscape."""
CHANNEL4D = _channel4d()
"""The 4-D three-well landscape with a narrow rare channel."""
LANDSCAPES: dict[str, Landscape] = {CHANNEL.name: CHANNEL, WELLS6D.name: WELLS6D,
                                    CHANNEL4D.name: CHANNEL4D}
"""Landscapes by name (the ``landscape`` parameter of every function here)."""


def _landscape(landscape: str | Landscape) -> Landscape:
    if isinstance(landscape, Landscape):
        return landscape
    try:
        return LANDSCAPES[landscape]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown landscape {landscape!r}; known: {', '.join(sorted(LANDSCAPES))}"
        ) from None


def _points(x: np.ndarray, d: int, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}); got {x.shape}")
    return x


def _point(x: np.ndarray, d: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size != d or not np.all(np.isfinite(x)):
        raise ValueError(f"x must hold one finite {d}-D point, shape ({d},) or (1, {d}); "
                         f"got shape {x.shape}")
    return x.reshape(d)


def _terms(L: Landscape, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-well values (n, K) and P_k (x - c_k) (n, K, d)."""
    z = x[:, None, :] - L.centers[None]
    Pz = np.einsum("kij,nkj->nki", L.precisions, z)
    quad = np.einsum("nki,nki->nk", z, Pz)
    return L.amplitudes * np.exp(-0.5 * quad), Pz


def energy(x: np.ndarray, landscape: str | Landscape = "channel") -> np.ndarray:
    """Potential V at points x: (n, d) -> (n,) float64.

    Raises:
        ValueError: unknown landscape or x not (n, d).
    """
    L = _landscape(landscape)
    x = _points(x, L.dimension)
    wells, _ = _terms(L, x)
    return 0.5 * L.confinement * np.einsum("ni,ni->n", x, x) + wells.sum(axis=1)


def gradient(x: np.ndarray, landscape: str | Landscape = "channel") -> np.ndarray:
    """Gradient of :func:`energy`: (n, d) -> (n, d) float64."""
    L = _landscape(landscape)
    x = _points(x, L.dimension)
    wells, Pz = _terms(L, x)
    return L.confinement * x - np.einsum("nk,nki->ni", wells, Pz)


def initial_walkers(n: int, landscape: str | Landscape = "channel") -> np.ndarray:
    """(n, d) start points cycling over the landscape's ``starts``.

    Raises:
        ValueError: n negative or unknown landscape.
    """
    L = _landscape(landscape)
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    return L.starts[np.arange(n) % len(L.starts)].copy()


def sampler(
    x: np.ndarray,
    *,
    seed: int,
    landscape: str = "channel",
    n_steps: int = 2000,
    stride: int = 20,
    temperature: float | None = None,
    dt: float | None = None,
) -> dict[str, np.ndarray]:
    """COARSE scale: one segment of overdamped Langevin dynamics on the landscape.

    ``x += -grad V(x) dt + sqrt(2 kT dt) xi``. The default ``dt`` of each landscape is
    below 0.5 / (largest curvature of a well), inside the Euler stability limit.

    Args:
        x: start point, (d,) or (1, d).
        seed: noise seed; same seed, same frames.
        landscape: a name in :data:`LANDSCAPES`.
        n_steps: steps, a positive multiple of ``stride``.
        stride: steps between emitted frames.
        temperature, dt: kT and time step (None: the landscape's defaults).

    Returns:
        ``{"x": (n_steps // stride, d) frames, "energy": (n_steps // stride,) V there}``.

    Raises:
        ValueError: bad shapes or parameters.
        FloatingPointError: the integration diverged (a far too large ``dt``).
    """
    L = _landscape(landscape)
    position = _point(x, L.dimension)
    if stride < 1 or n_steps < stride or n_steps % stride:
        raise ValueError(f"n_steps must be a positive multiple of stride >= 1; got "
                         f"n_steps={n_steps}, stride={stride}")
    kT = L.temperature if temperature is None else float(temperature)
    step = L.dt if dt is None else float(dt)
    if kT < 0 or step <= 0:
        raise ValueError(f"need temperature >= 0 and dt > 0; got {kT}, {step}")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n_steps, L.dimension)) * math.sqrt(2.0 * kT * step)
    frames = np.empty((n_steps // stride, L.dimension))
    current = position[None].copy()
    for i in range(n_steps):
        current = current - step * gradient(current, L) + noise[i]
        if (i + 1) % stride == 0:
            frames[(i + 1) // stride - 1] = current[0]
    if not np.all(np.isfinite(frames)):
        raise FloatingPointError(f"Langevin integration diverged (dt={step}); reduce dt")
    return {"x": frames, "energy": energy(frames, L)}


def smeared_energy(
    x: np.ndarray,
    *,
    seed: int,
    landscape: str = "channel",
    n_samples: int = 2**16,
    width: float | None = None,
) -> dict[str, np.ndarray]:
    """FINE scale: Monte Carlo estimate of ``E[V(x + width xi)]`` from ``n_samples`` draws.

    Args:
        x: the configuration, (d,) or (1, d).
        seed: sample seed; same seed, same estimate.
        landscape: a name in :data:`LANDSCAPES`.
        n_samples: potential evaluations, >= 2 (drawn in blocks of 8,192).
        width: smearing width (None: the landscape's default), >= 0.

    Returns:
        ``{"x": (1, d), "energy": (1,) estimate, "energy_stderr": (1,) its standard error}``.

    Raises:
        ValueError: bad shapes or parameters.
    """
    L = _landscape(landscape)
    center = _point(x, L.dimension)
    w = L.width if width is None else float(width)
    if n_samples < 2 or w < 0:
        raise ValueError(f"need n_samples >= 2 and width >= 0; got {n_samples}, {w}")
    rng = np.random.default_rng(seed)
    shift = float(energy(center[None], L)[0])
    total = total_sq = 0.0
    for start in range(0, n_samples, 8192):
        m = min(8192, n_samples - start)
        deviations = energy(center + w * rng.standard_normal((m, L.dimension)), L) - shift
        total += float(deviations.sum())
        total_sq += float(deviations @ deviations)
    mean = total / n_samples
    variance = max(total_sq / n_samples - mean * mean, 0.0) * n_samples / (n_samples - 1)
    return {"x": center[None].copy(), "energy": np.array([shift + mean]),
            "energy_stderr": np.array([math.sqrt(variance / n_samples)])}


def smeared_energy_exact(
    x: np.ndarray, landscape: str | Landscape = "channel", width: float | None = None
) -> np.ndarray:
    """Exact ``E[V(x + width xi)]`` (closed form, see the module docstring): (n,) float64.

    Raises:
        ValueError: unknown landscape, x not (n, d), or negative width.
    """
    L = _landscape(landscape)
    x = _points(x, L.dimension)
    w = L.width if width is None else float(width)
    if w < 0:
        raise ValueError(f"width must be >= 0; got {w}")
    d = L.dimension
    out = 0.5 * L.confinement * (np.einsum("ni,ni->n", x, x) + d * w * w)
    for A, c, P in zip(L.amplitudes, L.centers, L.precisions, strict=True):
        smoothed = np.linalg.inv(np.linalg.inv(P) + w * w * np.eye(d))
        z = x - c
        factor = 1.0 / math.sqrt(np.linalg.det(np.eye(d) + w * w * P))
        out += A * factor * np.exp(-0.5 * np.einsum("ni,ij,nj->n", z, smoothed, z))
    return out


def in_rare_region(x: np.ndarray, landscape: str | Landscape = "channel",
                   depth: float = 0.5) -> np.ndarray:
    """(n,) bool: inside the rare well (its term below ``depth`` times its amplitude).

    For ``channel`` this is the narrow trough; landscapes without a rare well give all
    False.
    """
    L = _landscape(landscape)
    x = _points(x, L.dimension)
    if L.rare_well < 0:
        return np.zeros(len(x), dtype=bool)
    wells, _ = _terms(L, x)
    return wells[:, L.rare_well] < depth * L.amplitudes[L.rare_well]


def coordinates(x: np.ndarray) -> np.ndarray:
    """Featurizer: the configurations' coordinates, a float64 copy of x (n, d).

    Raises:
        ValueError: x not 2-D.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d); got {x.shape}")
    return np.array(x, dtype=np.float64, copy=True)


def reference(
    landscape: str | Landscape = "channel", resolution: int = 75, n_points: int = 3000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth: exact smeared energies over the accessible region (V < cutoff).

    2-D: a ``resolution x resolution`` grid over the landscape's box. Higher dimensions:
    ``n_points`` uniform points of the box kept by rejection (fixed ``seed``), since a
    grid would not fit.

    Returns:
        ``(X, F)``: X (m, d) float64 and the exact smeared energies F (m,).

    Raises:
        ValueError: resolution < 2 or n_points < 1.
    """
    L = _landscape(landscape)
    if resolution < 2 or n_points < 1:
        raise ValueError(f"need resolution >= 2 and n_points >= 1; got {resolution}, "
                         f"{n_points}")
    if L.dimension == 2:
        axes = [np.linspace(lo, hi, resolution) for lo, hi in L.box]
        grid = np.stack(np.meshgrid(*axes), -1).reshape(-1, 2)
        X = grid[energy(grid, L) < L.energy_cutoff]
    else:
        rng = np.random.default_rng(seed)
        kept: list[np.ndarray] = []
        count = 0
        while count < n_points:
            draws = rng.uniform(L.box[:, 0], L.box[:, 1], size=(200_000, L.dimension))
            draws = draws[energy(draws, L) < L.energy_cutoff]
            kept.append(draws)
            count += len(draws)
        X = np.concatenate(kept)[:n_points]
    return X, smeared_energy_exact(X, L)
