"""Müller-Brown two-scale benchmark: a cheap sampler, an expensive estimator, an exact answer.

The problem
-----------
The landscape is the Müller-Brown potential V(x, y), a 2-D sum of four Gaussian-like terms
``A_k exp(a_k dx^2 + b_k dx dy + c_k dy^2)`` with three minima (energies about -146.7,
-108.2 and -80.8) joined by two channels (saddles at about -40.7 and -72.2).

* COARSE scale, :func:`langevin`: overdamped Langevin dynamics (Euler-Maruyama, unit
  friction) on V at ``kT = 20``. A segment of 10,000 steps emits 100 frames; walkers started
  at the three minima cross the barriers within one or a few segments. The frames are the
  candidate configurations a campaign may promote.
* FINE scale, :func:`smeared_energy`: the thermally smeared energy
  ``F(x) = E[V(x + w xi)]``, ``xi ~ N(0, I_2)``, estimated by plain Monte Carlo with 2**19
  samples (standard error below 0.05 energy units in the basins at ``w = 0.1``). It is
  the "expensive" quantity a surrogate learns from a few evaluations.
* GROUND TRUTH, :func:`smeared_energy_exact`: every term of V is ``A exp(z^T M z)``, and the
  Gaussian expectation of that is closed form, so surrogate errors are measured against the
  exact F, not against another noisy estimate. :func:`reference` returns it on a grid over
  the thermally accessible region.

Cost, counted in potential evaluations: the coarse scale spends ``stride = 100`` gradient
evaluations per emitted frame, the fine scale ``n_samples = 524,288`` potential evaluations
per configuration, a ratio of about 5,200. In wall time (one core) a coarse segment of 100
frames takes ~13 ms and one fine evaluation ~20-35 ms, so one fine result costs as much as
about 200 coarse frames. That ratio is why the fine budget must be spent where the
surrogate is uncertain.

App contract (the engine wraps these functions as Parsl apps): ``app(x, *, seed, **params)``
returns a dict with key ``"x"`` of shape (n, d) float64 and named outputs of leading
dimension n. All functions are deterministic for a given seed and keep no state.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BOX",
    "DEFAULT_N_SAMPLES",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_WIDTH",
    "MINIMA",
    "initial_walkers",
    "langevin",
    "max_width",
    "muller_brown",
    "muller_brown_gradient",
    "positions",
    "reference",
    "smeared_energy",
    "smeared_energy_exact",
]

# Müller & Brown (1979), Theor. Chim. Acta 53, 75: V = sum_k A_k exp(a dx^2 + b dx dy + c dy^2).
_A = (-200.0, -100.0, -170.0, 15.0)
_a = (-1.0, -1.0, -6.5, 0.7)
_b = (0.0, 0.0, 11.0, 0.6)
_c = (-10.0, -10.0, -6.5, 0.7)
_X0 = (1.0, 0.0, -0.5, -1.0)
_Y0 = (0.0, 0.5, 1.5, 1.0)
_TERMS = tuple(zip(_A, _a, _b, _c, _X0, _Y0, strict=True))

MINIMA: np.ndarray = np.array([[-0.558224, 1.441726], [0.623499, 0.028038], [-0.050011, 0.466694]])
"""(3, 2) positions of the three Müller-Brown minima, deepest first (V = -146.70, -108.17,
-80.77)."""
MINIMA.setflags(write=False)

BOX: tuple[tuple[float, float], tuple[float, float]] = ((-1.5, 1.2), (-0.5, 2.0))
"""((x_min, x_max), (y_min, y_max)) of the reference grid."""

DEFAULT_WIDTH = 0.1
"""Smearing width w (length units of V) of the fine scale."""
DEFAULT_TEMPERATURE = 20.0
DEFAULT_N_SAMPLES = 2**19
_MAX_MC_WIDTH = 0.5  # = max_width() / sqrt(2): where E[V(x + w xi)^2] stops existing
# Samples per vectorized block: 128 KiB per (m, 2) array stays in cache; blocks of 2**15
# ran 3-5x slower on a busy 2-core machine (measured).
_CHUNK = 2**13


def _as_points(xy: np.ndarray, name: str = "xy") -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2); got {xy.shape}")
    return xy


def _as_point(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size != 2:
        raise ValueError(f"{name} must hold one 2-D point, shape (2,) or (1, 2); got {x.shape}")
    x = x.reshape(2)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite; got {x}")
    return x


def muller_brown(xy: np.ndarray) -> np.ndarray:
    """Müller-Brown potential energy.

    Args:
        xy: positions, shape (n, 2).

    Returns:
        Energies, shape (n,) float64 (energy units of the original paper).

    Raises:
        ValueError: if ``xy`` is not of shape (n, 2).
    """
    xy = _as_points(xy)
    x, y = xy[:, 0], xy[:, 1]
    energy = np.zeros(len(xy))
    for A, a, b, c, x0, y0 in _TERMS:
        dx, dy = x - x0, y - y0
        energy += A * np.exp(a * dx * dx + b * dx * dy + c * dy * dy)
    return energy


def muller_brown_gradient(xy: np.ndarray) -> np.ndarray:
    """Gradient of :func:`muller_brown`.

    Args:
        xy: positions, shape (n, 2).

    Returns:
        ``(dV/dx, dV/dy)``, shape (n, 2) float64.

    Raises:
        ValueError: if ``xy`` is not of shape (n, 2).
    """
    xy = _as_points(xy)
    x, y = xy[:, 0], xy[:, 1]
    grad = np.zeros((len(xy), 2))
    for A, a, b, c, x0, y0 in _TERMS:
        dx, dy = x - x0, y - y0
        e = A * np.exp(a * dx * dx + b * dx * dy + c * dy * dy)
        grad[:, 0] += e * (2.0 * a * dx + b * dy)
        grad[:, 1] += e * (b * dx + 2.0 * c * dy)
    return grad


def initial_walkers(n: int) -> np.ndarray:
    """Start points for ``n`` Langevin walkers, cycling over :data:`MINIMA`.

    Returns:
        Shape (n, 2) float64, row i equal to ``MINIMA[i % 3]``.

    Raises:
        ValueError: if ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    return MINIMA[np.arange(n) % len(MINIMA)].copy()


