"""Predictive distributions that acquisition functions consume (BoTorch's model/policy seam).

A :class:`Posterior` describes a learner's latent function at ``n`` query points, in the
original units of ``y``: marginal ``mean`` and ``variance``, the observation noise, joint
draws, and columns of the joint covariance. Acquisition functions use only this interface,
never the model, so learners and policies compose freely.

- :class:`SampledPosterior`: everything derived from an ``(n_members, n)`` array of draws
  (deep ensembles, MC dropout, bootstraps).
- :class:`GaussianProcessPosterior`: exact GP algebra in float64 from a Cholesky factor of
  the training covariance; covariance columns are computed on demand, never the ``n x n``
  matrix, and rows are processed in chunks so memory stays bounded.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

from learners.kernels import Kernel

__all__ = ["GaussianProcessPosterior", "Posterior", "SampledPosterior"]

logger = logging.getLogger(__name__)

#: Rows of candidates processed at once by :class:`GaussianProcessPosterior`.
DEFAULT_CHUNK_SIZE = 10_000
#: Largest whitened cross-covariance (bytes) a :class:`GaussianProcessPosterior` keeps to
#: make later ``covariance`` calls cheap; above it columns are recomputed from the kernel.
DEFAULT_CACHE_BYTES = 256 * 2**20
#: Largest ``n`` for which :meth:`GaussianProcessPosterior.sample` draws jointly.
DEFAULT_JOINT_SAMPLE_LIMIT = 2_000


class Posterior(ABC):
    """Predictive distribution of a learner's latent function at n points (original y units).

    Attributes:
        mean: (n,) float64 predictive mean of the latent function.
        variance: (n,) float64, >= 0, latent-function (epistemic) variance; it excludes
            the observation noise.
        noise_variance: observation noise variance in original y units (0.0 if the learner
            does not model noise). A new observation at point i has variance
            ``variance[i] + noise_variance``.

    Subclasses implement :meth:`sample` and :meth:`covariance`.
    """

    mean: np.ndarray
    variance: np.ndarray
    noise_variance: float

    def __init__(self, mean: np.ndarray, variance: np.ndarray, noise_variance: float = 0.0):
        """Validate and store the marginals.

        Raises:
            ValueError: ``mean`` not 1-D or non-finite; ``variance`` of another shape,
                non-finite or clearly negative; ``noise_variance`` negative or non-finite.
        """
        mean = np.asarray(mean, dtype=np.float64)
        variance = np.asarray(variance, dtype=np.float64)
        if mean.ndim != 1:
            raise ValueError(f"mean must be 1-D (n,), got shape {mean.shape}")
        if variance.shape != mean.shape:
            raise ValueError(
                f"variance must have the shape of mean {mean.shape}, got {variance.shape}"
            )
        if not np.all(np.isfinite(mean)):
            raise ValueError("mean contains non-finite values")
        if not np.all(np.isfinite(variance)):
            raise ValueError("variance contains non-finite values")
        scale = float(np.max(np.abs(variance), initial=0.0))
        if np.any(variance < -1e-8 * max(scale, 1.0)):
            raise ValueError(f"variance must be >= 0, got minimum {variance.min()}")
        noise_variance = float(noise_variance)
        if not (np.isfinite(noise_variance) and noise_variance >= 0.0):
            raise ValueError(f"noise_variance must be finite and >= 0, got {noise_variance}")
        self.mean = mean
        # Round-off can leave tiny negatives where the variance is ~0 (at training points).
        self.variance = np.maximum(variance, 0.0)
        self.noise_variance = noise_variance

    @property
    def n(self) -> int:
        """Number of points the posterior is over."""
        return int(self.mean.shape[0])

    def __len__(self) -> int:
        return self.n

    @abstractmethod
    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Draws of the latent function at the n points: (n_samples, n) float64.

        Raises:
            ValueError: ``n_samples`` < 1.
        """

    @abstractmethod
    def covariance(self, columns: np.ndarray) -> np.ndarray:
        """Posterior covariance between every point and the points at positions ``columns``.

        Args:
            columns: (c,) integer positions in ``[0, n)``; repeats allowed.

        Returns:
            (n, c) float64, ``out[i, j] = Cov(f(x_i), f(x_columns[j]))`` in y units squared;
            ``out[columns[j], j]`` equals ``variance[columns[j]]`` up to round-off.

        Raises:
            ValueError: ``columns`` not 1-D integers in range.
        """

    def _check_columns(self, columns: np.ndarray) -> np.ndarray:
        columns = np.asarray(columns)
        if columns.ndim != 1:
            raise ValueError(f"columns must be 1-D, got shape {columns.shape}")
        if columns.size == 0:
            return columns.astype(np.int64)
        if not np.issubdtype(columns.dtype, np.integer):
            raise ValueError(f"columns must be integer positions, got dtype {columns.dtype}")
        if columns.min() < 0 or columns.max() >= self.n:
            raise ValueError(
                f"columns must lie in [0, {self.n}), got range [{columns.min()}, {columns.max()}]"
            )
        return columns.astype(np.int64)

    @staticmethod
    def _check_n_samples(n_samples: int) -> int:
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        return int(n_samples)


