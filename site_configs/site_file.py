"""Sites from small TOML or YAML files, so users change accounts without editing code.

A file names the site and sets any of its factory's parameters; per-label settings go in an
``overrides`` table::

    site = "perlmutter"
    account = "m1234"
    walltime = "02:00:00"

    [overrides.sim-fine]
    node_type = "gpu"
"""

from __future__ import annotations

import inspect
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import typeguard

SUFFIXES = (".toml", ".yaml", ".yml")


class UnknownSiteError(ValueError):
    """A site name that is not in ``site_configs.SITES`` (nor a site file)."""


class SiteFileError(UnknownSiteError):
    """A site file that cannot be read, or that names a bad key or value (the message
    names the file and the key). A kind of :class:`UnknownSiteError`, so whatever reports
    a bad site name reports a bad site file too."""


def is_site_file(name: str) -> bool:
    """Whether a site name is a path to a site file (by its suffix)."""
    return Path(name).suffix.lower() in SUFFIXES


def read_site_file(
    path: str | Path, sites: Mapping[str, Callable[..., Any]]
) -> tuple[str, dict[str, Any]]:
    """The site name and parameters a file gives, checked against the site's factory.

    Raises:
        SiteFileError: unreadable file, no or unknown ``site``, a key the factory does not
            take (or ``scales``/``run_dir``, which the engine gives), or a value of the
            wrong type.
    """
    path = Path(path)
    data = _parse(path)
    if not isinstance(data, dict):
        raise SiteFileError(f"{path}: expected a table of settings, got {type(data).__name__}")
    site = data.pop("site", None)
    if not isinstance(site, str) or site not in sites:
        raise SiteFileError(
            f"{path}: key 'site' must name a known site ({', '.join(sorted(sites))}); "
            f"got {site!r}"
        )
    factory = sites[site]
    parameters = inspect.signature(factory).parameters
    hints = typing.get_type_hints(factory)
    for key, value in data.items():
        if key in ("scales", "run_dir") or key not in parameters:
            known = [name for name in parameters if name not in ("scales", "run_dir")]
            raise SiteFileError(
                f"{path}: unknown key {key!r} for site {site!r}; known keys: site, "
                f"{', '.join(known)}"
            )
        if isinstance(value, int) and not isinstance(value, bool) and hints[key] in (
            float, float | None
        ):
            value = data[key] = float(value)  # TOML/YAML write 5 for 5.0
        try:
            typeguard.check_type(value, hints[key])
        except typeguard.TypeCheckError:
            raise SiteFileError(
                f"{path}: key {key!r} must be {_type_name(hints[key])}; got {value!r}"
            ) from None
    return site, data


def _parse(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise SiteFileError(f"cannot read site file {path}: {error.strerror or error}") from None
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise SiteFileError(f"{path}: not valid TOML: {error}") from None
    try:
        import yaml
    except ImportError:
        raise SiteFileError(
            f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write TOML"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SiteFileError(f"{path}: not valid YAML: {error}") from None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
