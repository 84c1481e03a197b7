"""How an invalid spec reads: one line naming the field that is wrong.

Owns: :class:`SpecError`, :class:`SpecModel` (the frozen, no-unknown-fields base of every
spec model, whose pydantic errors become one line with a did-you-mean for a misspelled
field) and :func:`short_repr`, an input shown in an error, cut to one short line.

    >>> short_repr(list(range(100)))
    '[0, 1, 2, 3, 4, 5, ...]'
"""

from __future__ import annotations

import difflib
import reprlib
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["SHOWN_CHARS", "SpecError", "SpecModel", "short_repr"]

SHOWN_CHARS = 80  # an input shown in an error message is cut to this many characters
_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxdict = 6
_SHORT.maxstring = _SHORT.maxother = SHOWN_CHARS


def short_repr(value: Any) -> str:
    """One line of at most :data:`SHOWN_CHARS` characters describing ``value`` (an array
    by its shape and dtype, never its contents)."""
    if isinstance(value, np.ndarray):
        text = f"array of shape {value.shape}, {value.dtype}"
    else:
        text = " ".join(_SHORT.repr(value).split())
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


class SpecError(ValueError):
    """A campaign spec is invalid. The message is one line naming the bad field."""

    @classmethod
    def from_validation(cls, model: str, error: ValidationError,
                        fields: list[str] | None = None) -> SpecError:
        """One line for pydantic's ``error``, raised validating ``model`` whose known
        ``fields`` are used to suggest the field an unknown keyword was meant to be."""
        errors = error.errors()
        # an unknown keyword explains the "Field required" of the field it misspells:
        # name it first (pydantic lists the missing field first)
        unknown = [e for e in errors if e["type"] == "extra_forbidden"]
        first = unknown[0] if unknown else errors[0]
        location = ".".join(str(part) for part in first["loc"]) or "spec"
        message = first["msg"].removeprefix("Value error, ")
        explained: set[str] = set()
        if first["type"] == "extra_forbidden":
            key = str(first["loc"][-1]) if first["loc"] else location
            known = [name for name in fields or [] if name != key]
            hint = ""
            if len(first["loc"]) == 1 and known:
                match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = (f"; did you mean '{match[0]}'?" if match
                        else f"; fields: {', '.join(known)}")
                explained = set(match)
            got = f" (unknown field {short_repr(key)}{hint})"
        elif first["type"] == "missing":
            got = ""  # the input is every argument given: nothing to show
        else:
            shown = first.get("input")
            got = ("" if isinstance(shown, dict) and location == "spec"
                   else f" (got {short_repr(shown)})")
        more = sum(1 for e in errors if e is not first and not (
            e["type"] == "missing" and len(e["loc"]) == 1 and e["loc"][0] in explained))
        tail = f" [and {more} more]" if more else ""
        return cls(f"invalid {model}: {location}: {message}{got}{tail}")


class SpecModel(BaseModel):
    """Base of spec models: frozen, no unknown fields, one-line errors."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise SpecError.from_validation(type(self).__name__, error,
                                            list(type(self).model_fields)) from None
