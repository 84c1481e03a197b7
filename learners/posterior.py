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

>>> import numpy as np
>>> ensemble = SampledPosterior(np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 4.0]]))
>>> ensemble.mean, ensemble.variance  # per query point, over the members
(array([1., 1., 3.]), array([2., 0., 2.]))
>>> ensemble.sample(4, np.random.default_rng(0)).shape
(4, 3)
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np
from scipy.linalg import solve_triangular

from learners.cholesky import GrowingCholesky
from learners.kernels import Kernel

__all__ = [
    "GaussianProcessPosterior",
    "IndependentPosterior",
    "Posterior",
    "SampledPosterior",
    "SparseGaussianProcessPosterior",
]

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
        X: (n, d) float64 inputs (features) the posterior is over, in the learner's input
            units, or None when unknown. Feature-space policies (farthest point, local
            outlier) need it; every learner in this package sets it.
        X_train: (m, d) float64 inputs the learner was conditioned on, or None when unknown.

    Subclasses implement :meth:`sample` and :meth:`covariance`.
    """

    noise_variance: float
    X: np.ndarray | None
    X_train: np.ndarray | None

    def __init__(
        self,
        mean: np.ndarray | None,
        variance: np.ndarray | None,
        noise_variance: float = 0.0,
        X: np.ndarray | None = None,
        X_train: np.ndarray | None = None,
        n: int | None = None,
    ):
        """Validate and store the marginals and, optionally, the inputs.

        A subclass may pass ``mean=None, variance=None`` and the number of points ``n``
        to compute the marginals lazily: :meth:`_marginals` is then called on first access
        of ``mean`` or ``variance`` (large pools whose policy needs only part of them).

        Raises:
            ValueError: ``mean`` not 1-D or non-finite; ``variance`` of another shape,
                non-finite or clearly negative; ``noise_variance`` negative or non-finite;
                ``X`` not (n, d); ``X_train`` not 2-D with the columns of ``X``.
        """
        noise_variance = float(noise_variance)
        if not (np.isfinite(noise_variance) and noise_variance >= 0.0):
            raise ValueError(f"noise_variance must be finite and >= 0, got {noise_variance}")
        self._mean: np.ndarray | None = None
        self._variance: np.ndarray | None = None
        if mean is None and variance is None:
            if n is None or int(n) != n or n < 0:
                raise ValueError(f"lazy marginals need the number of points n, got {n!r}")
            self._n = int(n)
        else:
            self._store_marginals(mean, variance)
            self._n = int(self._mean.shape[0])
        if X is not None:
            X = np.asarray(X, dtype=np.float64)
            if X.ndim != 2 or X.shape[0] != self._n:
                raise ValueError(f"X must be ({self._n}, d), got shape {X.shape}")
        if X_train is not None:
            X_train = np.asarray(X_train, dtype=np.float64)
            if X_train.ndim != 2 or (X is not None and X_train.shape[1] != X.shape[1]):
                raise ValueError(f"X_train must be (m, d) like X, got shape {X_train.shape}")
        self.X = X
        self.X_train = X_train
        self.noise_variance = noise_variance

    def _store_marginals(self, mean: np.ndarray | None, variance: np.ndarray | None) -> None:
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
        self._mean = mean
        # Round-off can leave tiny negatives where the variance is ~0 (at training points).
        self._variance = np.maximum(variance, 0.0)

    def _marginals(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, variance) of a lazily constructed posterior; subclasses that pass
        ``mean=None`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no lazy marginals")

    @property
    def mean(self) -> np.ndarray:
        """(n,) float64 predictive mean of the latent function (y units)."""
        if self._mean is None:
            self._store_marginals(*self._marginals())
        return self._mean  # type: ignore[return-value]

    @property
    def variance(self) -> np.ndarray:
        """(n,) float64 latent-function variance, >= 0 (y units squared, no noise)."""
        if self._variance is None:
            self._store_marginals(*self._marginals())
        return self._variance  # type: ignore[return-value]

    @property
    def n(self) -> int:
        """Number of points the posterior is over."""
        return self._n

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


class IndependentPosterior(Posterior):
    """Marginals only: the points are treated as independent (diagonal covariance), e.g.
    a regressor's predictive std, or predicted observations scored one by one."""

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """(n_samples, n) independent normal draws from the marginals."""
        n_samples = self._check_n_samples(n_samples)
        return self.mean + rng.standard_normal((n_samples, self.n)) * np.sqrt(self.variance)

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        """(n, c) diagonal covariance columns."""
        columns = self._check_columns(columns)
        out = np.zeros((self.n, columns.size))
        out[columns, np.arange(columns.size)] = self.variance[columns]
        return out


