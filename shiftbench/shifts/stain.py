"""H&E stain intensity shifts: ``haematoxylin`` and ``eosin`` (Macenko stain separation).

Each image is separated into a haematoxylin (H) and an eosin (E) stain with the method of
Macenko et al. (2009), computed exactly as staintools' ``MacenkoStainExtractor`` does, but batched
in torch on the input's device. The shift then keeps a fraction ``f`` (the magnitude) of one stain:

* optical density (OD) per pixel and channel: ``OD = max(−ln(max(I, 1) / 255), 1e−6)``;
* tissue mask: OpenCV's 8-bit CIE-Lab lightness ``L < 255 · 0.8`` (reproduced bit-exactly);
* stain vectors from the tissue pixels: the two leading eigenvectors of the OD covariance (each
  flipped so its red component is ≥ 0), the angle ``φ = atan2(t₂, t₁)`` of every tissue pixel in
  that plane, the 1st and 99th percentiles of ``φ`` (linear interpolation, like
  ``np.percentile``), the two unit vectors at those angles; H is the one with the larger red
  component, E the other;
* concentrations by least squares: ``C = (S Sᵀ)⁻¹ S · OD`` with ``S = [h; e]`` (2 × 3);
* the shift, applied as a change in OD space: ``OD' = OD + (f − 1) · C_s · v_s`` on tissue pixels
  (``s`` = the shifted stain), back to RGB as
  ``I' = clip(⌊Ĩ · exp((1 − f) · C_s · v_s) + ½⌋ − [I = 0], 0, 255)`` with ``Ĩ = max(I, 1)`` (the
  intensity the OD was computed from). The part of OD the two-stain model does not explain is
  kept, so ``f = 1`` returns the input exactly (zeros too) and the output is continuous in
  ``f``; background pixels are never changed.

The per-image decomposition runs once per sweep (:meth:`StainShift.prepare`); each magnitude is
then a few elementwise passes (:meth:`StainShift.apply`). Images with fewer than
``min_tissue_pixels`` tissue pixels, or whose H and E vectors are (nearly) parallel, are returned
unchanged and counted in ``Sweep.report["unchanged"]`` (their ids in
``Sweep.report["unchanged_ids"]``). See docs/reference/shifts/stain.md for the measured parity
with staintools and the speed.

References:
    M. Macenko et al., "A method for normalizing histology slides for quantitative analysis",
    ISBI 2009, doi:10.1109/ISBI.2009.5193250.
    P. Byfield, staintools 2.1.2, ``MacenkoStainExtractor`` (https://github.com/Peter554/StainTools).
    J. Pohjonen et al., "Spectral decoupling for training transferable neural networks in medical
    imaging", iScience 25 (2022) 103767.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from shiftbench.errors import UserInputError
from shiftbench.shifts.base import Shift, SweepContext, check_images

__all__ = [
    "Eosin",
    "Haematoxylin",
    "StainEstimate",
    "StainShift",
    "macenko_stain_matrix",
    "optical_density",
    "stain_concentrations",
    "tissue_mask",
]

#: Sweep of both stain shifts: the fraction of the stain kept, from 1 (identity) down to 0.
STAIN_SWEEP = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)

# OpenCV's 8-bit RGB→Lab path (imgproc/color_lab.cpp, RGB2Lab_b): fixed-point sRGB gamma table
# scaled by 255·2³, luminance Y = descale(R·871 + G·2929 + B·296, 12) (the D65 Y row scaled by
# 2¹²), then L = descale(296 · cbrt_tab[Y] − 1336935, 15). Reproduced here so the tissue mask is
# bit-identical to staintools' cv2-based one (a float re-derivation differs on ~0.1% of colours).
_GAMMA_SHIFT = 3
_LAB_SHIFT = 12
_LAB_SHIFT2 = 15
_Y_COEFFS = (871, 2929, 296)


def _cv2_lab_lightness_by_y_index() -> np.ndarray:
    """L (0..255) of OpenCV's 8-bit Lab conversion as a function of its fixed-point Y index."""
    y_max = 255 * (1 << _GAMMA_SHIFT)
    x = np.arange(y_max + 1, dtype=np.float64) / y_max
    f_y = np.where(x < 0.008856, x * 7.787 + 0.13793103448275862, np.cbrt(x))
    cbrt_tab = np.round((1 << _LAB_SHIFT2) * f_y).astype(np.int64)
    l_scale = (116 * 255 + 50) // 100
    l_shift = -((16 * 255 * (1 << _LAB_SHIFT2) + 50) // 100)
    return (l_scale * cbrt_tab + l_shift + (1 << (_LAB_SHIFT2 - 1))) >> _LAB_SHIFT2


def _srgb_gamma_table() -> np.ndarray:
    """OpenCV's ``sRGBGammaTab_b``: linear sRGB · 255 · 2³, rounded, for each 8-bit value."""
    c = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return np.round(255.0 * (1 << _GAMMA_SHIFT) * lin).astype(np.int64)


def _tissue_sum_threshold(luminosity_threshold: float) -> float:
    """Tissue iff ``Σ_c w_c[I_c] < threshold`` (``w`` from :func:`_lut`); inf if all are tissue.

    staintools keeps pixels with ``L / 255 < luminosity_threshold``. L is non-decreasing in the
    fixed-point Y index, which is non-decreasing in the weighted sum, so the mask is one
    comparison of the (exact, integer-valued) weighted sum.
    """
    lightness = _cv2_lab_lightness_by_y_index()
    tissue = lightness / 255.0 < luminosity_threshold
    first_background = np.flatnonzero(~tissue)
    if first_background.size == 0:
        return math.inf
    y_star = int(first_background[0])
    assert not tissue[y_star:].any(), "Lab lightness must be monotone in Y"
    # (s + 2¹¹) >> 12 >= y*  ⇔  s >= y*·2¹² − 2¹¹
    return float(y_star * (1 << _LAB_SHIFT) - (1 << (_LAB_SHIFT - 1)))


_LUT_CACHE: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]] = {}


