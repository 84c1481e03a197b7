"""Load the :class:`~campaign.Campaign` a user's script defines.

The script is imported as a module named after its file (its folder put first on
``sys.path`` and on ``PYTHONPATH``), so functions it defines pickle by reference and
Parsl workers, which inherit the environment, can import them too. Its
``if __name__ == "__main__":`` block does not run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from campaign.spec import CampaignSpec


class ScriptError(RuntimeError):
    """The script cannot be imported or does not define exactly one campaign."""


def load_campaign(path: str | Path) -> CampaignSpec:
    """Import ``path`` and return its campaign: the module attribute ``campaign`` if it
    is one, else the only :class:`CampaignSpec` among its top-level names."""
    script = Path(path).resolve()
    if not script.is_file():
        raise ScriptError(f"campaign script {path} does not exist")
    folder = str(script.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    python_path = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if folder not in python_path:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *filter(None, python_path)])
    name = script.stem
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(script):
        module = sys.modules[name]
    else:
        spec = importlib.util.spec_from_file_location(name, script)
        if spec is None or spec.loader is None:
            raise ScriptError(f"cannot import {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise ScriptError(f"{path} failed to import: {type(error).__name__}: "
                              f"{error}") from error
    candidate = getattr(module, "campaign", None)
    if isinstance(candidate, CampaignSpec):
        return candidate
    found = [value for value in vars(module).values() if isinstance(value, CampaignSpec)]
    if len(found) != 1:
        raise ScriptError(f"{path} must define one Campaign (as `campaign = Campaign(...)`); "
                          f"found {len(found)}")
    return found[0]