class SampledPosterior(Posterior):
    """A posterior represented by equally weighted draws, e.g. the members of an ensemble.

    ``mean`` is the draws' average, ``variance`` and :meth:`covariance` their unbiased
    (ddof=1) sample (co)variance. :meth:`sample` returns stored draws chosen uniformly with
    replacement, so it never invents structure the members do not have.

    Args:
        draws: (n_members, n) float64, n_members >= 2, finite.
        noise_variance: observation noise variance in y units (0.0 if not modelled).
        X, X_train: the inputs, as in :class:`Posterior`.
        gaussian: how :meth:`sample` draws (see there); moments are the same either way.

    Raises:
        ValueError: ``draws`` not 2-D, fewer than 2 members, or non-finite.
    """

    def __init__(
        self,
        draws: np.ndarray,
        noise_variance: float = 0.0,
        X: np.ndarray | None = None,
        X_train: np.ndarray | None = None,
        gaussian: bool = False,
    ):
        draws = np.asarray(draws, dtype=np.float64)
        if draws.ndim != 2:
            raise ValueError(f"draws must be 2-D (n_members, n), got shape {draws.shape}")
        if draws.shape[0] < 2:
            raise ValueError(f"draws needs at least 2 members, got {draws.shape[0]}")
        if not np.all(np.isfinite(draws)):
            raise ValueError("draws contains non-finite values")
        self.draws = draws
        self.gaussian = bool(gaussian)
        super().__init__(
            draws.mean(axis=0), draws.var(axis=0, ddof=1), noise_variance, X=X, X_train=X_train
        )

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """(n_samples, n) float64 draws.

        With ``gaussian=False`` (default): stored draws picked uniformly with replacement.
        With ``gaussian=True``: draws of the Gaussian with the members' mean and sample
        covariance, ``mean + z @ (draws - mean) / sqrt(n_members - 1)``, ``z`` standard
        normal, so sample moments match ``mean`` and ``variance`` even for a few members.
        """
        n_samples = self._check_n_samples(n_samples)
        if self.gaussian:
            members = self.draws.shape[0]
            z = rng.standard_normal((n_samples, members))
            return self.mean + z @ (self.draws - self.mean) / np.sqrt(members - 1)
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
        cholesky: (m, m) lower Cholesky factor of ``kernel(train, train) + noise * I``,
            an array or a :class:`~learners.cholesky.GrowingCholesky` (a conditioned GP).
        weights: (m,) ``(K + noise I)^-1 (y_train - prior_mean)``, or None when
            ``whitened_targets`` is given.
        whitened_targets: (m,) ``L^-1 (y_train - prior_mean)``; with it the mean is
            computed from the whitened cross-covariance (no back substitution).
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
        X, X_train: the query and training inputs in the learner's (unstandardized) units,
            stored as :attr:`Posterior.X` / :attr:`Posterior.X_train`.

    Raises:
        ValueError: inconsistent shapes.
    """

    def __init__(
        self,
        points: np.ndarray,
        train: np.ndarray,
        kernel: Kernel,
        cholesky: np.ndarray | GrowingCholesky,
        weights: np.ndarray | None,
        prior_mean: float,
        noise: float,
        y_offset: float = 0.0,
        y_scale: float = 1.0,
        chunk_size: int | None = None,
        cache_bytes: int | None = None,
        joint_sample_limit: int | None = None,
        X: np.ndarray | None = None,
        X_train: np.ndarray | None = None,
        whitened_targets: np.ndarray | None = None,
    ):
        factor = cholesky if isinstance(cholesky, GrowingCholesky) else GrowingCholesky(cholesky)
        if weights is None and whitened_targets is None:
            raise ValueError("give weights or whitened_targets")
        points = np.asarray(points, dtype=np.float64)
        train = np.asarray(train, dtype=np.float64)
        if points.ndim != 2 or train.ndim != 2 or points.shape[1] != train.shape[1]:
            raise ValueError(
                f"points (n, d) and train (m, d) must share d, got {points.shape}, {train.shape}"
            )
        m = train.shape[0]
        if m < 1:
            raise ValueError("train must hold at least one point")
        for name, vector in (("weights", weights), ("whitened_targets", whitened_targets)):
            if vector is not None and np.shape(vector) != (m,):
                raise ValueError(f"{name} must be ({m},), got {np.shape(vector)}")
        if factor.shape != (m, m):
            raise ValueError(f"cholesky must be ({m}, {m}), got {factor.shape}")
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
        self.factor = factor
        self.weights = weights
        self.whitened_targets = whitened_targets
        self.prior_mean = float(prior_mean)
        self.noise = float(noise)
        self.y_offset = float(y_offset)
        self.y_scale = float(y_scale)
        self.chunk_size = int(chunk_size)
        self.cache_bytes = int(cache_bytes)
        self.joint_sample_limit = int(joint_sample_limit)
        self._whitened: np.ndarray | None = None
        # Marginals are computed on first use: a policy may need only a subset of a huge pool.
        super().__init__(None, None, self.y_scale**2 * self.noise, X=X, X_train=X_train,
                         n=points.shape[0])

    @property
    def cholesky(self) -> np.ndarray:
        """(m, m) lower Cholesky factor of the training covariance (assembled when the
        posterior was conditioned by row blocks)."""
        return self.factor.dense()

    def _marginals(self) -> tuple[np.ndarray, np.ndarray]:
        points, train, kernel = self.points, self.train, self.kernel
        n, m = points.shape[0], train.shape[0]
        keep = n * m * 8 <= self.cache_bytes
        whitened = np.empty((m, n)) if keep else None
        mean = np.empty(n)
        variance = np.empty(n)
        for start in range(0, n, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, n))
            cross = kernel(points[rows], train)  # (c, m)
            V = self.factor.solve_lower(cross.T)
            if self.weights is not None:
                mean[rows] = self.prior_mean + cross @ self.weights
            else:
                mean[rows] = self.prior_mean + V.T @ self.whitened_targets
            variance[rows] = kernel.diag(points[rows]) - np.einsum("ij,ij->j", V, V)
            if whitened is not None:
                whitened[:, rows] = V
        self._whitened = whitened
        return (self.y_offset + self.y_scale * mean,
                self.y_scale**2 * np.maximum(variance, 0.0))

    def subset(self, rows: np.ndarray) -> GaussianProcessPosterior:
        """The same posterior over ``points[rows]`` only (shares the training factor;
        caches ``r x m`` floats of whitened cross-covariance, whatever ``cache_bytes``).

        Args:
            rows: (r,) integer positions in ``[0, n)``.
        """
        rows = self._check_columns(rows)
        # The subset keeps its whitened cross-covariance (r x m) so covariance columns cost
        # O(r m): a caller asking for a subset has bounded r by choice.
        cache = max(self.cache_bytes, rows.size * len(self.train) * 8)
        return GaussianProcessPosterior(
            self.points[rows], self.train, self.kernel, self.factor, self.weights,
            self.prior_mean, self.noise, self.y_offset, self.y_scale, self.chunk_size,
            cache, self.joint_sample_limit,
            X=None if self.X is None else self.X[rows], X_train=self.X_train,
            whitened_targets=self.whitened_targets)

    def variance_upper_bound(
        self,
        rows: np.ndarray | None = None,
        given: np.ndarray | None = None,
        eps: float = 1.0,
        chunk_size: int = 100_000,
        base: np.ndarray | None = None,
    ) -> np.ndarray:
        """Cheap upper bounds of the (conditioned) variance, y units squared.

        Conditioning on fewer observations never lowers a Gaussian posterior variance, so
        the variance given only one observed point t,
        ``k(x, x) - k(x, t)^2 / (k(t, t) + noise)``, bounds the exact one from above. For
        the training data t is an approximate nearest training point in length-scale
        units (a k-d tree query with relative tolerance ``eps``; any training point gives
        a valid bound, the nearest the tightest). Cost ``O(r log m)``.

        Args:
            rows: positions to bound (None: all n points).
            given: positions of points fantasized in this order (observed with the noise
                variance), e.g. pending then chosen points.
            base: (r,) bounds given the training data from an earlier call (y units
                squared), to skip the nearest-neighbour search.

        Returns:
            (r,) bounds of the variance given the training data when ``given`` is None;
            else (r, g + 1) whose column j also conditions on the first j ``given``
            points (each bound the tighter of the training and the fantasy bound).
        """
        from scipy.spatial import cKDTree

        rows = np.arange(self.n) if rows is None else self._check_columns(rows)
        tree = cKDTree(self.train / self.kernel.lengthscale) if base is None else None
        prior = self.kernel.outputscale
        gathered = None if given is None else self.points[self._check_columns(given)]
        columns = 1 if gathered is None else len(gathered) + 1
        out = np.empty((rows.size, columns))
        for start in range(0, rows.size, chunk_size):
            block = rows[start:start + chunk_size]
            points = self.points[block]
            if base is None:
                _, nearest = tree.query(points / self.kernel.lengthscale, k=1, eps=eps)
                cross = self.kernel.pair(points, self.train[nearest])
                out[start:start + len(block), 0] = prior - cross**2 / (prior + self.noise)
            else:
                out[start:start + len(block), 0] = base[start:start + len(block)] / self.y_scale**2
            if gathered is not None and len(gathered):
                reduction = np.maximum.accumulate(self.kernel(points, gathered) ** 2, axis=1)
                out[start:start + len(block), 1:] = np.minimum(
                    out[start:start + len(block), :1], prior - reduction / (prior + self.noise))
        out = self.y_scale**2 * np.maximum(out, 0.0)
        return out[:, 0] if gathered is None else out

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        """Exact posterior covariance columns, (n, c) float64 in y units squared."""
        columns = self._check_columns(columns)
        chosen = self.points[columns]
        n = self.n
        out = np.empty((n, columns.size))
        if self._whitened is None and self._mean is None and n * len(self.train) * 8 <= (
                self.cache_bytes):
            self._store_marginals(*self._marginals())  # builds the whitened cache
        if self._whitened is not None:
            W = self._whitened
            for start in range(0, n, self.chunk_size):
                rows = slice(start, min(start + self.chunk_size, n))
                out[rows] = self.kernel(self.points[rows], chosen) - W[:, rows].T @ W[:, columns]
        else:
            solved = self.factor.cho_solve(self.kernel(self.train, chosen))  # (m, c)
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


class SparseGaussianProcessPosterior(Posterior):
    """Posterior of a GP summarized by m inducing points (SGPR / DTC form), in float64.

    With ``L L^T = K_zz`` and ``L_B L_B^T = B = I + Phi Phi^T / noise``
    (``Phi = L^-1 K_z,train``), a point x has ``phi_x = L^-1 k_z(x)`` and
    ``psi_x = L_B^-1 phi_x``, and

        mean(x) = prior_mean + psi_x . coef
        Cov(a, b) = k(a, b) - phi_a . phi_b + psi_a . psi_b

    Memory and time are ``O(n m)`` for the marginals (rows in chunks) and ``O(n m c)`` for
    ``c`` covariance columns: nothing is quadratic in n or in the training size.

    Args:
        points: (n, d) query points in the learner's standardized units.
        inducing: (m, d) inducing inputs (same units).
        kernel: the prior covariance.
        cholesky: (m, m) lower factor ``L`` of ``K_zz`` (+ jitter).
        cholesky_b: (m, m) lower factor ``L_B`` of ``B``.
        coef: (m,) ``L_B^-1 Phi (y - prior_mean) / noise``.
        prior_mean, noise, y_offset, y_scale: as in :class:`GaussianProcessPosterior`.
        chunk_size: rows processed at once.
        X, X_train: the inputs, as in :class:`Posterior`.
    """

    def __init__(
        self,
        points: np.ndarray,
        inducing: np.ndarray,
        kernel: Kernel,
        cholesky: np.ndarray,
        cholesky_b: np.ndarray,
        coef: np.ndarray,
        prior_mean: float,
        noise: float,
        y_offset: float = 0.0,
        y_scale: float = 1.0,
        chunk_size: int | None = None,
        X: np.ndarray | None = None,
        X_train: np.ndarray | None = None,
    ):
        points = np.asarray(points, dtype=np.float64)
        m = inducing.shape[0]
        if points.ndim != 2 or points.shape[1] != inducing.shape[1]:
            raise ValueError(f"points must be (n, {inducing.shape[1]}), got {points.shape}")
        if cholesky.shape != (m, m) or cholesky_b.shape != (m, m) or coef.shape != (m,):
            raise ValueError("cholesky, cholesky_b must be (m, m) and coef (m,)")
        self.points, self.inducing, self.kernel = points, inducing, kernel
        self.cholesky, self.cholesky_b = cholesky, cholesky_b
        self.y_scale = float(y_scale)
        self.chunk_size = int(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size)
        n = len(points)
        mean = np.empty(n)
        variance = np.empty(n)
        for start in range(0, n, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, n))
            phi, psi = self._project(points[rows])
            mean[rows] = prior_mean + psi.T @ coef
            variance[rows] = (kernel.diag(points[rows]) - np.einsum("ij,ij->j", phi, phi)
                              + np.einsum("ij,ij->j", psi, psi))
        super().__init__(
            y_offset + self.y_scale * mean,
            self.y_scale**2 * np.maximum(variance, 0.0),
            self.y_scale**2 * float(noise),
            X=X,
            X_train=X_train,
        )

    def _project(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        phi = solve_triangular(self.cholesky, self.kernel(self.inducing, A), lower=True,
                               check_finite=False)
        psi = solve_triangular(self.cholesky_b, phi, lower=True, check_finite=False)
        return phi, psi

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        """Posterior covariance columns, (n, c) float64 in y units squared."""
        columns = self._check_columns(columns)
        chosen = self.points[columns]
        phi_c, psi_c = self._project(chosen)
        out = np.empty((self.n, columns.size))
        for start in range(0, self.n, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, self.n))
            phi, psi = self._project(self.points[rows])
            out[rows] = self.kernel(self.points[rows], chosen) - phi.T @ phi_c + psi.T @ psi_c
        out *= self.y_scale**2
        return out

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Joint draws up to :data:`DEFAULT_JOINT_SAMPLE_LIMIT` points, else marginal ones
        (as :meth:`GaussianProcessPosterior.sample`)."""
        n_samples = self._check_n_samples(n_samples)
        z = rng.standard_normal((n_samples, self.n))
        if self.n > DEFAULT_JOINT_SAMPLE_LIMIT:
            return self.mean + z * np.sqrt(self.variance)
        return self.mean + z @ _covariance_root(self.covariance(np.arange(self.n))).T
