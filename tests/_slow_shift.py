"""A deliberately slow test shift (imported with ``--plugin _slow_shift``).

Used to kill a run mid-sweep at a predictable point. Brightness offset of ``10 · m`` grey levels;
each magnitude sleeps ``SLEEP_S`` seconds so a run of a few batches takes several seconds.
"""

from __future__ import annotations

import time

import torch

from shiftbench.shifts.base import Shift

SLEEP_S = 0.4


class SlowBrightness(Shift):
    name = "slowtest"
    magnitudes = (0.0, 1.0, 2.0)
    identity = 0.0
    units = "tens of grey levels added"
    description = "Test-only: add 10·m grey levels, slowly"
    valid_range = (0.0, 5.0)

    def apply(self, state: torch.Tensor, magnitude: float, ctx) -> torch.Tensor:
        time.sleep(SLEEP_S)
        return (state.to(torch.int16) + int(10 * magnitude)).clamp_(0, 255).to(torch.uint8)