def langevin(
    x: np.ndarray,
    *,
    seed: int,
    n_steps: int = 10_000,
    stride: int = 100,
    temperature: float = DEFAULT_TEMPERATURE,
    dt: float = 1e-4,
) -> dict[str, np.ndarray]:
    """COARSE scale: one segment of overdamped Langevin dynamics on Müller-Brown.

    Euler-Maruyama with unit friction, ``x += -grad V(x) dt + sqrt(2 kT dt) xi``. No step is
    clipped or rejected: the default ``dt`` is 0.4 / (largest Hessian eigenvalue at the
    minima, ~4,100), well inside the Euler stability limit, and the confining fourth term
    keeps walkers near the box at ``kT = 20``. A non-finite position raises instead of being
    returned. Continue a walker by passing the last frame of one segment as ``x`` of the next.

    Args:
        x: start point, shape (2,) or (1, 2).
        seed: seed of the noise (``numpy.random.default_rng``); same seed, same frames.
        n_steps: integration steps; a positive multiple of ``stride``.
        stride: steps between emitted frames (gradient evaluations per frame).
        temperature: kT in the energy units of V.
        dt: time step.

    Returns:
        ``{"x": (n_steps // stride, 2) float64 frames, "energy": (n_steps // stride,) V at
        the frames}``. The start point is not a frame; the last frame is the end state.

    Raises:
        ValueError: bad shapes or parameters.
        FloatingPointError: if the integration diverges (only with a far too large ``dt``).
    """
    start = _as_point(x)
    if stride < 1 or n_steps < stride or n_steps % stride:
        raise ValueError(
            f"n_steps must be a positive multiple of stride >= 1; got n_steps={n_steps}, "
            f"stride={stride}"
        )
    if temperature < 0 or dt <= 0:
        raise ValueError(f"need temperature >= 0 and dt > 0; got {temperature}, {dt}")
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal((n_steps, 2)) * math.sqrt(2.0 * temperature * dt)).tolist()
    frames = _integrate(float(start[0]), float(start[1]), noise, stride, dt)
    if not np.isfinite(frames).all():
        raise FloatingPointError(f"Langevin integration diverged (dt={dt}); reduce dt")
    return {"x": frames, "energy": muller_brown(frames)}


