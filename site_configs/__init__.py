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
>>> node_shape("perlmutter").describe()
'64 cores, 4 A100, 256 GB, 1 node per block'
>>> from campaign.resources import Resources
>>> print(*check_resources("perlmutter", {"aa": Resources(gpus=8)}))  # doctest: +ELLIPSIS
scale 'aa' asks for gpus=8: 8 A100s per task on one node; the node has 4 (perlmutter node: ...)
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from parsl.config import Config

from campaign.resources import NodeShape, Resources, problems_on
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
    "check_resources",
    "describe_sites",
    "executor_labels",
    "get_config",
    "node_shape",
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

NODE_SHAPES: dict[str, Callable[..., NodeShape]] = {
    "local": local.node_shape,
    "threads": threads.node_shape,
    "slurm": slurm.node_shape,
    "pbs": pbs.node_shape,
    "lsf": lsf.node_shape,
    "perlmutter": perlmutter.node_shape,
    "frontier": frontier.node_shape,
    "polaris": polaris.node_shape,
    "aurora": aurora.node_shape,
}
"""Site name -> ``(**settings) -> NodeShape``: the node one executor's jobs get."""

ENGINE_GIVEN = ("scales", "run_dir", "resources")


def get_config(name: str, *, scales: Sequence[str], run_dir: str,
               resources: Mapping[str, Resources | None] | None = None,
               **params: Any) -> Config:
    """A fresh Config of the named site, or of the site a TOML/YAML file describes.

    Args:
        name: a key of :data:`SITES`, or a path ending in ``.toml``, ``.yaml`` or ``.yml``
            (see :mod:`site_configs.site_file`); ``params`` override the file's settings.
        scales: scale names; the config has executors ``sim-<scale>`` and ``train``.
        run_dir: Parsl's run directory.
        resources: scale name -> what one of its tasks needs (``Scale.resources``); the
            site maps it to the scale's executor (workers per node, MPI mode, GPUs).
        **params: the site factory's own parameters (e.g. ``account``, ``walltime``).

    Raises:
        UnknownSiteError: ``name`` is not a known site; the message lists the known ones.
        SiteFileError: a site file that cannot be read or has a bad key or value.
        UnknownSiteParameterError: a parameter the site's factory does not take (a
            ``TypeError``); the message suggests the closest known one and lists them.
        ValueError: bad ``scales`` or parameter values.
    """
    name, params = _site_and_params(name, params)
    return SITES[name](scales=scales, run_dir=run_dir, resources=resources, **params)


def _site_and_params(name: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The site a name or site file means, and its parameters (the file's, then
    ``params``), each one checked to be a parameter of the site's factory.

    Raises:
        UnknownSiteError, SiteFileError, UnknownSiteParameterError: as :func:`get_config`.
    """
    params = dict(params)
    if is_site_file(name):
        name, from_file = read_site_file(name, SITES)
        params = {**from_file, **params}
    if name not in SITES:
        raise UnknownSiteError(f"unknown site {name!r}; known sites: {', '.join(sorted(SITES))}"
                               " (or a .toml/.yaml site file)")
    _check_parameters(name, SITES[name], params)
    return name, params


def node_shape(name: str, *, label: str | None = None, **params: Any) -> NodeShape:
    """The node the jobs of executor ``label`` get on site ``name`` with ``params`` (the
    site's defaults, its ``overrides[label]`` applied), for ``campaign sites`` and
    ``campaign validate --site``.

    Raises:
        UnknownSiteError, SiteFileError, UnknownSiteParameterError: as :func:`get_config`.
        ValueError: a parameter value the site refuses (e.g. ``node_type='tpu'``).
    """
    name, params = _site_and_params(name, params)
    defaults = {parameter.name: parameter.default
                for parameter in inspect.signature(SITES[name]).parameters.values()
                if parameter.default is not inspect.Parameter.empty}
    settings = {**defaults, **params}
    overrides = settings.pop("overrides", None) or {}
    if label is not None:
        settings.update(overrides.get(label, {}))
    return NODE_SHAPES[name](**settings)


def check_resources(name: str, scales: Sequence[Any] | Mapping[str, Any],
                    **params: Any) -> list[str]:
    """What each scale asks of site ``name`` that its node cannot give, one line each
    naming the scale, what it asked and the node (empty: every request fits).

    Args:
        name: a site (or site file), as for :func:`get_config`.
        scales: ``Scale`` objects (``.name``, ``.resources``, ``.executor_label``) or a
            mapping ``scale name -> Resources`` (or a dict of its fields).
        **params: the site's parameters, as the campaign would run with them.

    Raises:
        UnknownSiteError, SiteFileError, UnknownSiteParameterError: as :func:`get_config`.
    """
    name, params = _site_and_params(name, params)
    if isinstance(scales, Mapping):
        asked = [(scale, f"sim-{scale}", Resources.coerce(need)) for scale, need in
                 scales.items()]
    else:
        asked = [(scale.name, getattr(scale, "executor_label", f"sim-{scale.name}"),
                  Resources.coerce(scale.resources)) for scale in scales]
    problems = []
    for scale, label, need in asked:
        try:
            node = node_shape(name, label=label, **params)
        except (TypeError, ValueError) as error:
            problems.append(f"scale '{scale}': site {name!r} cannot be set up: {error}")
            continue
        for problem in problems_on(need, node):
            problems.append(f"scale '{scale}' asks for {need.describe()}: {problem} "
                            f"({name} node: {node.describe()})")
    return problems


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
        module's docstring), ``node`` (its default node shape, e.g. ``64 cores, 4 A100,
        256 GB, 1 node per block``) and ``parameters``, a list of dicts with ``name``,
        ``default`` and ``help`` (``scales``, ``run_dir`` and ``resources``, which the
        engine gives, are left out).
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
        described.append({"name": name, "description": description,
                          "node": node_shape(name).describe(), "parameters": parameters})
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
