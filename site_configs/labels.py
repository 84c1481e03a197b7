"""Executor labels: the names the engine submits each kind of task to."""

from collections.abc import Sequence

TRAIN_LABEL = "train"


def executor_labels(scales: Sequence[str]) -> list[str]:
    """The executor labels a site config must provide for these scales.

    Args:
        scales: scale names, e.g. ``["coarse", "fine"]``; non-empty, distinct, non-empty
            strings.

    Returns:
        ``["sim-<scale>" for each scale, in order] + ["train"]``.

    Raises:
        TypeError: if ``scales`` is a single string (a common slip for a one-item list).
        ValueError: if ``scales`` is empty, or holds an empty or repeated name.
    """
    if isinstance(scales, str):
        raise TypeError(f"scales must be a sequence of names, not the string {scales!r}")
    names = list(scales)
    if not names:
        raise ValueError("scales must name at least one scale")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"scale names must be non-empty strings; got {name!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"scale names must be distinct; repeated: {', '.join(repeated)}")
    return [f"sim-{name}" for name in names] + [TRAIN_LABEL]