def _integrate(x: float, y: float, noise: list[list[float]], stride: int, dt: float) -> np.ndarray:
    # Scalar Python floats: for one walker, numpy's per-call overhead on 2-element arrays is
    # ~5x slower than math.exp on floats.
    exp = math.exp
    terms = _TERMS
    frames = []
    for i, (nx, ny) in enumerate(noise, start=1):
        gx = gy = 0.0
        for A, a, b, c, x0, y0 in terms:
            dx, dy = x - x0, y - y0
            q = a * dx * dx + b * dx * dy + c * dy * dy
            e = A * exp(q) if q < 700.0 else math.inf  # math.exp raises on overflow
            gx += e * (2.0 * a * dx + b * dy)
            gy += e * (b * dx + 2.0 * c * dy)
        x += nx - gx * dt
        y += ny - gy * dt
        if i % stride == 0:
            frames.append((x, y))
            if not (math.isfinite(x) and math.isfinite(y)):
                break
    return np.array(frames, dtype=np.float64).reshape(-1, 2)


def smeared_energy(
    x: np.ndarray,
    *,
    seed: int,
    n_samples: int = DEFAULT_N_SAMPLES,
    width: float = DEFAULT_WIDTH,
) -> dict[str, np.ndarray]:
    """FINE scale: Monte Carlo estimate of the smeared energy ``E[V(x + width xi)]``.

    ``xi ~ N(0, I_2)``; the samples are drawn and evaluated in blocks of 8,192 so memory
    stays below 1 MB whatever ``n_samples`` is. The exact value is
    :func:`smeared_energy_exact`.

    Args:
        x: the configuration, shape (2,) or (1, 2).
        seed: seed of the samples; same seed, same estimate.
        n_samples: Monte Carlo samples (potential evaluations), >= 2.
        width: smearing width w, 0 <= w < 0.5 (length units of V). From 0.5 on, the
            variance of V(x + w xi) is infinite (the positive fourth term squared needs
            ``4 w^2 lambda_max(M) < 1``), so the estimate and its standard error would be
            meaningless; the mean itself exists up to :func:`max_width`.

    Returns:
        ``{"x": (1, 2) float64, "energy": (1,) estimate, "energy_stderr": (1,) its Monte
        Carlo standard error}``.

    Raises:
        ValueError: bad shapes or parameters, including ``width >= 0.5``.
    """
    center = _as_point(x)
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2; got {n_samples}")
    if not 0 <= width < _MAX_MC_WIDTH:
        raise ValueError(
            f"width must be in [0, {_MAX_MC_WIDTH}) for a finite Monte Carlo variance; got {width}"
        )
    rng = np.random.default_rng(seed)
    # Sums of V - V(x): shifting by a typical value keeps the variance sum from cancelling.
    shift = float(muller_brown(center[None])[0])
    total = total_sq = 0.0
    for start in range(0, n_samples, _CHUNK):
        m = min(_CHUNK, n_samples - start)
        deviations = muller_brown(center + width * rng.standard_normal((m, 2))) - shift
        total += float(deviations.sum())
        total_sq += float(deviations @ deviations)
    mean = total / n_samples
    variance = max(total_sq / n_samples - mean * mean, 0.0) * n_samples / (n_samples - 1)
    return {
        "x": center.reshape(1, 2).copy(),
        "energy": np.array([shift + mean]),
        "energy_stderr": np.array([math.sqrt(variance / n_samples)]),
    }


def max_width() -> float:
    """Largest smearing width (exclusive) for which ``E[V(x + w xi)]`` exists: 1/sqrt(2).

    The positive fourth term grows like ``exp(z^T M z)`` with ``M``'s largest eigenvalue 1;
    its Gaussian expectation is finite only while ``2 w^2 lambda_max(M) < 1``.
    """
    lam = max(float(np.linalg.eigvalsh(_term_matrix(a, b, c))[-1]) for _, a, b, c, _, _ in _TERMS)
    return math.inf if lam <= 0 else 1.0 / math.sqrt(2.0 * lam)


