"""Small helpers of the runner: argument checks, messages, time stamps, JSON-safe values."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from shiftbench.errors import UserInputError
from shiftbench.run.rundir import _json_default


def positive(value: Any, name: str) -> int:
    """``value`` as an int ≥ 1 (else a one-line UserInputError naming ``name``)."""
    v = integer(value, name)
    if v < 1:
        raise UserInputError(f"{name} must be >= 1; got {value!r}")
    return v


def non_negative(value: Any, name: str) -> int:
    """``value`` as an int ≥ 0."""
    v = integer(value, name)
    if v < 0:
        raise UserInputError(f"{name} must be >= 0; got {value!r}")
    return v


def integer(value: Any, name: str) -> int:
    """``value`` as an int (integral floats accepted; bools, NaN and fractions refused)."""
    if isinstance(value, bool):
        raise UserInputError(f"{name} must be an integer; got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{name} must be an integer; got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise UserInputError(f"{name} must be an integer; got {value!r}")
    return int(f)


def first_line(error: BaseException) -> str:
    """The first line of an error message (the class name if it is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def default_command() -> list[str]:
    """The process's command line (program name without its folder)."""
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []


def short(v: Any) -> str:
    """``v`` as JSON, shortened to about 24 characters for a message."""
    s = json.dumps(v, default=str)
    return s if len(s) <= 24 else s[:10] + "…" + s[-8:]


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars, paths and sets turned into plain JSON values."""
    return json.loads(json.dumps(obj, default=_json_default))
