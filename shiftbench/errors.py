"""Exceptions that mean "the user asked for something wrong", as opposed to a bug.

The CLI turns any :class:`ShiftbenchError` into one line on stderr and a non-zero exit code,
without a traceback. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ShiftbenchError(Exception):
    """Base class of every user-facing error (bad input, bad arguments, bad files)."""


class UserInputError(ShiftbenchError, ValueError):
    """A value given by the user is invalid (out-of-range magnitude, wrong dtype, unknown name).

    Subclasses ``ValueError`` so Python callers can catch it the ordinary way.
    """


class CheckpointError(ShiftbenchError):
    """A checkpoint cannot be loaded as asked (unknown format, arch mismatch, untrusted pickle)."""


class DataError(ShiftbenchError):
    """A data set cannot be read as asked (missing folder, bad manifest, labels out of range)."""


class RunError(ShiftbenchError):
    """A run cannot proceed (non-finite logits, output directory holds a different run)."""