class SampledPosterior(Posterior):
    """A posterior represented by equally weighted draws, e.g. the members of an ensemble.

    ``mean`` is the draws' average, ``variance`` and :meth:`covariance` their unbiased
    (ddof=1) sample (co)variance. :meth:`sample` returns stored draws chosen uniformly with
    replacement, so it never invents structure the members do not have.

    Args:
        draws: (n_members, n) float64, n_members >= 2, finite.
        noise_variance: observation noise variance in y units (0.0 if not modelled).

    Raises:
        ValueError: ``draws`` not 2-D, fewer than 2 members, or non-finite.
    """

    def __init__(self, draws: np.ndarray, noise_variance: float = 0.0):
        draws = np.asarray(draws, dtype=np.float64)
        if draws.ndim != 2:
            raise ValueError(f"draws must be 2-D (n_members, n), got shape {draws.shape}")
        if draws.shape[0] < 2:
            raise ValueError(f"draws needs at least 2 members, got {draws.shape[0]}")
        if not np.all(np.isfinite(draws)):
            raise ValueError("draws contains non-finite values")
        self.draws = draws
        super().__init__(draws.mean(axis=0), draws.var(axis=0, ddof=1), noise_variance)

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Stored draws picked uniformly with replacement: (n_samples, n) float64."""
        n_samples = self._check_n_samples(n_samples)
        return self.draws[rng.integers(0, self.draws.shape[0], size=n_samples)].copy()

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        """Sample covariance (ddof=1) of every point with ``columns``: (n, c) float64."""
        columns = self._check_columns(columns)
        centred = self.draws - self.mean
        return centred.T @ centred[:, columns] / (self.draws.shape[0] - 1)


class GaussianProcessPosterior(Posterior):
    """Exact posterior of a GP with a constant prior mean, computed in float64.

    All arguments except the y scaling are in the learner's standardized units:

    Args:
        points: (n, d) query points.
        train: (m, d) training inputs, m >= 1.
        kernel: the fitted prior covariance.
        cholesky: (m, m) lower Cholesky factor of ``kernel(train, train) + noise * I``.
        weights: (m,) ``(K + noise I)^-1 (y_train - prior_mean)``.
        prior_mean: constant prior mean.
        noise: observation noise variance.
        y_offset, y_scale: the map back to y units, ``y = y_offset + y_scale * f``.
        chunk_size: candidate rows processed at once (memory ~ ``chunk_size * m`` floats);
            None means :data:`DEFAULT_CHUNK_SIZE`.
        cache_bytes: keep the whitened cross-covariance ``L^-1 K(train, points)`` (m x n)
            when it fits in this many bytes, so :meth:`covariance` costs ``O(n m c)``;
            otherwise each call recomputes kernel rows in chunks (``O(n m (d + c))``);
            None means :data:`DEFAULT_CACHE_BYTES`.
        joint_sample_limit: largest n for which :meth:`sample` draws jointly; None means
            :data:`DEFAULT_JOINT_SAMPLE_LIMIT`.

    Raises:
        ValueError: inconsistent shapes.
    """

    def __init__(
        self,
        points: np.ndarray,
        train: np.ndarray,
        kernel: Kernel,
        cholesky: np.ndarray,
        weights: np.ndarray,
        prior_mean: float,
        noise: float,
        y_offset: float = 0.0,
        y_scale: float = 1.0,
        chunk_size: int | None = None,
        cache_bytes: int | None = None,
        joint_sample_limit: int | None = None,
    ):
        points = np.asarray(points, dtype=np.float64)
        train = np.asarray(train, dtype=np.float64)
        if points.ndim != 2 or train.ndim != 2 or points.shape[1] != train.shape[1]:
            raise ValueError(
                f"points (n, d) and train (m, d) must share d, got {points.shape}, {train.shape}"
            )
        m = train.shape[0]
        if m < 1:
            raise ValueError("train must hold at least one point")
        if cholesky.shape != (m, m) or weights.shape != (m,):
            raise ValueError(
                f"cholesky must be ({m}, {m}) and weights ({m},), "
                f"got {cholesky.shape}, {weights.shape}"
            )
        # None reads the module defaults at call time (tests and benchmarks may patch them).
        chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
        cache_bytes = DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes
        if joint_sample_limit is None:
            joint_sample_limit = DEFAULT_JOINT_SAMPLE_LIMIT
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.points = points
        self.train = train
        self.kernel = kernel
        self.cholesky = cholesky
        self.y_scale = float(y_scale)
        self.chunk_size = int(chunk_size)
        self.joint_sample_limit = int(joint_sample_limit)

        n = points.shape[0]
        keep = n * m * 8 <= cache_bytes
        whitened = np.empty((m, n)) if keep else None
        mean = np.empty(n)
        variance = np.empty(n)
        for start in range(0, n, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, n))
            cross = kernel(points[rows], train)  # (c, m)
            mean[rows] = prior_mean + cross @ weights
            V = solve_triangular(cholesky, cross.T, lower=True, check_finite=False)  # (m, c)
            variance[rows] = kernel.diag(points[rows]) - np.einsum("ij,ij->j", V, V)
            if whitened is not None:
                whitened[:, rows] = V
        self._whitened = whitened
        super().__init__(
            y_offset + self.y_scale * mean,
            self.y_scale**2 * np.maximum(variance, 0.0),
            self.y_scale**2 * float(noise),
        )

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        """Exact posterior covariance columns, (n, c) float64 in y units squared."""
        columns = self._check_columns(columns)
        chosen = self.points[columns]
        n = self.n
        out = np.empty((n, columns.size))
        if self._whitened is not None:
            W = self._whitened
            for start in range(0, n, self.chunk_size):
                rows = slice(start, min(start + self.chunk_size, n))
                out[rows] = self.kernel(self.points[rows], chosen) - W[:, rows].T @ W[:, columns]
        else:
            solved = cho_solve(
                (self.cholesky, True), self.kernel(self.train, chosen), check_finite=False
            )  # (m, c)
            for start in range(0, n, self.chunk_size):
                rows = slice(start, min(start + self.chunk_size, n))
                out[rows] = (
                    self.kernel(self.points[rows], chosen)
                    - self.kernel(self.points[rows], self.train) @ solved
                )
        out *= self.y_scale**2
        return out

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Draws of the latent function: (n_samples, n) float64.

        For ``n <= joint_sample_limit`` the draws are joint (from the full posterior
        covariance, with a small diagonal jitter if it is numerically singular). Above it,
        building the ``n x n`` covariance would not be memory-bounded, so the draws are
        independent per point from the marginals (``mean``, ``variance``): correct
        marginally, but without correlation between points.
        """
        n_samples = self._check_n_samples(n_samples)
        z = rng.standard_normal((n_samples, self.n))
        if self.n > self.joint_sample_limit:
            logger.debug("n=%d > joint_sample_limit: independent marginal draws", self.n)
            return self.mean + z * np.sqrt(self.variance)
        return self.mean + z @ _covariance_root(self.covariance(np.arange(self.n))).T


def _covariance_root(C: np.ndarray) -> np.ndarray:
    """A matrix R with ``R R^T ~= C`` for a PSD C, via jittered Cholesky, else eigh."""
    C = 0.5 * (C + C.T)
    scale = max(float(np.mean(np.diag(C))), 1e-300)
    for jitter in (0.0, 1e-12, 1e-10, 1e-8, 1e-6):
        try:
            return np.linalg.cholesky(C + jitter * scale * np.eye(len(C)))
        except np.linalg.LinAlgError:
            continue
    values, vectors = np.linalg.eigh(C)
    return vectors * np.sqrt(np.maximum(values, 0.0))
