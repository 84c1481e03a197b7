"""Which rows a GP fits its hyperparameters on when there are too many for an exact fit.

The hyperparameters (length scales, output scale, noise) change slowly with n, so they
can be fitted on a subset of m rows while the posterior is conditioned on all n. The rule
(:func:`fit_subset`):

- the most recent ``m // 2`` rows (the campaign passes rows in commit order, so these
  are where the acquisition has been looking lately), and
- ``m - m // 2`` rows spread over the rest of the inputs by greedy farthest-point
  sampling (in the standardized inputs, from the oldest row), so the length scales see
  the whole domain and not only the latest region.

Below m rows nothing changes: every row is used. Deterministic, ``O(n m d)``.

>>> import numpy as np
>>> rows = fit_subset(np.arange(10.0)[:, None], 4)
>>> rows.tolist()  # the 2 newest, then the oldest and the row farthest from all chosen
[0, 4, 8, 9]
>>> fit_subset(np.zeros((3, 2)), 4) is None
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_subset"]


def fit_subset(Xs: np.ndarray, m: int | None) -> np.ndarray | None:
    """Sorted row indices of the hyperparameter-fit subset, or None to use all rows.

    Args:
        Xs: (n, d) standardized inputs in commit order (oldest first).
        m: subset size (None: no subset).

    Returns:
        None when ``m`` is None or ``n <= m``; else (m,) sorted int64 indices.
    """
    n = len(Xs)
    if m is None or n <= m:
        return None
    recent = np.arange(n - m // 2, n)
    older = Xs[: n - m // 2]
    wanted = m - m // 2
    chosen = np.empty(wanted, dtype=np.int64)
    # distance of each older row to the nearest chosen row (recent rows count as chosen)
    nearest = np.full(len(older), np.inf)
    for row in Xs[recent]:
        np.minimum(nearest, np.sum((older - row) ** 2, axis=1), out=nearest)
    chosen[0] = 0
    for i in range(wanted):
        if i:
            chosen[i] = int(np.argmax(nearest))
        np.minimum(nearest, np.sum((older - older[chosen[i]]) ** 2, axis=1), out=nearest)
        nearest[chosen[i]] = -1.0  # never again
    return np.sort(np.concatenate([chosen, recent]))
