"""``cutout``: paint ``k`` square patches of one colour at random positions (artefacts, pen marks).

The paper (Pohjonen et al. 2022, §2.3.1) builds its spurious-correlation data set by placing 16
black 8×8 squares on images; this shift sweeps the number of squares ``k``.

Formula, for image ``i`` with patches at top-left corners ``(t_j, l_j)``, ``j < k``::

    out[c, y, x] = fill[c]   if ∃ j < k: t_j ≤ y < t_j + s and l_j ≤ x < l_j + s
                   x[c, y, x] otherwise

Positions: ``t_j`` uniform on ``0..H − s`` and ``l_j`` uniform on ``0..W − s`` (every patch lies
fully inside the image; patches may overlap, as in the paper). They are drawn by
:func:`cutout_boxes` from the per-sample generator ``ctx.generator(i, None)``: that generator is
shared by all magnitudes of a sweep (its seed does not include the magnitude), and draws come in
fixed blocks of :data:`BLOCK` patches, so the patches at ``k`` are the first ``k`` of those at any
larger ``k``. The sweep is therefore nested and the change of each image grows monotonically
with ``k``. Same seed + same sample id → same patches, whatever the batch size or order.

References:
    DeVries T., Taylor G. W., "Improved regularization of convolutional neural networks with
    cutout", arXiv:1708.04552 (2017).
    J. Pohjonen et al., the spectral decoupling paper, iScience 2022, §2.3.1.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from shiftbench.errors import UserInputError
from shiftbench.shifts.base import Shift, SweepContext

__all__ = ["BLOCK", "Cutout", "apply_cutout", "cutout_boxes"]

BLOCK = 16  # patches drawn per generator call; fixed so that draws are nested across k
MAX_PATCHES = 1024  # > 784, the number of disjoint 8×8 patches that tile a 224×224 image

Fill = int | Sequence[int]


def _fill_rgb(fill: Any) -> tuple[int, int, int]:
    """``fill`` as an RGB triple of ints in 0..255 (an int means grey ``(f, f, f)``)."""
    values = [fill] * 3 if _is_int(fill) else list(fill) if _is_seq(fill) else []
    if len(values) != 3 or not all(_is_int(v) and 0 <= v <= 255 for v in values):
        raise UserInputError(
            f"fill must be an int in 0..255 or an RGB triple of such ints; got {fill!r}"
        )
    return (int(values[0]), int(values[1]), int(values[2]))


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_seq(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str | bytes)


def _check_patch(patch_size: Any, height: int, width: int) -> int:
    if not _is_int(patch_size) or patch_size < 1:
        raise UserInputError(f"patch_size must be a positive int (pixels); got {patch_size!r}")
    patch_size = int(patch_size)
    if patch_size > height or patch_size > width:
        raise UserInputError(
            f"patch_size {patch_size} does not fit in {height}×{width} images; "
            f"use patch_size ≤ {min(height, width)}"
        )
    return patch_size


def cutout_boxes(
    n_patches: int,
    height: int,
    width: int,
    patch_size: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Top-left corners of ``n_patches`` square patches that lie fully inside an image.

    Draws blocks of :data:`BLOCK` patches (rows uniform on ``0..height − patch_size``, then
    columns uniform on ``0..width − patch_size``) from ``generator`` until ``n_patches`` are
    drawn, so the first ``k`` boxes are the same for any ``n_patches ≥ k`` given the same
    generator state.

    Args:
        n_patches: number of patches ``k ≥ 0``.
        height: image height in pixels.
        width: image width in pixels.
        patch_size: patch side ``s`` in pixels (``s ≤ height, width``).
        generator: CPU ``torch.Generator`` (e.g. ``SweepContext.generator(i, None)``); required:
            the global RNG is never used.

    Returns:
        int64 CPU tensor ``[n_patches, 2]`` of ``(top, left)`` pixel coordinates.
    """
    if not isinstance(generator, torch.Generator):
        raise UserInputError(
            "cutout_boxes needs a torch.Generator, e.g. torch.Generator().manual_seed(0) "
            f"(shiftbench never draws from the global RNG); got {generator!r}"
        )
    if not isinstance(n_patches, int) or n_patches < 0:
        raise UserInputError(f"n_patches must be a non-negative int; got {n_patches!r}")
    s = _check_patch(patch_size, height, width)
    blocks = []
    for _ in range(-(-n_patches // BLOCK)):
        tops = torch.randint(0, height - s + 1, (BLOCK,), generator=generator)
        lefts = torch.randint(0, width - s + 1, (BLOCK,), generator=generator)
        blocks.append(torch.stack([tops, lefts], dim=1))
    if not blocks:
        return torch.zeros(0, 2, dtype=torch.int64)
    return torch.cat(blocks)[:n_patches]


def apply_cutout(
    images: torch.Tensor, boxes: torch.Tensor, patch_size: int = 8, fill: Fill = 0
) -> torch.Tensor:
    """Paint ``patch_size``² squares of colour ``fill`` at ``boxes`` on a uint8 batch.

    Args:
        images: uint8 ``[B, C, H, W]`` on any device (``C = 3`` for an RGB ``fill``). Not
            modified.
        boxes: int ``[B, k, 2]`` top-left ``(top, left)`` per image and patch (any device), e.g.
            ``torch.stack([cutout_boxes(16, H, W, 8, g_i) for g_i in generators])``.
        patch_size: patch side in pixels.
        fill: grey level 0..255 or RGB triple.

    Returns:
        A new uint8 tensor of the input's shape on its device.

    Raises:
        UserInputError: boxes of the wrong shape or reaching outside the image, bad fill.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise UserInputError("apply_cutout expects a uint8 tensor [B, C, H, W]")
    b, c, h, w = images.shape
    s = _check_patch(patch_size, h, w)
    rgb = _fill_rgb(fill)
    if c != 3 and len(set(rgb)) != 1:
        raise UserInputError(f"an RGB fill needs 3-channel images; got {c} channels")
    if boxes.ndim != 3 or boxes.shape[0] != b or boxes.shape[2] != 2:
        raise UserInputError(f"boxes must have shape [B={b}, k, 2]; got {tuple(boxes.shape)}")
    dev = images.device
    boxes = boxes.to(device=dev, dtype=torch.int64)
    if boxes.numel() and (
        int(boxes.min()) < 0 or int(boxes[..., 0].max()) > h - s or int(boxes[..., 1].max()) > w - s
    ):
        raise UserInputError(f"boxes reach outside the {h}×{w} images for patch_size {s}")
    offsets = torch.arange(s, device=dev)
    k = boxes.shape[1]
    rows = (boxes[..., 0, None] + offsets).view(b, k, s, 1).expand(b, k, s, s)
    cols = (boxes[..., 1, None] + offsets).view(b, k, 1, s).expand(b, k, s, s)
    image = torch.arange(b, device=dev).view(b, 1, 1, 1).expand(b, k, s, s)
    colour = torch.tensor(rgb if c == 3 else rgb[:1] * c, dtype=torch.uint8, device=dev)
    out = images.clone()
    # Assign through a channels-last view: one index per painted pixel, all channels at once.
    # Overlapping patches write the same colour twice, which is harmless.
    out.permute(0, 2, 3, 1)[image, rows, cols] = colour
    return out


@dataclass
class _CutoutState:
    images: torch.Tensor
    boxes: torch.Tensor  # [B, K, 2] on CPU, K a multiple of BLOCK (grown on demand)


class Cutout(Shift):
    """``k`` square patches of one colour at random positions (the paper's cutout artefact).

    Magnitude: number of patches ``k`` (integer, 0..1024); ``k = 0`` is the identity. Default
    sweep ``k = 0, 1, 2, 4, 8, 16`` (the paper's data set uses 16 patches of 8×8 px). Patches at
    ``k`` are a prefix of those at larger ``k`` (one generator per sample for the whole sweep), so
    each image's change grows with ``k``; see the module docstring.

    Args:
        patch_size: patch side in pixels (default 8).
        fill: grey level 0..255 or RGB triple (default 0, black).
    """

    name: ClassVar[str] = "cutout"
    magnitudes: ClassVar[tuple[float, ...]] = (0, 1, 2, 4, 8, 16)
    identity: ClassVar[float] = 0
    units: ClassVar[str] = "patches"
    description: ClassVar[str] = "k square patches of one colour at random positions"
    valid_range: ClassVar[tuple[float, float]] = (0, MAX_PATCHES)
    integer_magnitude: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True

    def __init__(self, patch_size: int = 8, fill: Fill = 0) -> None:
        if not _is_int(patch_size) or patch_size < 1:
            raise UserInputError(f"patch_size must be a positive int (pixels); got {patch_size!r}")
        self.patch_size = int(patch_size)
        rgb = _fill_rgb(fill)
        self.fill: Fill = rgb[0] if _is_int(fill) else rgb

    def params(self) -> dict[str, Any]:
        return {"patch_size": self.patch_size, "fill": self.fill}

    def prepare(self, images: torch.Tensor, ctx: SweepContext) -> _CutoutState:
        _check_patch(self.patch_size, images.shape[-2], images.shape[-1])
        return _CutoutState(images, torch.zeros(images.shape[0], 0, 2, dtype=torch.int64))

    def _boxes(self, state: _CutoutState, k: int, ctx: SweepContext) -> torch.Tensor:
        if state.boxes.shape[1] < k:
            # Redrawing from fresh per-sample generators gives the same prefix, so growing the
            # cache is the same as having drawn more patches from the start.
            n = -(-k // BLOCK) * BLOCK
            b, _, h, w = state.images.shape
            per_image = [
                cutout_boxes(n, h, w, self.patch_size, ctx.generator(i, None)) for i in range(b)
            ]
            state.boxes = (
                torch.stack(per_image) if per_image else torch.zeros(0, n, 2, dtype=torch.int64)
            )
        return state.boxes[:, :k]

    def apply(self, state: _CutoutState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        boxes = self._boxes(state, int(magnitude), ctx)
        return apply_cutout(state.images, boxes, self.patch_size, self.fill)
