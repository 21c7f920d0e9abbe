"""Per-pixel H&E stain concentrations as staintools computes them, batched in torch.

staintools' ``get_concentrations`` solves, for every pixel's optical density ``x`` (3-vector) and
the image's unit stain vectors ``h, e`` (rows of ``S``), the non-negative lasso

    ``min_{a, b ≥ 0}  ½‖x − a·h − b·e‖² + λ·(a + b)``,  ``λ = 0.01``

with ``spams.lasso(mode=2, pos=True)``. With two atoms it has a closed form (KKT conditions of a
convex problem with a unique solution when ``|h·e| < 1``); with ``g = S·x`` and ``c = h·e``:

1. both active: ``a = ((g_h − λ) − c·(g_e − λ)) / (1 − c²)``, ``b = ((g_e − λ) − c·(g_h − λ)) /
   (1 − c²)``, valid if both ``> 0``;
2. else only H: ``a = g_h − λ``, valid if ``a > 0`` and ``g_e − c·a ≤ λ``;
3. else only E: ``b = g_e − λ``, valid if ``b > 0`` and ``g_h − c·b ≤ λ``;
4. else ``a = b = 0``.

(shared/notes measured this closed form within 5e−9 of spams.) :func:`least_squares_concentrations`
is the unconstrained alternative ``C = (S Sᵀ)⁻¹ S x`` that torchstain uses (may be negative).

:func:`percentile_per_image` is numpy's default ("linear") percentile per image and stain, as
staintools and the normalisation use for the 99th-percentile "max" concentration.
"""

from __future__ import annotations

import torch

__all__ = [
    "LASSO_REGULARIZER",
    "lasso_concentrations",
    "least_squares_concentrations",
    "percentile_per_image",
]

#: staintools' ``regularizer`` (spams ``lambda1``).
LASSO_REGULARIZER = 0.01


def lasso_concentrations(
    od: torch.Tensor, stain_matrix: torch.Tensor, regularizer: float = LASSO_REGULARIZER
) -> torch.Tensor:
    """Non-negative lasso concentrations of every pixel (closed form, see module docstring).

    Args:
        od: optical density ``[B, 3, N]`` (float), e.g. from
            :func:`shiftbench.shifts.stain.optical_density` flattened over pixels.
        stain_matrix: ``[B, 2, 3]`` unit rows ``h, e`` with ``|h·e| < 1`` (rows of zeros give
            zero concentrations).
        regularizer: ``λ`` (staintools: 0.01).

    Returns:
        ``[B, 2, N]`` in ``od``'s dtype, ``≥ 0``: rows H, E.
    """
    s = stain_matrix.to(od.dtype)
    g = torch.bmm(s, od)  # [B, 2, N]: h·x, e·x
    c = (s[:, 0] * s[:, 1]).sum(1)[:, None]  # [B, 1]
    det = (1 - c * c).clamp_min(torch.finfo(od.dtype).tiny)
    gh, ge = g[:, 0] - regularizer, g[:, 1] - regularizer  # g − λ
    both_h, both_e = (gh - c * ge) / det, (ge - c * gh) / det
    # Cases 1–4 in two selections: "only H" is exactly both_e ≤ 0 with g_h > λ, "only E" is
    # both_h ≤ 0 with g_e > λ, and both_h, both_e ≤ 0 implies g_h, g_e ≤ λ (zero solution).
    e_active, h_active = both_e > 0, both_h > 0
    a = torch.where(e_active, both_h.clamp_min_(0), gh.clamp_min_(0))
    b = torch.where(h_active, both_e.clamp_min_(0), ge.clamp_min_(0))
    return torch.stack([a, b], 1)


def least_squares_concentrations(od: torch.Tensor, stain_matrix: torch.Tensor) -> torch.Tensor:
    """Unconstrained least squares ``C = (S Sᵀ)⁻¹ S x`` per pixel: ``[B, 2, N]`` (may be < 0)."""
    s = stain_matrix.to(od.dtype)
    gram = torch.bmm(s, s.transpose(1, 2))
    valid = s.abs().sum(dim=(1, 2)) > 0
    eye = torch.eye(2, dtype=od.dtype, device=od.device).expand_as(gram)
    inv = torch.linalg.inv(torch.where(valid[:, None, None], gram, eye))
    p = torch.bmm(inv, s) * valid[:, None, None]
    return torch.bmm(p, od)


def percentile_per_image(values: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's linear ``percentile(values[b, k], q)`` for every row: ``[B, K, N]`` → ``[B, K]``.

    Position ``p = q/100·(N − 1)``; result ``v₍⌊p⌋₎ + (p − ⌊p⌋)·(v₍⌊p⌋+1₎ − v₍⌊p⌋₎)`` on the
    ascending order statistics: the two smallest of the ``N − ⌊p⌋`` largest values (one ``topk``,
    cheap for high percentiles).
    """
    n = values.shape[-1]
    if n == 0:
        raise ValueError("percentile of an empty set of pixels")
    pos = q / 100.0 * (n - 1)
    lo = int(pos)  # ⌊p⌋ (p ≥ 0)
    frac = pos - lo
    k = n - lo
    # the k largest (unsorted: cheaper), then their two smallest = ascending ranks ⌊p⌋, ⌊p⌋ + 1
    top = values.topk(k, dim=-1, sorted=False).values
    two = top.topk(min(k, 2), dim=-1, largest=False).values  # ascending
    v_lo, v_hi = two[..., 0], two[..., -1]
    # numpy's _lerp (exact at both ends)
    if frac >= 0.5:
        return v_hi - (v_hi - v_lo) * (1 - frac)
    return v_lo + (v_hi - v_lo) * frac
