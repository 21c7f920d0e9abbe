"""Per-image statistics of a uint8 RGB batch: sharpness, brightness, tissue, optical density, stains.

All are pure batched torch functions (any device) returning one value per image:

* ``sharpness``: variance of the Laplacian of the grey image, exactly
  ``cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()``: grey =
  OpenCV's fixed-point ``(9798·R + 19235·G + 3735·B + 2¹⁴) >> 15`` (bit-exact with OpenCV 5 on all
  2²⁴ colours), Laplacian = the 3×3 kernel ``[[0, 1, 0], [1, −4, 1], [0, 1, 0]]`` (OpenCV's
  ``ksize=1``) with ``BORDER_REFLECT_101`` borders, population variance (``ddof = 0``) from exact
  integer sums. At the image's own size: resizing changes it (Pech-Pacheco et al. 2000);
* ``brightness``: mean of that grey image (0..255);
* ``tissue_fraction``: share of pixels with OpenCV Lab lightness ``L/255 < 0.8`` (staintools'
  tissue mask, :func:`shiftbench.shifts.stain.tissue_mask`);
* ``mean_od``: mean optical density over all pixels and the three channels,
  ``OD = max(−ln(max(I, 1)/255), 1e−6)``;
* Macenko stain vectors ``h_r, h_g, h_b, e_r, e_g, e_b`` (unit OD vectors) and ``h_p99``,
  ``e_p99``: the 99th percentile over all pixels of each stain's concentration (staintools'
  non-negative lasso; :func:`shiftbench.normalize.stain_statistics`), the quantity Macenko
  normalisation matches. NaN where the image has no usable estimate (``stain_valid`` false:
  fewer than ``min_tissue_pixels`` tissue pixels or near-parallel H and E).

References:
    J. L. Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative
    study", ICPR 2000 (variance of the Laplacian as a focus measure).
    M. Macenko et al., ISBI 2009, doi:10.1109/ISBI.2009.5193250.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shiftbench.normalize import stain_statistics
from shiftbench.shifts.base import check_images
from shiftbench.shifts.stain import optical_density, tissue_mask

__all__ = ["STATISTICS", "cv2_grey", "image_statistics", "laplacian_variance", "one_statistic"]

#: Columns of :func:`image_statistics` (besides ``height``, ``width``, ``n_tissue``,
#: ``stain_valid``), in table order.
STATISTICS = (
    "sharpness",
    "brightness",
    "tissue_fraction",
    "mean_od",
    "h_p99",
    "e_p99",
    "h_r",
    "h_g",
    "h_b",
    "e_r",
    "e_g",
    "e_b",
)

# OpenCV's RGB2Gray<uchar>: 15-bit fixed-point BT.601 luma (imgproc color_rgb.simd.hpp)
_GREY_COEFFS = (9798, 19235, 3735)
_GREY_SHIFT = 15


def cv2_grey(images: torch.Tensor) -> torch.Tensor:
    """``cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)`` of a uint8 ``[B, 3, H, W]`` batch → uint8 ``[B, H, W]``."""
    x = images.to(torch.int32)
    s = x[:, 0] * _GREY_COEFFS[0] + x[:, 1] * _GREY_COEFFS[1] + x[:, 2] * _GREY_COEFFS[2]
    return ((s + (1 << (_GREY_SHIFT - 1))) >> _GREY_SHIFT).to(torch.uint8)


def laplacian_variance(grey: torch.Tensor) -> torch.Tensor:
    """``cv2.Laplacian(grey, cv2.CV_64F).var()`` per image: uint8 ``[B, H, W]`` → float64 ``[B]``.

    ``Δ = up + down + left + right − 4·centre`` on a ``BORDER_REFLECT_101`` padding (torch's
    ``reflect``); variance ``(Σ Δ² − (Σ Δ)² / n) / n`` from exact int64 sums. Images smaller than
    2×2 have no reflected neighbour: NaN.
    """
    b, h, w = grey.shape
    if h < 2 or w < 2:
        return torch.full((b,), float("nan"), dtype=torch.float64, device=grey.device)
    p = F.pad(grey[:, None].to(torch.float32), (1, 1, 1, 1), mode="reflect")[:, 0]
    p = p.to(torch.int32)
    lap = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * p[:, 1:-1, 1:-1]
    flat = lap.reshape(b, -1).to(torch.int64)
    n = flat.shape[1]
    s1 = flat.sum(1)
    s2 = (flat * flat).sum(1)
    return (s2.double() - s1.double() * s1.double() / n) / n


def image_statistics(
    images: torch.Tensor, *, min_tissue_pixels: int = 1000
) -> dict[str, torch.Tensor]:
    """Every statistic of the module docstring for a uint8 ``[B, 3, H, W]`` RGB batch.

    Args:
        images: uint8 RGB batch, any device.
        min_tissue_pixels: fewer tissue pixels → no stain estimate (NaN stain columns).

    Returns:
        ``{column: float64/int64/bool tensor [B]}`` with the columns of :data:`STATISTICS` plus
        ``height``, ``width``, ``n_tissue`` and ``stain_valid``.
    """
    check_images(images)
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 here; got {images.dtype}")
    b, _, h, w = images.shape
    grey = cv2_grey(images)
    stains = stain_statistics(images, min_tissue_pixels=min_tissue_pixels)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=images.device)
    vec = torch.where(stains.valid[:, None, None], stains.stain_matrix.double(), nan)
    out = {
        "sharpness": laplacian_variance(grey),
        "brightness": grey.reshape(b, -1).double().mean(1),
        "tissue_fraction": tissue_mask(images).reshape(b, -1).double().mean(1),
        "mean_od": optical_density(images).reshape(b, -1).double().mean(1),
        "h_p99": stains.max_concentrations[:, 0].double(),
        "e_p99": stains.max_concentrations[:, 1].double(),
    }
    for k, stain in enumerate("he"):
        for c, channel in enumerate("rgb"):
            out[f"{stain}_{channel}"] = vec[:, k, c]
    out["height"] = torch.full((b,), h, dtype=torch.int64)
    out["width"] = torch.full((b,), w, dtype=torch.int64)
    out["n_tissue"] = stains.n_tissue
    out["stain_valid"] = stains.valid
    return out


def one_statistic(
    images: torch.Tensor, name: str, *, min_tissue_pixels: int = 1000
) -> torch.Tensor:
    """Only statistic ``name`` (``sharpness``, ``h_p99`` or ``e_p99``) of a uint8 batch → ``[B]``.

    Same values as the column of :func:`image_statistics`, without computing the others (the
    equivalent-shift sweeps need one statistic per shifted batch).
    """
    if name == "sharpness":
        return laplacian_variance(cv2_grey(images))
    if name in ("h_p99", "e_p99"):
        stains = stain_statistics(images, min_tissue_pixels=min_tissue_pixels)
        top = stains.max_concentrations[:, 0 if name == "h_p99" else 1].double()
        return top
    raise ValueError(f"one_statistic: unknown statistic {name!r}")
