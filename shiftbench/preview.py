"""Preview strips: one image under every magnitude of a shift, side by side, labelled.

Python API behind ``shiftbench preview``::

    from shiftbench.preview import preview_strip, read_image, write_image
    strip = preview_strip("blur", read_image("tile.png"), magnitudes=[1, 5, 20])
    write_image("strip.png", strip)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shiftbench.errors import UserInputError

__all__ = ["preview", "preview_strip", "read_image", "write_image"]

GAP = 4  # white pixels between panels
BACKGROUND = 255
_WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``H×W×3`` uint8 RGB with the data loader's decoder.

    :func:`shiftbench.data.decode_image` (Pillow, then OpenCV for formats Pillow does not
    identify; grey, palette, RGBA and 16-bit files are converted the same way), so a file gives
    the same pixels here as in ``shiftbench run``.

    Raises:
        UserInputError: the file does not exist or is not a readable image.
    """
    from shiftbench.data import UnreadableImage, decode_image

    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"image {str(p)!r} does not exist (check the path)")
    try:
        return decode_image(p)
    except UnreadableImage as e:
        raise UserInputError(
            f"cannot read {str(p)!r} as an image ({e.reason}); use PNG, JPEG, TIFF or another "
            "format Pillow or OpenCV reads"
        ) from None


def write_image(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write ``H×W×3`` uint8 RGB atomically (temp file in the same folder, then ``os.replace``).

    The format follows the extension (.png, .jpg, .webp, .tif, .bmp). Parent folders are created.

    Raises:
        UserInputError: unsupported extension.
    """
    import cv2

    p = Path(path)
    ext = _check_extension(p)
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 encodes every uint8 RGB array in these formats
        raise UserInputError(f"cannot encode the image as {ext}")
    p.parent.mkdir(parents=True, exist_ok=True)
    # The run directory's one atomic-write helper: honours the umask without changing it.
    from shiftbench.run.rundir import atomic_write_bytes

    atomic_write_bytes(p, buf.tobytes())
    return p


def _check_extension(p: Path) -> str:
    ext = p.suffix.lower()
    if ext not in _WRITE_EXTENSIONS:
        raise UserInputError(
            f"cannot write {str(p)!r}: unsupported extension {ext or '(none)'!r}; "
            f"use one of {', '.join(_WRITE_EXTENSIONS)}"
        )
    return ext


@lru_cache(maxsize=32)
def _font(size: int) -> Any:
    """DejaVu Sans from matplotlib's data (renders α, ×, … unlike cv2.putText); PIL's default
    font if that file is missing."""
    from PIL import ImageFont

    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except (ImportError, OSError):  # pragma: no cover - matplotlib is a dependency
        return ImageFont.load_default(size)


def _fit(draw: Any, text: str, width: int, size: int, min_size: int = 8) -> tuple[str, Any]:
    """Largest font (≤ size) for which ``text`` fits ``width``; truncate with … at min_size."""
    for s in range(size, min_size - 1, -1):
        font = _font(s)
        if draw.textlength(text, font=font) <= width:
            return text, font
    font = _font(min_size)
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…", font


def _label_band(lines: list[str], width: int, sizes: list[int]) -> np.ndarray:
    """White ``band_h×width×3`` image with ``lines`` centred, one per row."""
    from PIL import Image, ImageDraw

    pad = 3
    heights = [int(s * 1.25) for s in sizes]
    band = Image.new("RGB", (width, sum(heights) + 2 * pad), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(band)
    y = pad
    for line, size, h in zip(lines, sizes, heights, strict=True):
        text, font = _fit(draw, line, width - 4, size)
        x = (width - draw.textlength(text, font=font)) / 2
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
        y += h
    return np.asarray(band)


def _magnitude_text(m: float) -> str:
    return format(float(m), "g")


def preview_strip(
    shift_name: str,
    image: np.ndarray | str | os.PathLike[str],
    magnitudes: Iterable[float] | None = None,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    panel_size: int | None = None,
    labels: bool = True,
) -> np.ndarray:
    """``image`` shifted at every magnitude, side by side, each panel labelled.

    Args:
        shift_name: a registered shift (see :func:`shiftbench.list_shifts`; load plugins first).
        image: ``H×W×3`` uint8 RGB array, or a path read with :func:`read_image`.
        magnitudes: default: the shift's default sweep. Validated by the shift.
        seed: base seed for stochastic shifts (the image is sample id 0).
        params: keyword parameters of the shift (e.g. ``{"mode": "kernel"}`` for sharpen).
        panel_size: if given, each shifted panel is resized (after shifting, with area
            interpolation) so that its longer side has this many pixels: keeps strips small.
        labels: draw the magnitude and the shift's units under each panel.

    Returns:
        ``H'×W'×3`` uint8 RGB strip: panels in the given order with :data:`GAP` white pixels
        between them; below each, the magnitude (first line) and the units (second line).

    Raises:
        UserInputError: unknown shift, bad parameters, invalid magnitude, unreadable image.
    """
    import cv2

    from shiftbench.registry import get_shift

    shift = get_shift(shift_name, **dict(params or {}))
    if not isinstance(image, np.ndarray):
        image = read_image(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UserInputError(
            f"image must be an H×W×3 uint8 RGB array; got {image.dtype} {image.shape}"
        )
    if panel_size is not None and panel_size < 8:
        raise UserInputError(f"panel_size must be at least 8 pixels; got {panel_size}")
    batch = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].contiguous()
    mags = list(magnitudes) if magnitudes is not None else list(shift.magnitudes)
    panels: list[np.ndarray] = []
    for m, out in shift.sweep(batch, mags, seed=seed, sample_ids=[0]):
        panel = out[0].permute(1, 2, 0).cpu().numpy()
        if panel_size is not None:
            h, w = panel.shape[:2]
            scale = panel_size / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            panel = cv2.resize(panel, size, interpolation=cv2.INTER_AREA)
        if labels:
            font_size = int(np.clip(panel.shape[1] // 9, 9, 20))
            band = _label_band(
                [_magnitude_text(m), shift.units],
                panel.shape[1],
                [font_size, max(8, round(font_size * 0.75))],
            )
            panel = np.concatenate([panel, band], axis=0)
        panels.append(panel)
    height = max(p.shape[0] for p in panels)
    gap = np.full((height, GAP, 3), BACKGROUND, np.uint8)
    columns: list[np.ndarray] = []
    for i, p in enumerate(panels):
        if p.shape[0] < height:
            p = np.concatenate(
                [p, np.full((height - p.shape[0], *p.shape[1:]), BACKGROUND, np.uint8)]
            )
        columns.extend([gap, p] if i else [p])
    return np.concatenate(columns, axis=1)


def preview(
    shift_name: str,
    image: str | os.PathLike[str],
    out: str | os.PathLike[str],
    magnitudes: Iterable[float] | None = None,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    panel_size: int | None = None,
) -> Path:
    """Write :func:`preview_strip` of the image file ``image`` to ``out`` (atomically).

    Mirrors ``shiftbench preview``. The output extension is checked before any work is done.
    """
    out_path = Path(out)
    _check_extension(out_path)
    strip = preview_strip(
        shift_name, image, magnitudes, seed=seed, params=params, panel_size=panel_size
    )
    return write_image(out_path, strip)
