"""``campaign learners``, ``policies`` and ``sites``: what a spec or ``--site`` can name,
with each one's parameters and the first sentence of its docstring (and, for a site, the
shape of its node)."""

from __future__ import annotations

import inspect
import re
from typing import Any

from rich.table import Table

from campaign.cli.terminal import console


def first_sentence(obj: Any) -> str:
    """The first sentence of the docstring's first paragraph, reST roles and literals
    shown as plain text."""
    paragraph = " ".join((inspect.getdoc(obj) or "").split("\n\n", 1)[0].split())
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], paragraph)
    text = text.replace("``", "")
    sentence = re.match(r"(.+?[.!?])(?=\s+[A-Z]|$)", text)
    return sentence.group(1) if sentence else text


def parameters(cls: type) -> str:
    """``name=default`` for each constructor parameter (``name`` if it has none)."""
    shown = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            shown.append(f"*{parameter.name}")
        elif parameter.kind is parameter.VAR_KEYWORD:
            shown.append(f"**{parameter.name}")
        elif parameter.default is parameter.empty:
            shown.append(parameter.name)
        else:
            default = repr(parameter.default)
            shown.append(f"{parameter.name}={default if len(default) <= 40 else '...'}")
    return ", ".join(shown)


def registry_table(title: str, registry: dict[str, type]) -> None:
    table = Table(title=title)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("parameters (name=default)")
    table.add_column("description")
    for name, cls in registry.items():
        table.add_row(name, cls.__name__, parameters(cls), first_sentence(cls))
    console.print(table)


def learners() -> None:
    """List the learners a spec can name (learner="NAME") and their parameters."""
    from learners import LEARNERS

    registry_table('learners (Promotion(learner="NAME") or learners.learner_by_name(NAME, '
                    '**params))', LEARNERS)


def policies() -> None:
    """List the acquisition policies a spec can name (acquisition="NAME")."""
    from learners.acquisition import ACQUISITIONS

    registry_table('acquisition policies (Promotion(acquisition="NAME") or '
                    'learners.acquisition.acquisition_by_name(NAME, **params))', ACQUISITIONS)


def sites() -> None:
    """List the known site configs, the node each one's jobs get by default (cores, GPUs,
    memory, nodes per block) and their parameters (defaults in brackets)."""
    from site_configs import describe_sites

    table = Table(title="sites (campaign run --site NAME --site-param KEY=VALUE, "
                        "or --site FILE.toml)")
    table.add_column("site", style="bold")
    table.add_column("description")
    table.add_column("node (default)", no_wrap=True)
    table.add_column("parameters")
    for site in describe_sites():
        table.add_row(site["name"], site["description"], site["node"], ", ".join(
            f"{p['name']} [{p['default']!r}]" for p in site["parameters"]))
    console.print(table)
