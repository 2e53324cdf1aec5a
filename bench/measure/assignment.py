"""The optimal assignment (Hungarian algorithm) that detection matching uses.

scipy's `linear_sum_assignment` is not installed in the framework images, so the same solver
is here, in numpy.
"""

from __future__ import annotations

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a rectangular cost matrix (scipy's interface, numpy only).

    Returns (rows, cols), rows ascending, with min(N, M) pairs: every row is assigned when
    N <= M, every column when N > M, and cost[rows, cols].sum() is minimal. Costs must be
    finite; a forbidden pair is a large finite cost that the caller filters out afterwards.

    The shortest-augmenting-path form of the Hungarian algorithm (Jonker-Volgenant style, with
    row and column potentials): rows are added one at a time, and each addition runs a
    Dijkstra-like search over reduced costs to the nearest free column, then augments along
    the path. O(N^2 M) arithmetic with the inner loop over columns vectorised, so a few
    hundred boxes of one class take well under a second.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cost must be finite (use a large finite cost for forbidden pairs)")
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    if n == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty.copy()
    # 1-based arrays with a virtual column 0 that holds the row being inserted (the classic
    # formulation); col_row[j] is the row (1-based, 0 = free) assigned to column j.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    col_row = np.zeros(m + 1, dtype=np.intp)
    way = np.zeros(m + 1, dtype=np.intp)
    for i in range(1, n + 1):
        col_row[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = col_row[j0]
            free = ~used
            free[0] = False
            # Reduced cost of reaching each free column from row i0 on the current tree.
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free[1:] & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv, np.inf)
            j1 = int(np.argmin(candidates))
            delta = candidates[j1]
            # Shift potentials so the tree's edges stay tight and j1's edge becomes tight.
            u[col_row[used]] += delta
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if col_row[j0] == 0:
                break
        # Augment: flip the assignment along the alternating path back to the virtual column.
        while j0:
            j1 = way[j0]
            col_row[j0] = col_row[j1]
            j0 = j1
    cols = np.nonzero(col_row[1:])[0]
    rows = col_row[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.intp), cols[order].astype(np.intp)
