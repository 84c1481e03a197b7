"""Parsl site configs by name: each factory returns a fresh ``parsl.config.Config``.

Every config provides one executor per label in :func:`executor_labels`: ``sim-<scale>`` for
each scale and ``train``. Importing this package loads nothing and changes no environment.
"""

from collections.abc import Callable, Sequence
from typing import Any

from parsl.config import Config

from site_configs import local, threads
from site_configs.labels import TRAIN_LABEL, executor_labels

__all__ = ["SITES", "TRAIN_LABEL", "UnknownSiteError", "executor_labels", "get_config"]

SITES: dict[str, Callable[..., Config]] = {"local": local.config, "threads": threads.config}
"""Site name -> factory ``(*, scales, run_dir, **params) -> Config``."""


class UnknownSiteError(ValueError):
    """A site name that is not in :data:`SITES`."""


def get_config(name: str, *, scales: Sequence[str], run_dir: str, **params: Any) -> Config:
    """A fresh Config of the named site.

    Args:
        name: a key of :data:`SITES`.
        scales: scale names; the config has executors ``sim-<scale>`` and ``train``.
        run_dir: Parsl's run directory.
        **params: the site factory's own parameters (e.g. ``workers_per_scale``).

    Raises:
        UnknownSiteError: ``name`` is not a known site; the message lists the known ones.
        TypeError: a parameter the site's factory does not take.
        ValueError: bad ``scales`` or parameter values.
    """
    try:
        factory = SITES[name]
    except KeyError:
        raise UnknownSiteError(
            f"unknown site {name!r}; known sites: {', '.join(sorted(SITES))}"
        ) from None
    return factory(scales=scales, run_dir=run_dir, **params)