def _lut(
    device: torch.device, luminosity_threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Tables indexed by ``I_c + 256·c`` (c = R, G, B channel): OD and luminance weight.

    Returns ``(od_table [768] float32, weight_table [768] float32, channel_offsets [1, 3, 1]
    int32, tissue_sum_threshold)``. Weights are integers < 2²⁴, exact in float32, and so is
    their sum over 3 channels (< 255·2³·2¹²).
    """
    key = (str(device), float(luminosity_threshold))
    hit = _LUT_CACHE.get(key)
    if hit is not None:
        return hit
    v = np.arange(256, dtype=np.float64)
    od = np.maximum(-np.log(np.maximum(v, 1.0) / 255.0), 1e-6)
    gamma = _srgb_gamma_table()
    weights = np.concatenate([gamma * c for c in _Y_COEFFS]).astype(np.float32)
    od_table = torch.tensor(np.tile(od, 3), dtype=torch.float32, device=device)
    weight_table = torch.tensor(weights, dtype=torch.float32, device=device)
    offsets = torch.tensor([0, 256, 512], dtype=torch.int32, device=device).view(1, 3, 1)
    hit = (od_table, weight_table, offsets, _tissue_sum_threshold(luminosity_threshold))
    _LUT_CACHE[key] = hit
    return hit


def _flat(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` → ``[B, 3, H·W]`` (explicit size: also for an empty batch)."""
    return images.reshape(images.shape[0], 3, images.shape[2] * images.shape[3])


def _table_index(images: torch.Tensor, luminosity_threshold: float) -> torch.Tensor:
    """``I_c + 256·c`` as int32 ``[B, 3, N]`` (row of channel ``c`` in the tables of :func:`_lut`)."""
    _, _, offsets, _ = _lut(images.device, luminosity_threshold)
    idx = _flat(images).to(torch.int32)
    return idx.add_(offsets)


def optical_density(images: torch.Tensor) -> torch.Tensor:
    """Optical density of a uint8 RGB batch, as staintools computes it.

    ``OD = max(−ln(max(I, 1) / 255), 1e−6)`` per pixel and channel (zeros count as 1).

    Args:
        images: uint8 ``[B, 3, H, W]``.

    Returns:
        float32 ``[B, 3, H, W]`` on the input's device.
    """
    _check_u8(images)
    od_table, _, _, _ = _lut(images.device, 0.8)
    idx = _table_index(images, 0.8)
    return od_table.index_select(0, idx.view(-1)).view(images.shape)


def tissue_mask(images: torch.Tensor, luminosity_threshold: float = 0.8) -> torch.Tensor:
    """Tissue pixels: OpenCV 8-bit CIE-Lab lightness ``L / 255 < luminosity_threshold``.

    Bit-identical to staintools' ``LuminosityThresholdTissueLocator`` (which calls
    ``cv2.cvtColor(I, cv2.COLOR_RGB2LAB)``), without calling OpenCV.

    Args:
        images: uint8 ``[B, 3, H, W]`` RGB.
        luminosity_threshold: lightness threshold in ``(0, 1]``.

    Returns:
        bool ``[B, H, W]``.
    """
    _check_u8(images)
    _, weight_table, _, s_thr = _lut(images.device, luminosity_threshold)
    idx = _table_index(images, luminosity_threshold)
    s = weight_table.index_select(0, idx.view(-1)).view(idx.shape).sum(1)
    return (s < s_thr).view(images.shape[0], *images.shape[2:])


@dataclass
class StainEstimate:
    """Result of :func:`macenko_stain_matrix` for a batch.

    Attributes:
        stain_matrix: float32 ``[B, 2, 3]``: unit OD vectors, row 0 haematoxylin, row 1 eosin
            (rows of invalid images are zero).
        valid: bool ``[B]``: the estimate is usable (enough tissue, not degenerate).
        n_tissue: int64 ``[B]``: number of tissue pixels (full resolution).
    """

    stain_matrix: torch.Tensor
    valid: torch.Tensor
    n_tissue: torch.Tensor


def _check_u8(images: torch.Tensor) -> None:
    check_images(images)
    if images.dtype != torch.uint8:
        raise UserInputError(f"images must be uint8 (0..255) here; got dtype {images.dtype}")


def _percentile_ranks(
    counts: torch.Tensor, q: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """numpy "linear" percentile: ascending ranks ``⌊p⌋``, ``min(⌊p⌋ + 1, n − 1)`` and the
    weight ``p − ⌊p⌋`` of the upper one, with ``p = q/100 · (n − 1)``."""
    nm1 = (counts - 1).to(torch.float64)
    pos = (q / 100.0) * nm1
    lo = pos.floor()
    return lo.long(), torch.minimum(lo + 1, nm1).long(), pos - lo


def _lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # numpy's _lerp: exact at both ends
    return torch.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)


_LOG2E = 1.0 / math.log(2.0)
_APPLY_CHUNK_ELEMENTS = 600_000


# Histogram selection of the angle order statistics: bins over [−π, π] (atan2's range).
_HIST_BINS = 4096
_HIST_MIN_COUNT = 64  # rows with fewer values use topk (cheap at that size)


def _order_statistics_topk(
    values: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor, ranks: torch.Tensor
) -> torch.Tensor:
    """Values at ascending ``ranks`` [B, R] (sorted per row) of ``values[mask]`` via topk.

    The low half of ``ranks`` comes from the k smallest (masked-out entries set to +inf), the
    high half from the k largest (set to −inf); rank r ascending is rank n − 1 − r descending.
    Overwrites masked-out entries of ``values``.
    """
    half = ranks.shape[1] // 2
    low, high = ranks[:, :half], counts[:, None] - 1 - ranks[:, half:]
    # one host sync per chunk: topk needs a Python k
    k_low, k_high = torch.stack([low.max(), high.max()]).add(1).tolist()
    background = ~mask
    smallest = values.masked_fill_(background, math.inf).topk(k_low, 1, largest=False).values
    largest = values.masked_fill_(background, -math.inf).topk(k_high, 1).values
    return torch.cat([smallest.gather(1, low), largest.gather(1, high)], 1)


def _order_statistics_histogram(
    values: torch.Tensor,
    weight: torch.Tensor,
    ranks: torch.Tensor,
    scratch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Values at ascending ``ranks`` [B, R] (any order) of ``values[weight == 1]``.

    ``values`` must lie in [−π, π]; ``weight`` is the mask as 0./1. floats. Exact, without
    sorting a row: a 4096-bin histogram per row (bins are monotone in the value) locates the
    bin of each rank; only the values in those few bins are gathered and sorted (two stable
    sorts: by value, then by row). ~4× faster than two ``topk`` calls for 1%/99% of 224²
    pixels. Every row needs ≥ 1 masked value.

    Args:
        scratch: optional flat float32, int32 and uint8 buffers of ≥ B·M elements (reused
            memory avoids the page faults of fresh multi-megabyte temporaries).
    """
    b, m = values.shape
    k = _HIST_BINS
    device = values.device
    if scratch is None:
        scratch = tuple(
            torch.empty(b * m, dtype=dt, device=device)
            for dt in (torch.float32, torch.int32, torch.uint8)
        )
    f_buf, i_buf, u_buf = (buf[: b * m].view(b, m) for buf in scratch)
    scale = k / (2 * math.pi)
    row_offset = torch.arange(b, device=device, dtype=torch.int32)[:, None] * (k + 1)
    binf = torch.mul(values, scale, out=f_buf).add_(math.pi * scale).clamp_(max=k - 0.5)
    # background → bin k, not counted (float arithmetic: masked_fill_ with a bool mask is ~10×
    # slower here)
    binf.sub_(k).mul_(weight).add_(k)
    bins = i_buf.copy_(binf).add_(row_offset).view(-1)  # float → int32 truncates: ⌊·⌋
    hist = torch.bincount(bins, minlength=b * (k + 1)).view(b, k + 1)[:, :k]
    cum = hist.cumsum(1)
    bin_of = torch.searchsorted(cum, ranks, right=True).clamp_(max=k - 1)  # first cum > rank
    in_bin = hist.gather(1, bin_of)
    rank_in_bin = ranks - (cum.gather(1, bin_of) - in_bin)
    # values of the target bins, grouped by row (flat index order), then sorted within rows
    target = torch.zeros(b * (k + 1), dtype=torch.uint8, device=device)
    target[(bin_of + row_offset).view(-1)] = 1
    selected = torch.index_select(target, 0, bins, out=u_buf.view(-1))
    where = selected.nonzero().squeeze(1)
    picked = values.reshape(-1)[where]
    rows = torch.div(where, m, rounding_mode="floor")
    order = picked.sort(stable=True).indices
    order = order[rows[order].sort(stable=True).indices]
    picked = picked[order]
    # position of each rank among its row's picked values: values of earlier target bins first
    r = bin_of.shape[1]
    same = bin_of[:, :, None] == bin_of[:, None, :]  # [b, R, R]
    first = ~(same & torch.ones(r, r, dtype=torch.bool, device=device).tril(-1)).any(2)
    per_row = (in_bin * first).sum(1)  # each distinct target bin once
    earlier = (bin_of[:, None, :] < bin_of[:, :, None]) & first[:, None, :]
    before = (earlier * in_bin[:, None, :]).sum(2)
    row_start = torch.cumsum(per_row, 0) - per_row
    return picked[row_start[:, None] + before + rank_in_bin]


def _masked_percentiles(
    values: torch.Tensor,
    mask: torch.Tensor,
    counts: torch.Tensor,
    q_low: float,
    q_high: float,
    *,
    angles: bool = False,
    weight: torch.Tensor | None = None,
    scratch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row percentiles of ``values[mask]`` (ragged rows), linear interpolation.

    Matches ``np.percentile(values[i][mask[i]], q)`` (method "linear"): position
    ``p = q/100 · (n − 1)``, value ``a[⌊p⌋] + (p − ⌊p⌋) · (a[⌊p⌋ + 1] − a[⌊p⌋])`` in ascending
    order ``a``. Only four order statistics per row are needed, so no row is fully sorted:
    :func:`_order_statistics_histogram` (``angles``, ≥ 64 values per row) or
    :func:`_order_statistics_topk`; both are exact.

    Args:
        values: float ``[B, M]``; may be overwritten.
        mask: bool ``[B, M]``.
        counts: ``mask.sum(1)``; rows with 0 give meaningless (finite or inf) results.
        q_low, q_high: percentiles in ``[0, 100]``, ``q_low ≤ 50 ≤ q_high``.
        angles: every value lies in [−π, π] (``atan2`` output): allows the histogram path.
        weight: ``mask`` as 0./1. of ``values``' dtype, if the caller has it.
        scratch: reusable buffers for :func:`_order_statistics_histogram`.

    Returns:
        float64 ``[B]`` low and high percentiles.
    """
    n = counts.clamp_min(1)
    lo_l, hi_l, frac_l = _percentile_ranks(n, q_low)
    lo_h, hi_h, frac_h = _percentile_ranks(n, q_high)
    ranks = torch.stack([lo_l, hi_l, lo_h, hi_h], 1)
    if angles and int(counts.min()) >= _HIST_MIN_COUNT:
        w = mask.to(values.dtype) if weight is None else weight
        at = _order_statistics_histogram(values, w, ranks, scratch).double()
    else:
        at = _order_statistics_topk(values, mask, n, ranks).double()
    return _lerp(at[:, 0], at[:, 1], frac_l), _lerp(at[:, 2], at[:, 3], frac_h)


class _Workspace:
    """Scratch buffers for chunks of up to ``chunk`` images of ``n_px`` pixels.

    Reused across chunks because fresh multi-megabyte temporaries cost page faults that took
    longer than the arithmetic itself (measured: 2-10× on the OD and mask passes).
    """

    def __init__(self, chunk: int, n_px: int, device: torch.device) -> None:
        self.idx = torch.empty(chunk * 3 * n_px, dtype=torch.int32, device=device)
        self.od = torch.empty(chunk * 3 * n_px, dtype=torch.float32, device=device)
        self.tmp3 = torch.empty(chunk * 3 * n_px, dtype=torch.float32, device=device)
        self.tmp1 = torch.empty(chunk * n_px, dtype=torch.float32, device=device)
        self.maskf = torch.empty(chunk * n_px, dtype=torch.float32, device=device)
        self.proj = torch.empty(chunk * 2 * n_px, dtype=torch.float32, device=device)
        self.selected = torch.empty(chunk * n_px, dtype=torch.uint8, device=device)

    @staticmethod
    def take(buf: torch.Tensor, *shape: int) -> torch.Tensor:
        return buf[: math.prod(shape)].view(*shape)


@dataclass
class _Decomposition:
    od: torch.Tensor  # float32 [b, 3, N] (a view of the workspace)
    maskf: torch.Tensor  # float32 [b, N], 1 on tissue (a view of the workspace)
    stains: torch.Tensor  # float64 [b, 2, 3], rows H, E; zero where not valid
    valid: torch.Tensor  # bool [b]
    n_tissue: torch.Tensor  # int64 [b]


def _decompose_chunk(
    x: torch.Tensor,
    ws: _Workspace,
    luminosity_threshold: float,
    angular_percentile: float,
    min_tissue_pixels: int,
    max_stain_cosine: float,
    stats_stride: int,
) -> _Decomposition:
    """Macenko decomposition of a chunk ``x`` (uint8 ``[b, 3, N]``, contiguous)."""
    od_table, weight_table, offsets, s_thr = _lut(x.device, luminosity_threshold)
    b, _, n_px = x.shape
    idx = ws.take(ws.idx, b, 3, n_px)
    idx.copy_(x).add_(offsets)  # I_c + 256·c (same-dtype ops: mixed-dtype ones are slow)
    flat = idx.view(-1)
    od = ws.take(ws.od, b, 3, n_px)
    torch.index_select(od_table, 0, flat, out=od.view(-1))
    lum = ws.take(ws.tmp3, b, 3, n_px)
    torch.index_select(weight_table, 0, flat, out=lum.view(-1))
    lum_sum = torch.sum(lum, 1, out=ws.take(ws.tmp1, b, n_px))
    mask = lum_sum < s_thr
    maskf = ws.take(ws.maskf, b, n_px)
    maskf.copy_(mask)
    n_tissue = maskf.sum(1).long()  # float32 counts are exact below 2²⁴ pixels

    # Statistics on every `stats_stride`-th pixel (deterministic subsample; 1 = all pixels).
    od_s = od[:, :, ::stats_stride]
    mask_s = mask[:, ::stats_stride]
    n_sub = od_s.shape[2]
    n_s = n_tissue if stats_stride == 1 else maskf[:, ::stats_stride].sum(1).long()
    od_m = torch.mul(od_s, maskf[:, None, ::stats_stride], out=ws.take(ws.tmp3, b, 3, n_sub))
    n_f = n_s.clamp_min(2).to(torch.float64)
    s1 = od_m.sum(2).double()  # [b, 3]; background entries are 0
    s2 = torch.bmm(od_m, od_m.transpose(1, 2)).double()  # [b, 3, 3]
    # np.cov(OD, rowvar=False): (Σ x xᵀ − n · mean meanᵀ) / (n − 1)
    cov = (s2 - s1[:, :, None] * s1[:, None, :] / n_f[:, None, None]) / (n_f - 1)[:, None, None]
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    plane = vecs[:, :, [2, 1]]  # [b, 3, 2]: largest, second largest
    # staintools' sign rule: each vector's red component >= 0
    plane = plane * torch.where(plane[:, :1, :] < 0, -1.0, 1.0)
    proj = torch.bmm(plane.transpose(1, 2).float(), od_s, out=ws.take(ws.proj, b, 2, n_sub))
    phi = torch.atan2(proj[:, 1], proj[:, 0], out=ws.take(ws.tmp1, b, n_sub))
    phi_min, phi_max = _masked_percentiles(
        phi,
        mask_s,
        n_s,
        100.0 - angular_percentile,
        angular_percentile,
        angles=True,
        weight=maskf[:, ::stats_stride],
        scratch=(ws.tmp3, ws.idx, ws.selected),
    )
    v1 = torch.bmm(plane, torch.stack([phi_min.cos(), phi_min.sin()], 1)[:, :, None])[..., 0]
    v2 = torch.bmm(plane, torch.stack([phi_max.cos(), phi_max.sin()], 1)[:, :, None])[..., 0]
    h_first = (v1[:, 0] > v2[:, 0])[:, None]
    stains = torch.stack([torch.where(h_first, v1, v2), torch.where(h_first, v2, v1)], 1)
    stains = stains / stains.norm(dim=2, keepdim=True).clamp_min(1e-12)
    cosine = (stains[:, 0] * stains[:, 1]).sum(1)
    valid = (
        (n_tissue >= min_tissue_pixels)
        & (n_s >= 3)
        & torch.isfinite(stains).all(dim=2).all(dim=1)
        & (cosine.abs() < max_stain_cosine)
    )
    stains = torch.where(valid[:, None, None], stains, torch.zeros_like(stains))
    return _Decomposition(od, maskf, stains, valid, n_tissue)


def _unmixing_matrix(stains: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Least-squares unmixing ``P = (S Sᵀ)⁻¹ S`` for unit rows ``S = [h; e]``: ``[b, 2, 3]``.

    With ``c = h·e``: ``P_h = (h − c e) / (1 − c²)``, ``P_e = (e − c h) / (1 − c²)``. Zero for
    invalid images (whose ``|c|`` may be 1).
    """
    h, e = stains[:, 0], stains[:, 1]
    c = (h * e).sum(1, keepdim=True)
    det = torch.where(valid[:, None], 1 - c * c, torch.ones_like(c))
    p = torch.stack([(h - c * e) / det, (e - c * h) / det], 1)
    return torch.where(valid[:, None, None], p, torch.zeros_like(p))


def macenko_stain_matrix(
    images: torch.Tensor,
    *,
    luminosity_threshold: float = 0.8,
    angular_percentile: float = 99.0,
    min_tissue_pixels: int = 1000,
    max_stain_cosine: float = 0.999,
    stats_stride: int = 1,
    chunk_size: int = 16,
) -> StainEstimate:
    """Macenko H&E stain vectors of every image of a batch (staintools' algorithm, batched).

    Per image: OD of the tissue pixels (:func:`optical_density`, :func:`tissue_mask`); the
    eigenvectors ``u₁, u₂`` of the two largest eigenvalues of their covariance, each flipped so
    its red component is ≥ 0; angles ``φ = atan2(OD·u₂, OD·u₁)``; ``φ_lo, φ_hi`` = the
    ``100 − p`` and ``p``-th percentiles (``p = angular_percentile``, linear interpolation);
    ``v = cos(φ)·u₁ + sin(φ)·u₂`` at both; H = the one with the larger red component.

    Args:
        images: uint8 ``[B, 3, H, W]`` RGB, any device.
        luminosity_threshold: tissue iff Lab lightness ``L/255 <`` this (staintools: 0.8).
        angular_percentile: ``p`` above (staintools: 99).
        min_tissue_pixels: fewer tissue pixels than this → invalid (returned as zeros).
        max_stain_cosine: ``|h·e| ≥`` this → degenerate → invalid.
        stats_stride: estimate from every ``stats_stride``-th pixel (1 = all pixels).
        chunk_size: images per batched step (smaller chunks stay in cache).

    Returns:
        :class:`StainEstimate`.
    """
    _check_u8(images)
    device = images.device
    b = images.shape[0]
    x = _flat(images.contiguous())
    ws = _Workspace(min(chunk_size, max(b, 1)), x.shape[2], device)
    stains = torch.zeros(b, 2, 3, dtype=torch.float32, device=device)
    valid = torch.zeros(b, dtype=torch.bool, device=device)
    n_tissue = torch.zeros(b, dtype=torch.int64, device=device)
    for start in range(0, b, chunk_size):
        stop = min(start + chunk_size, b)
        dec = _decompose_chunk(
            x[start:stop],
            ws,
            luminosity_threshold,
            angular_percentile,
            min_tissue_pixels,
            max_stain_cosine,
            stats_stride,
        )
        stains[start:stop] = dec.stains
        valid[start:stop] = dec.valid
        n_tissue[start:stop] = dec.n_tissue
    return StainEstimate(stains, valid, n_tissue)


def stain_concentrations(images: torch.Tensor, stain_matrix: torch.Tensor) -> torch.Tensor:
    """Least-squares stain concentrations ``C = (S Sᵀ)⁻¹ S · OD`` of every pixel.

    Plain least squares (may be negative), not staintools' non-negative lasso
    (``spams.lasso(λ = 0.01, pos=True)``); the two agree closely on pixels inside the stain cone.

    Args:
        images: uint8 ``[B, 3, H, W]``.
        stain_matrix: ``[B, 2, 3]`` unit OD vectors (rows H, E), e.g. from
            :func:`macenko_stain_matrix`; all-zero rows give zero concentrations.

    Returns:
        float32 ``[B, 2, H, W]``: H and E concentration (OD units along each unit vector).
    """
    od = _flat(optical_density(images))
    s = stain_matrix.to(device=images.device, dtype=torch.float64)
    valid = s.abs().sum(dim=(1, 2)) > 0
    p = _unmixing_matrix(s, valid).float()
    return torch.bmm(p, od).view(images.shape[0], 2, *images.shape[2:])


@dataclass
class _StainState:
    images: torch.Tensor  # uint8 [B, 3, N], the input (never modified)
    base: torch.Tensor  # uint8 [B, 3, N], max(I, 1): the intensity the OD was computed from
    zeros: torch.Tensor  # int16 [B, 3, N], 1 where I = 0 (for the − [I = 0] term), else 0
    concentration: torch.Tensor  # float32 [B, 1, N], C_s on tissue of valid images, else 0
    vector: torch.Tensor  # float32 [B, 3, 1], v_s (zero for invalid images)
    shape: torch.Size  # [B, 3, H, W]


class StainShift(Shift):
    """Keep a fraction ``f`` of one Macenko stain (base of :class:`Haematoxylin`, :class:`Eosin`).

    Magnitude ``f``: fraction of the stain's optical density kept (1 = identity, 0 = stain
    removed, up to 2 = doubled). On tissue pixels ``OD' = OD + (f − 1) · C_s · v_s``, i.e.
    ``I' = clip(⌊max(I, 1) · exp((1 − f) · C_s · v_s) + ½⌋ − [I = 0], 0, 255)``; background
    pixels and images without a usable estimate are unchanged (see the module docstring).

    Args:
        luminosity_threshold: tissue iff Lab ``L/255 <`` this (staintools' default 0.8).
        angular_percentile: robust extreme angles at ``100 − p`` and ``p`` (default 99).
        min_tissue_pixels: images with fewer tissue pixels are returned unchanged (default 1000,
            2% of a 224² tile; see docs/reference/shifts/stain.md for the measurement).
        max_stain_cosine: images whose H and E vectors have ``|cos| ≥`` this are returned
            unchanged (the least squares is ill-conditioned; default 0.999).
        stats_stride: covariance and angle percentiles from every ``stats_stride``-th pixel.
        chunk_size: images per batched step.
    """

    stain_index: ClassVar[int]
    magnitudes = STAIN_SWEEP
    identity = 1.0
    # Above 2 (twice the stain's OD) nuclei saturate towards black; 2 allows a stain boost.
    valid_range = (0.0, 2.0)
    units = "fraction of stain kept"

    def __init__(
        self,
        luminosity_threshold: float = 0.8,
        angular_percentile: float = 99.0,
        min_tissue_pixels: int = 1000,
        max_stain_cosine: float = 0.999,
        stats_stride: int = 1,
        chunk_size: int = 16,
    ) -> None:
        if not 0.0 < luminosity_threshold <= 1.0:
            raise UserInputError(
                f"luminosity_threshold must be in (0, 1]; got {luminosity_threshold}"
            )
        if not 50.0 < angular_percentile <= 100.0:
            raise UserInputError(
                f"angular_percentile must be in (50, 100]; got {angular_percentile}"
            )
        if int(min_tissue_pixels) != min_tissue_pixels or min_tissue_pixels < 3:
            raise UserInputError(
                f"min_tissue_pixels must be a whole number >= 3; got {min_tissue_pixels}"
            )
        if not 0.0 < max_stain_cosine <= 1.0:
            raise UserInputError(f"max_stain_cosine must be in (0, 1]; got {max_stain_cosine}")
        for name, value in (("stats_stride", stats_stride), ("chunk_size", chunk_size)):
            if int(value) != value or value < 1:
                raise UserInputError(f"{name} must be a whole number >= 1; got {value}")
        self.luminosity_threshold = float(luminosity_threshold)
        self.angular_percentile = float(angular_percentile)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.max_stain_cosine = float(max_stain_cosine)
        self.stats_stride = int(stats_stride)
        self.chunk_size = int(chunk_size)

    def params(self) -> dict[str, Any]:
        return {
            "luminosity_threshold": self.luminosity_threshold,
            "angular_percentile": self.angular_percentile,
            "min_tissue_pixels": self.min_tissue_pixels,
            "max_stain_cosine": self.max_stain_cosine,
            "stats_stride": self.stats_stride,
        }

    def prepare(self, images: torch.Tensor, ctx: SweepContext) -> _StainState:
        """Decompose every image once: ``C_s`` on tissue pixels and ``v_s`` per image."""
        b = images.shape[0]
        x = _flat(images.contiguous())
        n_px = x.shape[2]
        conc = torch.empty(b, 1, n_px, dtype=torch.float32, device=x.device)
        vec = torch.empty(b, 3, 1, dtype=torch.float32, device=x.device)
        valid = torch.zeros(b, dtype=torch.bool, device=x.device)
        ws = _Workspace(min(self.chunk_size, max(b, 1)), n_px, x.device)
        s = self.stain_index
        for start in range(0, b, self.chunk_size):
            stop = min(start + self.chunk_size, b)
            dec = _decompose_chunk(
                x[start:stop],
                ws,
                self.luminosity_threshold,
                self.angular_percentile,
                self.min_tissue_pixels,
                self.max_stain_cosine,
                self.stats_stride,
            )
            p = _unmixing_matrix(dec.stains, dec.valid)[:, s : s + 1].float()  # [b, 1, 3]
            c = conc[start:stop]
            torch.bmm(p, dec.od, out=c)
            c.mul_(dec.maskf[:, None, :])  # background → 0 (p is finite: no NaN · 0)
            vec[start:stop, :, 0] = dec.stains[:, s].float()
            valid[start:stop] = dec.valid
        unchanged = (~valid).nonzero().flatten().tolist()
        ctx.report["unchanged"] = len(unchanged)
        ctx.report["unchanged_ids"] = [ctx.sample_ids[i] for i in unchanged]
        base = x.clamp_min(1)
        zeros = (base - x).to(torch.int16)  # (uint8 ops; `x == 0` is ~10× slower here)
        return _StainState(x, base, zeros, conc, vec, images.shape)

    def apply(self, state: _StainState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        """``I' = clip(⌊Ĩ · 2^((1 − f) · log₂e · C_s · v_s) + ½⌋ − [I = 0], 0, 255)``.

        ``Ĩ = max(I, 1)`` is the intensity the OD was computed from (staintools counts 0 as 1);
        the ``− [I = 0]`` term makes ``f = 1`` exact for zeros too. ``2^(y·log₂e) = e^y``: torch's
        ``exp2`` is ~4× faster than ``exp`` on CPU here, and float → int16 → uint8 ~3× faster
        than float → uint8 directly. Runs in cache-sized chunks of images.
        """
        x, base, conc, vec = state.images, state.base, state.concentration, state.vector
        b, _, n_px = x.shape
        out = torch.empty_like(x)
        # ~2.4 MB of float32 per chunk: the passes below stay in cache
        chunk = max(1, _APPLY_CHUNK_ELEMENTS // (3 * n_px))
        buf = torch.empty(min(chunk, b) * 3 * n_px, dtype=torch.float32, device=x.device)
        buf16 = torch.empty(buf.shape, dtype=torch.int16, device=x.device)
        half = torch.tensor(0.5, dtype=torch.float32, device=x.device)
        scaled = vec * ((1.0 - magnitude) * _LOG2E)
        for start in range(0, b, chunk):
            stop = min(start + chunk, b)
            t = buf[: (stop - start) * 3 * n_px].view(stop - start, 3, n_px)
            torch.mul(conc[start:stop], scaled[start:stop], out=t)
            t.exp2_()
            torch.addcmul(half, base[start:stop], t, out=t)  # Ĩ·e^(·) + ½ ≥ ½
            t.clamp_max_(256.0)  # int16-safe; 256 − [I = 0] must still reach 255
            t16 = buf16[: t.numel()].view(t.shape)
            t16.copy_(t)  # truncation of a value ≥ 0: ⌊·⌋
            t16.sub_(state.zeros[start:stop]).clamp_(0, 255)
            out[start:stop].copy_(t16)
        return out.view(state.shape)


class Haematoxylin(StainShift):
    """Keep a fraction of the haematoxylin stain (nuclei; Macenko separation)."""

    name = "haematoxylin"
    description = "Scale the haematoxylin (nuclear) stain's optical density; Macenko separation"
    stain_index = 0


class Eosin(StainShift):
    """Keep a fraction of the eosin stain (cytoplasm, stroma; Macenko separation)."""

    name = "eosin"
    description = "Scale the eosin (cytoplasm/stroma) stain's optical density; Macenko separation"
    stain_index = 1
