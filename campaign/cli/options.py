"""Options several commands read the same way (``--site-param KEY=VALUE``)."""

from __future__ import annotations

from typing import Any

from campaign.cli.terminal import fail


def parse_site_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--site-param must be KEY=VALUE, got '{pair}'")
        for convert in (int, float):
            try:
                params[key] = convert(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return params
