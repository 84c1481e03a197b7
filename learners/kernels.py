"""Stationary covariance functions evaluated in float64 numpy.

The GP learner fits its hyperparameters with GPyTorch but predicts with these: the same
formulas as ``gpytorch.kernels.ScaleKernel(MaternKernel(nu=2.5) | RBFKernel)``, with ARD
length scales, so a fitted model is plain arrays that predict again without torch.

Any other GPyTorch kernel (for instance :func:`additive_kernel`) predicts through
:class:`TorchKernel`, which evaluates the fitted module in float64 torch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["KERNELS", "Kernel", "TorchKernel", "additive_kernel"]

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


class TorchKernel:
    """A fitted GPyTorch kernel module evaluated in float64, with :class:`Kernel`'s methods.

    The kernel must be stationary enough that ``k(x, x)`` is one constant (checked by the
    learner on its training data): posteriors use ``outputscale`` as the prior variance.
    ``lengthscale`` (d,) is only a metric for nearest-neighbour variance bounds (any
    positive values keep those bounds valid; closer to the kernel's own, tighter).

    Args:
        module: the fitted kernel; a deep copy is kept, in eval mode and float64.
        lengthscale: (d,) positive metric for nearest-neighbour queries.
        outputscale: ``k(x, x)``, > 0.
    """

    def __init__(self, module: object, lengthscale: np.ndarray, outputscale: float) -> None:
        import torch

        self.module = copy.deepcopy(module).to(torch.float64).eval()
        self.lengthscale = np.asarray(lengthscale, dtype=np.float64).reshape(-1)
        self.outputscale = float(outputscale)

    def __call__(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Cross-covariance: A (n, d), B (m, d) -> (n, m) float64."""
        import torch

        with torch.no_grad():
            a = torch.as_tensor(np.ascontiguousarray(A), dtype=torch.float64)
            b = torch.as_tensor(np.ascontiguousarray(B), dtype=torch.float64)
            return self.module(a, b).to_dense().numpy().copy()

    def pair(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Row-wise ``k(A[i], B[i])``: A, B (n, d) -> (n,) float64."""
        import torch

        with torch.no_grad():
            a = torch.as_tensor(np.ascontiguousarray(A), dtype=torch.float64)
            b = torch.as_tensor(np.ascontiguousarray(B), dtype=torch.float64)
            return self.module(a, b, diag=True).numpy().copy()

    def diag(self, A: np.ndarray) -> np.ndarray:
        """Prior variances ``k(A[i], A[i])``: A (n, d) -> (n,) float64."""
        return self.pair(A, A)


def additive_kernel(
    d: int,
    *,
    base: str = "matern52",
    short: float = 0.2,
    long: float = 2.0,
    angles: Sequence[int] = (),
    period: float = 2.0 * math.pi,
) -> object:
    """A GPyTorch kernel: short- plus long-range families, optionally a periodic part.

    ``ScaleKernel(base(short)) + ScaleKernel(base(long)) [+ ScaleKernel(Periodic)]``:
    each ``base`` is ARD over all ``d`` columns, started at length scale ``short`` and
    ``long`` respectively and kept apart by interval constraints (the short family below
    the geometric mean of the two, the long one above it), so the optimizer cannot merge
    them. The short family starts with a tenth of the long one's output scale (detail on
    a smooth trend). Columns listed in ``angles`` (radians) go instead to an ARD periodic
    kernel with fixed ``period`` (the two families then cover the other columns), so the
    kernel is exactly periodic in them. Length scales are in the units the learner feeds the kernel
    (:class:`learners.ExactGP` passes the raw inputs to a kernel object).

    >>> kernel = additive_kernel(3, short=0.1, long=1.0, angles=[2])
    >>> len(kernel.kernels)
    3

    Raises:
        ValueError: ``d < 1``, unknown ``base``, ``not 0 < short < long``, angle columns
            outside ``[0, d)``, or ``period <= 0``.
    """
    import gpytorch
    import torch

    if int(d) != d or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    if base not in KERNELS:
        raise ValueError(f"base must be one of {', '.join(KERNELS)}, got {base!r}")
    if not (0 < short < long and math.isfinite(long)):
        raise ValueError(f"need 0 < short < long, got short={short!r}, long={long!r}")
    angles = [int(a) for a in angles]
    if any(not 0 <= a < d for a in angles) or len(set(angles)) != len(angles):
        raise ValueError(f"angles must be distinct columns in [0, {d}), got {angles!r}")
    if not (math.isfinite(period) and period > 0):
        raise ValueError(f"period must be > 0, got {period!r}")
    middle = math.sqrt(short * long)

    rest = [column for column in range(int(d)) if column not in angles]

    def family(start: float, low: float, high: float, scale: float) -> object:
        options: dict = {"ard_num_dims": len(rest),
                         "lengthscale_constraint": gpytorch.constraints.Interval(low, high)}
        if angles:
            options["active_dims"] = torch.tensor(rest)
        kernel = (gpytorch.kernels.RBFKernel(**options) if base == "rbf"
                  else gpytorch.kernels.MaternKernel(nu=2.5, **options))
        kernel.lengthscale = torch.full((1, len(rest)), float(start))
        scaled = gpytorch.kernels.ScaleKernel(kernel)
        scaled.outputscale = scale
        return scaled

    parts = [family(short, short / 50.0, middle, 0.1), family(long, middle, long * 50.0, 1.0)
             ] if rest else []
    if angles:
        periodic = gpytorch.kernels.PeriodicKernel(
            ard_num_dims=len(angles), active_dims=torch.tensor(angles))
        periodic.period_length = float(period)
        periodic.raw_period_length.requires_grad_(False)  # the period of an angle is known
        periodic.lengthscale = torch.ones(1, len(angles))
        scaled = gpytorch.kernels.ScaleKernel(periodic)
        scaled.outputscale = 0.5
        parts.append(scaled)
    return gpytorch.kernels.AdditiveKernel(*parts).to(torch.float64)
