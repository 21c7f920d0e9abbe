"""Explicit randomness: seeds derived from keys, CPU generators built from them.

shiftbench never draws from (or reseeds) a global RNG on behalf of its caller. Every random draw
comes from a ``torch.Generator`` seeded with :func:`derive_seed` of a key that says what the draw
is for (run seed, sample id, shift name, magnitude; or training seed, epoch, purpose), so a
result does not depend on batch size, batch order, device or what ran before.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "generator_for"]


def derive_seed(seed: int, sample_id: int, shift: str, magnitude: float | None = None) -> int:
    """A 63-bit seed from ``(seed, sample_id, shift, magnitude)``, stable across runs and machines.

    ``seed' = blake2b("seed|sample_id|shift|magnitude", 8 bytes) >> 1`` (little-endian), with the
    magnitude written as ``format(m, ".12g")`` (so 4 and 4.0 give the same seed).
    ``magnitude=None`` gives a key shared by all magnitudes of a sweep (used by shifts whose
    random draws should be nested across magnitudes, e.g. cutout positions).
    """
    mag = "sweep" if magnitude is None else format(float(magnitude), ".12g")
    key = f"{int(seed)}|{int(sample_id)}|{shift}|{mag}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def generator_for(
    seed: int, sample_id: int, shift: str, magnitude: float | None = None
) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of the same key."""
    g = torch.Generator(device="cpu")
    g.manual_seed(derive_seed(seed, sample_id, shift, magnitude))
    return g