def _term_matrix(a: float, b: float, c: float) -> np.ndarray:
    return np.array([[a, b / 2.0], [b / 2.0, c]])


def smeared_energy_exact(xy: np.ndarray, width: float = DEFAULT_WIDTH) -> np.ndarray:
    """Exact smeared energy ``E[V(x + width xi)]``, ``xi ~ N(0, I_2)``.

    Each term is ``A exp(z^T M z)`` with ``z = x - center``; completing the square gives
    ``E[A exp((z + w xi)^T M (z + w xi))] = A det(P)^(-1/2) exp(z^T M P^(-1) z)`` with
    ``P = I - 2 w^2 M``, finite iff ``P`` is positive definite.

    Args:
        xy: positions, shape (n, 2).
        width: smearing width w >= 0; must be below :func:`max_width` (~0.7071).

    Returns:
        Shape (n,) float64; equals :func:`muller_brown` at ``width = 0``.

    Raises:
        ValueError: bad shape, negative width, or a width so large that the expectation of
            a term diverges (``I - 2 w^2 M`` not positive definite).
    """
    xy = _as_points(xy)
    if width < 0:
        raise ValueError(f"width must be >= 0; got {width}")
    out = np.zeros(len(xy))
    for k, (A, a, b, c, x0, y0) in enumerate(_TERMS):
        M = _term_matrix(a, b, c)
        P = np.eye(2) - 2.0 * width**2 * M
        if np.linalg.eigvalsh(P)[0] <= 0:
            raise ValueError(
                f"width={width} too large: the Gaussian expectation of Müller-Brown term {k} "
                f"diverges; need width < {max_width():.4f}"
            )
        Q = M @ np.linalg.inv(P)
        Q = (Q + Q.T) / 2.0  # M and P commute, so Q is symmetric up to round-off
        z = xy - (x0, y0)
        quad = np.einsum("ni,ij,nj->n", z, Q, z)
        out += A / math.sqrt(np.linalg.det(P)) * np.exp(quad)
    return out


def positions(x: np.ndarray) -> np.ndarray:
    """Featurizer: the 2-D positions of configurations.

    Args:
        x: configurations, shape (n, d) with d >= 2.

    Returns:
        A float64 copy of the first two columns, shape (n, 2).

    Raises:
        ValueError: if ``x`` is not 2-D with at least two columns.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"x must have shape (n, d) with d >= 2; got {x.shape}")
    return np.array(x[:, :2], dtype=np.float64, copy=True)


def reference(
    width: float = DEFAULT_WIDTH,
    resolution: int = 75,
    energy_cutoff: float = -20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth evaluation set: exact smeared energies over the accessible region.

    A regular ``resolution x resolution`` grid over :data:`BOX` (x in [-1.5, 1.2], y in
    [-0.5, 2.0]), keeping the points where the Müller-Brown energy is below
    ``energy_cutoff``. The default -20 lies above both saddles (-40.7 and -72.2), so the
    set covers the three basins and the two channels between them; about 98% of the
    frames of default Langevin walkers (kT = 20) fall below it. With the defaults m = 2,035.

    Args:
        width: smearing width of the exact energies.
        resolution: grid points per axis, >= 2.
        energy_cutoff: keep grid points with V < this (energy units of V).

    Returns:
        ``(X, F)``: X shape (m, 2) float64, grid order (x fastest, then y); F shape (m,)
        exact smeared energies at X.

    Raises:
        ValueError: resolution < 2, no grid point below the cutoff, or width too large.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2; got {resolution}")
    (x_lo, x_hi), (y_lo, y_hi) = BOX
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, resolution), np.linspace(y_lo, y_hi, resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    X = grid[muller_brown(grid) < energy_cutoff]
    if len(X) == 0:
        raise ValueError(f"no grid point has V < energy_cutoff={energy_cutoff}")
    return X, smeared_energy_exact(X, width)
