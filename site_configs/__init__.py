"""Parsl site configs by name: each factory returns a fresh ``parsl.config.Config``.

Every config provides one executor per label in :func:`executor_labels`: ``sim-<scale>`` for
each scale and ``train``. Importing this package loads nothing, starts nothing and changes
no environment; a factory resolves addresses and environments only when called.

>>> executor_labels(["coarse", "fine"])
['sim-coarse', 'sim-fine', 'train']
>>> config = get_config("threads", scales=["coarse", "fine"], run_dir="/tmp/parsl-doc")
>>> sorted(executor.label for executor in config.executors)
['sim-coarse', 'sim-fine', 'train']
>>> "slurm" in SITES
True
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

from parsl.config import Config

from site_configs import aurora, frontier, local, lsf, pbs, perlmutter, polaris, slurm, threads
from site_configs.batch import PARAMETER_HELP
from site_configs.labels import TRAIN_LABEL, executor_labels
from site_configs.site_file import (
    SiteFileError,
    UnknownSiteError,
    is_site_file,
    read_site_file,
)

__all__ = [
    "SITES",
    "TRAIN_LABEL",
    "SiteFileError",
    "UnknownSiteError",
    "UnknownSiteParameterError",
    "describe_sites",
    "executor_labels",
    "get_config",
]

SITES: dict[str, Callable[..., Config]] = {
    "local": local.config,
    "threads": threads.config,
    "slurm": slurm.config,
    "pbs": pbs.config,
    "lsf": lsf.config,
    "perlmutter": perlmutter.config,
    "frontier": frontier.config,
    "polaris": polaris.config,
    "aurora": aurora.config,
}
"""Site name -> factory ``(*, scales, run_dir, **params) -> Config``."""

ENGINE_GIVEN = ("scales", "run_dir")


def get_config(name: str, *, scales: Sequence[str], run_dir: str, **params: Any) -> Config:
    """A fresh Config of the named site, or of the site a TOML/YAML file describes.

    Args:
        name: a key of :data:`SITES`, or a path ending in ``.toml``, ``.yaml`` or ``.yml``
            (see :mod:`site_configs.site_file`); ``params`` override the file's settings.
        scales: scale names; the config has executors ``sim-<scale>`` and ``train``.
        run_dir: Parsl's run directory.
        **params: the site factory's own parameters (e.g. ``account``, ``walltime``).

    Raises:
        UnknownSiteError: ``name`` is not a known site; the message lists the known ones.
        SiteFileError: a site file that cannot be read or has a bad key or value.
        UnknownSiteParameterError: a parameter the site's factory does not take (a
            ``TypeError``); the message suggests the closest known one and lists them.
        ValueError: bad ``scales`` or parameter values.
    """
    if is_site_file(name):
        name, from_file = read_site_file(name, SITES)
        params = {**from_file, **params}
    try:
        factory = SITES[name]
    except KeyError:
        raise UnknownSiteError(
            f"unknown site {name!r}; known sites: {', '.join(sorted(SITES))} "
            "(or a .toml/.yaml site file)"
        ) from None
    _check_parameters(name, factory, params)
    return factory(scales=scales, run_dir=run_dir, **params)


class UnknownSiteParameterError(TypeError):
    """A parameter the site's factory does not take; the message suggests the closest
    known one and lists them all (as a site file's unknown key does)."""


def _check_parameters(name: str, factory: Callable[..., Config], params: dict[str, Any]) -> None:
    signature = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in signature.values()):
        return
    known = [key for key in signature if key not in ENGINE_GIVEN]
    for key in params:
        if key not in known:
            match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean '{match[0]}'? " if match else ""
            raise UnknownSiteParameterError(
                f"site {name!r} has no parameter {key!r}; {hint}known parameters: "
                f"{', '.join(known)}")


def describe_sites() -> list[dict[str, Any]]:
    """Every site with its description and parameters, for ``campaign sites``.

    Returns:
        One dict per site, sorted by name: ``name``, ``description`` (the first line of its
        module's docstring) and ``parameters``, a list of dicts with ``name``, ``default``
        and ``help`` (``scales`` and ``run_dir``, which the engine gives, are left out).
    """
    described = []
    for name in sorted(SITES):
        factory = SITES[name]
        module = inspect.getmodule(factory)
        doc = inspect.getdoc(module) or ""
        description = " ".join(doc.split("\n\n")[0].split())
        own_help = _arguments_help(inspect.getdoc(factory) or "")
        parameters = [
            {
                "name": parameter.name,
                "default": parameter.default,
                "help": own_help.get(parameter.name, PARAMETER_HELP.get(parameter.name, "")),
            }
            for parameter in inspect.signature(factory).parameters.values()
            if parameter.name not in ENGINE_GIVEN
        ]
        described.append({"name": name, "description": description, "parameters": parameters})
    return described


def _arguments_help(docstring: str) -> dict[str, str]:
    """``name -> text`` from a Google-style ``Args:`` section."""
    helps: dict[str, str] = {}
    section = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)+)", docstring, re.MULTILINE)
    if not section:
        return helps
    current = None
    for line in section.group(1).splitlines():
        entry = re.match(r"^\s{4}(\w+):\s*(.*)$", line)
        if entry:
            current = entry.group(1)
            helps[current] = entry.group(2)
        elif current and line.strip():
            helps[current] += " " + line.strip()
    return {key: " ".join(text.split()) for key, text in helps.items()}
