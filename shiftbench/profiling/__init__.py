"""``shiftbench profile``: where data sets sit on the sharpness and stain axes.

:func:`profile` is the Python API of the command; :mod:`~shiftbench.profiling.statistics`
(per-image statistics), :mod:`~shiftbench.profiling.equivalent` (equivalent shift) and
:mod:`~shiftbench.profiling.render` (figures) are its pure parts.
"""

from __future__ import annotations

from shiftbench.profiling.api import ProfileResult, parse_data_specs, profile

__all__ = ["ProfileResult", "parse_data_specs", "profile"]
