"""Stationary covariance functions evaluated in float64 numpy.

The GP learner fits its hyperparameters with GPyTorch but predicts with these: the same
formulas as ``gpytorch.kernels.ScaleKernel(MaternKernel(nu=2.5) | RBFKernel)``, with ARD
length scales, so a fitted model is plain arrays that predict again without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["KERNELS", "Kernel"]

#: Kernel names understood by :class:`Kernel`, in the order of their integer codes
#: (the code is what a learner's ``state_dict`` stores).
KERNELS: tuple[str, ...] = ("matern52", "rbf")

_SQRT5 = np.sqrt(5.0)


@dataclass(frozen=True)
class Kernel:
    """A scaled stationary kernel ``outputscale * k(|x - x'| / lengthscale)``.

    Attributes:
        name: one of :data:`KERNELS`.
        lengthscale: (d,) float64, > 0, one length scale per input column.
        outputscale: prior variance ``k(x, x)``, > 0.

    Raises:
        ValueError: unknown ``name`` or non-positive / non-finite hyperparameters.
    """

    name: str
    lengthscale: np.ndarray
    outputscale: float

    def __post_init__(self) -> None:
        if self.name not in KERNELS:
            raise ValueError(f"kernel name {self.name!r} unknown; known: {', '.join(KERNELS)}")
        lengthscale = np.asarray(self.lengthscale, dtype=np.float64).reshape(-1)
        if lengthscale.size == 0 or not np.all(np.isfinite(lengthscale) & (lengthscale > 0)):
            raise ValueError(f"lengthscale must be positive and finite, got {lengthscale}")
        if not (np.isfinite(self.outputscale) and self.outputscale > 0):
            raise ValueError(f"outputscale must be positive and finite, got {self.outputscale}")
        object.__setattr__(self, "lengthscale", lengthscale)
        object.__setattr__(self, "outputscale", float(self.outputscale))

    def __call__(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Cross-covariance ``K[i, j] = k(A[i], B[j])``: A (n, d), B (m, d) -> (n, m) float64."""
        # In-place arithmetic: candidate chunks are large, so keep to two (n, m) buffers.
        K = cdist(A / self.lengthscale, B / self.lengthscale, metric="euclidean")
        if self.name == "rbf":
            np.square(K, out=K)
            K *= -0.5
            np.exp(K, out=K)
        else:
            K *= _SQRT5
            polynomial = K / 3.0
            polynomial += 1.0
            polynomial *= K
            polynomial += 1.0  # 1 + s + s^2 / 3 with s = sqrt(5) r
            np.negative(K, out=K)
            np.exp(K, out=K)
            K *= polynomial
        K *= self.outputscale
        return K

    def pair(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Row-wise ``k(A[i], B[i])``: A, B (n, d) -> (n,) float64."""
        r = np.sqrt(np.sum(((A - B) / self.lengthscale) ** 2, axis=1))
        if self.name == "rbf":
            return self.outputscale * np.exp(-0.5 * r * r)
        s = _SQRT5 * r
        return self.outputscale * (1.0 + s + s * s / 3.0) * np.exp(-s)

    def diag(self, A: np.ndarray) -> np.ndarray:
        """Prior variances ``k(A[i], A[i])``: A (n, d) -> (n,) float64 (all ``outputscale``)."""
        return np.full(len(A), self.outputscale)
