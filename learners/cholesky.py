"""A lower Cholesky factor that grows by row blocks: conditioning a GP on k new points.

Appending k observations to a GP with fixed hyperparameters extends the Cholesky factor
of ``K + noise I`` by k rows::

    L_new = [[L,   0],      B = L^-1 K(old, new)          (n x k, O(n^2 k))
             [B^T, C]]      C = chol(K(new, new) + noise I - B^T B)   (k x k)

:class:`GrowingCholesky` keeps the n x n base factor and the appended blocks
``(B^T, C)`` separately, so the update costs the one triangular solve and never copies
the ``O(n^2)`` base (a copy of a 5,000 x 5,000 factor alone takes longer than the solve).
Triangular solves run block by block. The blocks are merged into one dense factor when
they hold more than a quarter of the rows (or 64 blocks), which keeps the merge cost
amortized. Objects are never modified after construction: ``extend`` returns a new one
that shares the old arrays.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> A = rng.standard_normal((6, 6)); K = A @ A.T + 6 * np.eye(6)
>>> factor = GrowingCholesky(np.linalg.cholesky(K[:4, :4])).extend(K[:4, 4:], K[4:, 4:])
>>> bool(np.allclose(factor.dense(), np.linalg.cholesky(K)))
True
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.linalg import solve_triangular

__all__ = ["GrowingCholesky"]

logger = logging.getLogger(__name__)

#: Appended blocks are merged into one dense factor beyond this many blocks ...
MAX_BLOCKS = 64
#: ... or when the appended rows exceed this fraction of the base rows (and 256 rows).
MERGE_FRACTION = 0.25


class GrowingCholesky:
    """Lower Cholesky factor of an SPD matrix, stored as a base factor plus row blocks.

    Args:
        base: (n, n) lower-triangular factor, n >= 1.
        blocks: appended row blocks ``(left, diagonal)``: ``left`` (k, rows so far) and
            ``diagonal`` (k, k) lower triangular, in order.
    """

    def __init__(self, base: np.ndarray,
                 blocks: tuple[tuple[np.ndarray, np.ndarray], ...] = ()) -> None:
        base = np.asarray(base, dtype=np.float64)
        if base.ndim != 2 or base.shape[0] != base.shape[1] or base.shape[0] < 1:
            raise ValueError(f"base must be a square (n, n) factor, got {base.shape}")
        self.base = base
        self.blocks = tuple(blocks)
        size = base.shape[0]
        for left, diagonal in self.blocks:
            k = diagonal.shape[0]
            if left.shape != (k, size) or diagonal.shape != (k, k):
                raise ValueError("each block must be (left (k, rows so far), diagonal (k, k))")
            size += k
        self.size = size
        #: The block the last :meth:`extend` appended (kept through a merge), else None.
        self.last_block: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(N, N), N the rows of the whole factor."""
        return (self.size, self.size)

    def dense(self) -> np.ndarray:
        """The whole (N, N) lower factor as one array (a copy when there are blocks)."""
        if not self.blocks:
            return self.base
        out = np.zeros((self.size, self.size))
        n = self.base.shape[0]
        out[:n, :n] = self.base
        for left, diagonal in self.blocks:
            k = diagonal.shape[0]
            out[n:n + k, :n] = left
            out[n:n + k, n:n + k] = diagonal
            n += k
        return out

    def solve_lower(self, R: np.ndarray) -> np.ndarray:
        """``L^-1 R`` for R (N,) or (N, c): forward substitution, block by block."""
        R = np.asarray(R, dtype=np.float64)
        if R.shape[0] != self.size:
            raise ValueError(f"R must have {self.size} rows, got {R.shape}")
        n = self.base.shape[0]
        out = np.empty_like(R)
        out[:n] = solve_triangular(self.base, R[:n], lower=True, check_finite=False)
        for left, diagonal in self.blocks:
            k = diagonal.shape[0]
            out[n:n + k] = solve_triangular(diagonal, R[n:n + k] - left @ out[:n], lower=True,
                                            check_finite=False)
            n += k
        return out

    def solve_upper(self, R: np.ndarray) -> np.ndarray:
        """``L^-T R`` for R (N,) or (N, c): back substitution, last block first."""
        R = np.array(R, dtype=np.float64)  # a copy: updated in place below
        if R.shape[0] != self.size:
            raise ValueError(f"R must have {self.size} rows, got {R.shape}")
        end = self.size
        for left, diagonal in reversed(self.blocks):
            k = diagonal.shape[0]
            R[end - k:end] = solve_triangular(diagonal, R[end - k:end], lower=True, trans="T",
                                              check_finite=False)
            R[:end - k] -= left.T @ R[end - k:end]
            end -= k
        R[:end] = solve_triangular(self.base, R[:end], lower=True, trans="T",
                                   check_finite=False)
        return R

    def cho_solve(self, R: np.ndarray) -> np.ndarray:
        """``(L L^T)^-1 R``."""
        return self.solve_upper(self.solve_lower(R))

    def extend(self, cross: np.ndarray, corner: np.ndarray) -> GrowingCholesky:
        """The factor of ``[[A, cross], [cross^T, corner]]``, A = this factor's matrix.

        Args:
            cross: (N, k) covariance between the old and the new rows.
            corner: (k, k) covariance of the new rows (noise included).

        Raises:
            numpy.linalg.LinAlgError: the Schur complement is not positive definite even
                with a jitter of 1e-6 of its mean diagonal.
        """
        cross = np.asarray(cross, dtype=np.float64).reshape(self.size, -1)
        k = cross.shape[1]
        corner = np.asarray(corner, dtype=np.float64).reshape(k, k)
        B = self.solve_lower(cross)  # (N, k)
        schur = corner - B.T @ B
        schur = 0.5 * (schur + schur.T)
        diagonal = _jittered(schur)
        block = (B.T.copy(), diagonal)
        grown = GrowingCholesky(self.base, (*self.blocks, block))
        appended = grown.size - self.base.shape[0]
        if len(grown.blocks) > MAX_BLOCKS or appended > max(256, MERGE_FRACTION
                                                            * self.base.shape[0]):
            grown = GrowingCholesky(grown.dense())
        grown.last_block = block
        return grown

    def extend_whitened(self, whitened: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """``L_new^-1 r_new`` from ``whitened = L_old^-1 r_old`` and the new rows' residual,
        for a factor just returned by :meth:`extend` (O(N k), no solve with the base)."""
        if self.last_block is None:
            raise ValueError("extend_whitened needs a factor returned by extend")
        left, diagonal = self.last_block
        tail = solve_triangular(diagonal, residual - left @ whitened, lower=True,
                                check_finite=False)
        return np.concatenate([whitened, tail])


def _jittered(S: np.ndarray) -> np.ndarray:
    scale = max(float(np.mean(np.diag(S))), 1e-300) if len(S) else 1.0
    for jitter in (0.0, 1e-10, 1e-8, 1e-6):
        try:
            L = np.linalg.cholesky(S + jitter * scale * np.eye(len(S)))
        except np.linalg.LinAlgError:
            continue
        if jitter:
            logger.warning("conditioning needed jitter %.1e on the new rows", jitter)
        return L
    raise np.linalg.LinAlgError("the new rows' Schur complement is not positive definite")
