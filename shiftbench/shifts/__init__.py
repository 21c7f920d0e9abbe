"""Shift families, one module each. Every module here is imported by the registry on first use."""

from shiftbench.shifts.base import Shift, Sweep, SweepContext, check_images, derive_seed

__all__ = ["Shift", "Sweep", "SweepContext", "check_images", "derive_seed"]
