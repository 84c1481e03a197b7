"""How an app's failure reads to a person: its exception's type and message, and where it
was raised, as the last frames of its traceback (``file:line in function``).

The engine records one line per failed attempt (ledger, log, ``campaign status``);
``ValueError: input deck missing`` alone does not say which of a user's files raised it.
:func:`describe_failure` adds the innermost frames of the user's code, leaving out the
frames of Parsl, ``concurrent.futures`` and the standard library that carried the
exception back to the driver.

    >>> def read_deck(path):
    ...     raise ValueError("input deck missing")
    >>> try:
    ...     read_deck("in.deck")
    ... except ValueError as error:
    ...     print(describe_failure(error))  # doctest: +ELLIPSIS
    ValueError: input deck missing (at <doctest ...>:2 in read_deck; ...)
"""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path

__all__ = ["FRAMES", "describe_failure", "user_frames"]

FRAMES = 3  # innermost frames shown
CARRIERS = ("/parsl/", "/concurrent/futures/", "/tblib/")  # frames that only carried it
STANDARD_LIBRARY = sysconfig.get_paths()["stdlib"]


def user_frames(error: BaseException, limit: int = FRAMES) -> list[traceback.FrameSummary]:
    """The innermost ``limit`` frames of ``error``'s traceback that are neither Parsl's,
    ``concurrent.futures``' nor the standard library's (all frames if every one is)."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if not any(part in f.filename for part in CARRIERS)
           and not f.filename.startswith(STANDARD_LIBRARY)]
    return (own or frames)[-limit:] if limit > 0 else []


def describe_failure(error: BaseException, limit: int = FRAMES) -> str:
    """``"Type: message (at file.py:12 in fn; ...)"``, innermost frame first; the message
    as given, or the type alone when it is empty. Pure: it only reads ``error``."""
    text = str(error).strip()
    head = f"{type(error).__name__}: {text}" if text else type(error).__name__
    frames = user_frames(error, limit)
    if not frames:
        return head
    where = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}"
                      for f in reversed(frames))
    return f"{head} (at {where})"
