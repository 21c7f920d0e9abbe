"""Macenko stain normalisation to a target image, batched in torch (the mitigation baseline).

Same algorithm as staintools' ``StainNormalizer("macenko")`` (and, up to its different defaults,
torchstain's ``MacenkoNormalizer``), built on shiftbench's batched Macenko estimate
(:func:`shiftbench.shifts.stain.macenko_stain_matrix`, staintools' extractor to cosine 1 − 5e−9):

* **fit** (once, on the target): stain matrix ``S_t`` (rows H, E), concentrations ``C_t`` of
  *all* its pixels (:func:`~shiftbench.stain_concentrations.lasso_concentrations`, staintools'
  non-negative lasso, λ = 0.01), and ``m_t`` = the 99th percentile of each stain's concentration;
* **transform** (per image): ``S``, ``C`` and ``m`` of the image the same way, then
  ``C' = C · m_t / m`` (per stain) and
  ``I' = clip(⌊255 · exp(−C'ᵀ S_t)⌋, 0, 255)`` (truncation as staintools' ``astype(uint8)``).
  Every pixel is reconstructed, background included (it comes out near white).

Images without a usable estimate (fewer than ``min_tissue_pixels`` tissue pixels, near-parallel
H and E, or a zero 99th percentile) are returned unchanged and counted, where staintools raises.

``concentrations="least_squares"`` uses unconstrained least squares (torchstain's choice) instead
of the lasso. See docs/how-to/compare-against-stain-normalisation.md for the parity measured
against staintools and the speed.

References:
    M. Macenko et al., "A method for normalizing histology slides for quantitative analysis",
    ISBI 2009, doi:10.1109/ISBI.2009.5193250.
    P. Byfield, staintools 2.1.2 (``StainNormalizer``, ``get_concentrations``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from shiftbench.errors import UserInputError
from shiftbench.shifts.base import check_images
from shiftbench.shifts.stain import macenko_stain_matrix, optical_density
from shiftbench.stain_concentrations import (
    LASSO_REGULARIZER,
    lasso_concentrations,
    least_squares_concentrations,
    percentile_per_image,
)

__all__ = [
    "MacenkoTarget",
    "NormalizedBatch",
    "StainNormalizer",
    "fit_macenko_target",
    "macenko_normalize",
    "stain_statistics",
]

Concentrations = Literal["lasso", "least_squares"]
_CONCENTRATIONS = ("lasso", "least_squares")
#: Percentile of the per-pixel concentrations used as each stain's "maximum" (staintools: 99).
MAX_PERCENTILE = 99.0
_LOG2E = 1.0 / math.log(2.0)


@dataclass(frozen=True)
class MacenkoTarget:
    """What normalisation maps every image to.

    Attributes:
        stain_matrix: float32 ``[2, 3]``: unit OD vectors, row 0 haematoxylin, row 1 eosin.
        max_concentrations: float32 ``[2]``: 99th percentile of the H and E concentrations.
        source: where it came from (a file path, or ``"array"``).
    """

    stain_matrix: torch.Tensor
    max_concentrations: torch.Tensor
    source: str = "array"


@dataclass
class NormalizedBatch:
    """Result of :func:`macenko_normalize`.

    Attributes:
        images: uint8 ``[B, 3, H, W]``.
        passthrough: bool ``[B]``: returned unchanged (no usable stain estimate).
    """

    images: torch.Tensor
    passthrough: torch.Tensor

    @property
    def n_passthrough(self) -> int:
        """Number of images returned unchanged."""
        return int(self.passthrough.sum())


@dataclass
class StainStatistics:
    """Macenko statistics of a batch (see :func:`stain_statistics`).

    Attributes:
        stain_matrix: float32 ``[B, 2, 3]`` (zero rows where not valid).
        max_concentrations: float32 ``[B, 2]``: 99th percentile of H and E over all pixels
            (NaN where not valid).
        concentrations: float32 ``[B, 2, H·W]`` of every pixel.
        valid: bool ``[B]``.
        n_tissue: int64 ``[B]``.
    """

    stain_matrix: torch.Tensor
    max_concentrations: torch.Tensor
    concentrations: torch.Tensor
    valid: torch.Tensor
    n_tissue: torch.Tensor


def _check_options(concentrations: str, regularizer: float) -> None:
    if concentrations not in _CONCENTRATIONS:
        raise UserInputError(
            f"concentrations must be one of {', '.join(_CONCENTRATIONS)}; got {concentrations!r}"
        )
    if not regularizer >= 0:
        raise UserInputError(f"regularizer must be >= 0; got {regularizer}")


def stain_statistics(
    images: torch.Tensor,
    *,
    concentrations: Concentrations = "lasso",
    regularizer: float = LASSO_REGULARIZER,
    min_tissue_pixels: int = 1000,
    luminosity_threshold: float = 0.8,
    angular_percentile: float = 99.0,
) -> StainStatistics:
    """Macenko stain matrix, per-pixel concentrations and their 99th percentiles, per image.

    Args:
        images: uint8 ``[B, 3, H, W]`` RGB, any device.
        concentrations: ``"lasso"`` (staintools) or ``"least_squares"`` (torchstain).
        regularizer: lasso ``λ``.
        min_tissue_pixels, luminosity_threshold, angular_percentile: as
            :func:`shiftbench.shifts.stain.macenko_stain_matrix`.

    Returns:
        :class:`StainStatistics`.
    """
    _check_options(concentrations, regularizer)
    est = macenko_stain_matrix(
        images,
        min_tissue_pixels=min_tissue_pixels,
        luminosity_threshold=luminosity_threshold,
        angular_percentile=angular_percentile,
    )
    b, _, h, w = images.shape
    od = optical_density(images).view(b, 3, h * w)
    if concentrations == "lasso":
        conc = lasso_concentrations(od, est.stain_matrix, regularizer)
    else:
        conc = least_squares_concentrations(od, est.stain_matrix)
    if h * w:
        top = percentile_per_image(conc, MAX_PERCENTILE)
    else:
        top = torch.zeros(b, 2, device=images.device)
    top = torch.where(est.valid[:, None], top, torch.full_like(top, float("nan")))
    return StainStatistics(est.stain_matrix, top, conc, est.valid, est.n_tissue)


def fit_macenko_target(
    image: torch.Tensor | np.ndarray,
    *,
    concentrations: Concentrations = "lasso",
    regularizer: float = LASSO_REGULARIZER,
    min_tissue_pixels: int = 1000,
    source: str = "array",
) -> MacenkoTarget:
    """Stain matrix and 99th-percentile concentrations of one target image.

    Args:
        image: uint8 RGB, ``[H, W, 3]`` (numpy/torch) or ``[3, H, W]`` / ``[1, 3, H, W]`` (torch).
        concentrations, regularizer, min_tissue_pixels: as :func:`stain_statistics`.
        source: name recorded in the target (e.g. the file path) and used in errors.

    Raises:
        UserInputError: the target has too little tissue (or degenerate stains) for an estimate.
    """
    x = _as_batch(image)
    stats = stain_statistics(
        x,
        concentrations=concentrations,
        regularizer=regularizer,
        min_tissue_pixels=min_tissue_pixels,
    )
    top = stats.max_concentrations[0]
    if not bool(stats.valid[0]) or not bool((top > 0).all()):
        raise UserInputError(
            f"normalisation target {source} has no usable tissue ({int(stats.n_tissue[0])} tissue "
            f"pixels, need >= {min_tissue_pixels} with distinct H and E stains); choose an H&E "
            "image with stained tissue"
        )
    return MacenkoTarget(stats.stain_matrix[0].float().cpu(), top.float().cpu(), source)


def _as_batch(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(image)) if isinstance(image, np.ndarray) else image
    if x.ndim == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
        x = x.permute(2, 0, 1)
    if x.ndim == 3:
        x = x[None]
    check_images(x, "target image")
    if x.dtype != torch.uint8:
        raise UserInputError(f"target image must be uint8 RGB; got dtype {x.dtype}")
    return x.contiguous()


def macenko_normalize(
    images: torch.Tensor,
    target: MacenkoTarget,
    *,
    concentrations: Concentrations = "lasso",
    regularizer: float = LASSO_REGULARIZER,
    min_tissue_pixels: int = 1000,
    chunk_size: int = 16,
) -> NormalizedBatch:
    """Normalise a batch to ``target`` (pure: the input is not modified).

    ``I' = clip(⌊255 · exp(−(C · m_t / m)ᵀ S_t)⌋, 0, 255)`` per pixel (module docstring); images
    without a usable estimate are copied unchanged and flagged in ``passthrough``.

    Args:
        images: uint8 ``[B, 3, H, W]`` RGB, any device.
        target: from :func:`fit_macenko_target`.
        concentrations, regularizer, min_tissue_pixels: as :func:`stain_statistics` (use the
            settings the target was fitted with).
        chunk_size: images per step (small chunks stay in cache; results do not depend on it).

    Returns:
        :class:`NormalizedBatch`.
    """
    check_images(images)
    if images.dtype != torch.uint8:
        raise UserInputError(f"images must be uint8 (0..255) here; got dtype {images.dtype}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise UserInputError(f"chunk_size must be a whole number >= 1; got {chunk_size}")
    out = images.clone()
    passthrough = torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
    s_t = target.stain_matrix.to(images.device, torch.float32)
    m_t = target.max_concentrations.to(images.device, torch.float32)
    for start in range(0, images.shape[0], int(chunk_size)):
        chunk = images[start : start + int(chunk_size)]
        stats = stain_statistics(
            chunk,
            concentrations=concentrations,
            regularizer=regularizer,
            min_tissue_pixels=min_tissue_pixels,
        )
        m = stats.max_concentrations
        ok = stats.valid & (m > 0).all(dim=1) & torch.isfinite(m).all(dim=1)
        if not bool(ok.any()):
            continue
        scale = torch.where(ok[:, None], m_t / torch.where(ok[:, None], m, 1.0), 0.0)
        # −log₂(e)·OD' then 2^(·): torch's exp2 is ~4× faster than exp on CPU
        mix = (s_t * -_LOG2E).T.expand(chunk.shape[0], 3, 2)  # [b, 3, 2]: −log₂e · S_tᵀ
        od = torch.bmm(mix, stats.concentrations * scale[:, :, None])  # [b, 3, N]
        rgb = od.exp2_().mul_(255.0).floor_().clamp_(0, 255).to(torch.uint8)
        rgb = rgb.view(chunk.shape)
        idx = ok.nonzero().flatten()
        out[start + idx] = rgb[idx]
        passthrough[start + idx] = False
    return NormalizedBatch(out, passthrough)


class StainNormalizer:
    """Macenko normaliser fitted on one target image (staintools-like ``fit`` / ``transform``).

    ``StainNormalizer.from_file("target.png")(images)`` normalises a uint8 NCHW batch and returns
    a :class:`NormalizedBatch` (images + which were passed through). ``describe()`` gives the
    JSON-able settings a run records as its evaluation condition.

    Args:
        concentrations: ``"lasso"`` (staintools, default) or ``"least_squares"`` (torchstain).
        regularizer: lasso ``λ`` (0.01).
        min_tissue_pixels: fewer tissue pixels → pass through unchanged (default 1000).
    """

    method = "macenko"

    def __init__(
        self,
        *,
        concentrations: Concentrations = "lasso",
        regularizer: float = LASSO_REGULARIZER,
        min_tissue_pixels: int = 1000,
    ) -> None:
        _check_options(concentrations, regularizer)
        if int(min_tissue_pixels) != min_tissue_pixels or min_tissue_pixels < 3:
            raise UserInputError(
                f"min_tissue_pixels must be a whole number >= 3; got {min_tissue_pixels}"
            )
        self.concentrations: Concentrations = concentrations
        self.regularizer = float(regularizer)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.target: MacenkoTarget | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> StainNormalizer:
        """A normaliser fitted on the image file ``path`` (PNG, JPEG, TIFF, …)."""
        return cls(**options).fit(path)

    def fit(self, target: str | os.PathLike[str] | np.ndarray | torch.Tensor) -> StainNormalizer:
        """Fit on a target image (file path, or uint8 RGB array ``[H, W, 3]``); returns self."""
        if isinstance(target, (str, os.PathLike)):
            from shiftbench.data import UnreadableImage, decode_image

            path = Path(target)
            try:
                image = decode_image(path)
            except UnreadableImage as e:
                raise UserInputError(f"normalisation target: {e}") from None
            source = str(path)
        else:
            image, source = target, "array"
        self.target = fit_macenko_target(
            image,
            concentrations=self.concentrations,
            regularizer=self.regularizer,
            min_tissue_pixels=self.min_tissue_pixels,
            source=source,
        )
        return self

    def transform(self, images: torch.Tensor) -> NormalizedBatch:
        """Normalise a uint8 ``[B, 3, H, W]`` batch (see :func:`macenko_normalize`)."""
        if self.target is None:
            raise UserInputError("StainNormalizer is not fitted: call fit(target) first")
        return macenko_normalize(
            images,
            self.target,
            concentrations=self.concentrations,
            regularizer=self.regularizer,
            min_tissue_pixels=self.min_tissue_pixels,
        )

    __call__ = transform

    def describe(self) -> dict[str, Any]:
        """Settings and fitted target, JSON-able (for a run manifest)."""
        t = self.target
        return {
            "method": self.method,
            "concentrations": self.concentrations,
            "regularizer": self.regularizer,
            "min_tissue_pixels": self.min_tissue_pixels,
            "target": None if t is None else t.source,
            "target_stain_matrix": None if t is None else t.stain_matrix.tolist(),
            "target_max_concentrations": None if t is None else t.max_concentrations.tolist(),
        }
