"""Shared pieces of the report's figures: matplotlib off-screen, saving a figure as a
PNG of the run, empty panels and colour maps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Figure:
    """One figure of the page: its element id, PNG file (in the run directory), caption."""

    id: str
    file: str
    caption: str


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure: Any, run_dir: Path, figure_id: str, caption: str) -> Figure:
    file = run_dir / f"report-{figure_id}.png"
    figure.tight_layout()
    figure.savefig(file, dpi=100)
    pyplot().close(figure)
    return Figure(figure_id, str(file), caption)


def no_data(axis: Any, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes)
    axis.set_xticks([])
    axis.set_yticks([])


def integer_colours(rounds: np.ndarray) -> tuple[Any, Any, list[int]]:
    """A discrete colour map and norm with one colour per integer in ``rounds``' range."""
    from matplotlib.colors import BoundaryNorm

    plt = pyplot()
    low, high = (int(rounds.min()), int(rounds.max())) if len(rounds) else (0, 0)
    cmap = plt.get_cmap("viridis", high - low + 1)
    norm = BoundaryNorm(np.arange(low - 0.5, high + 1.5), cmap.N)
    step = max(1, math.ceil((high - low + 1) / 12))
    return cmap, norm, list(range(low, high + 1, step))


def scale_colours(scales: list[str]) -> dict[str, Any]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    return {scale: cmap(i % 10) for i, scale in enumerate(sorted(scales))}
