"""Pure helpers of benchmarks.molecular (no MD): target counting and the visited grid."""

import numpy as np

from benchmarks.molecular import sims_to_target, visited_grid


def test_sims_to_target_first_crossing_and_censoring():
    assert sims_to_target([4, 8, 12], [9.0, 5.0, 7.0], 5.0, censored_at=16) == 8
    assert sims_to_target([4, 8, 12], [9.0, 6.0, 7.0], 5.0, censored_at=16) == 16


def test_visited_grid_keeps_points_near_the_pool_across_the_periodic_edge():
    pool = np.radians([[-178.0, 15.0], [60.0, 60.0]])
    grid = np.degrees(visited_grid(pool, 12, radius_deg=25.0))
    assert len(grid) > 0
    near = np.abs(((grid[:, None, :] - np.degrees(pool)[None]) + 180) % 360 - 180)
    assert np.all(np.sqrt((near ** 2).sum(-1)).min(1) < 25.0)
    assert any(g[0] > 160 for g in grid)  # (165, 15) is 17 deg from (-178, 15) across the edge
