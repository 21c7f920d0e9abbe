"""Frequency-domain shifts: ``lowpass``, ``highpass`` and the ``ring`` frequency shortcut.

Conventions shared by the three shifts (per channel, per image of an ``[B, 3, H, W]`` batch)::

    X[ky, kx] = DFT_2(x)[ky, kx]                       (2-D DFT over (H, W), numpy's convention)
    fy = fftfreq(H)[ky],  fx = fftfreq(W)[kx]          (cycles/pixel, in [-0.5, 0.5))
    r  = √(fy² + fx²),    r_max = max r on the grid    (√2/2 for even H and W)
    out = clamp(round_half_even(Re(IDFT_2(Y))), 0, 255) as uint8

Filters (``Y = T(r)·X`` with a real transfer function ``T``, magnitude ``m``):

* ``lowpass``, ``edge="hard"``:     ``T = 1[r ≤ m·r_max]`` (``m`` = fraction of r_max kept);
* ``lowpass``, ``edge="gaussian"``: ``T = exp(−r² / 2σ²)``, ``σ = m·r_max`` (``m = 0``: DC only);
* ``highpass``, ``edge="hard"``:    ``T = 0`` for ``0 < r < m·r_max``, else 1 (the DC term, i.e.
  the image mean, is always kept; ``m`` = fraction of r_max removed);
* ``highpass``, ``edge="gaussian"``: ``T = 1 − exp(−r² / 2σ²)`` for ``r > 0``, ``T(0) = 1``.

``T`` depends on ``r`` only, so ``T(−f) = T(f)``: the filtered spectrum stays Hermitian and the
inverse DFT is real. The code therefore uses the half spectrum (``rfft2`` / ``irfft2``), which is
the same arithmetic as the full DFT's real part at half the cost. Per sweep, the batch is
transformed once (:meth:`Shift.prepare`) and each magnitude costs one multiply by its cached
transfer mask, one inverse transform and the rounding.

Identity: ``lowpass`` at ``m = 1`` and ``highpass`` at ``m = 0`` return the input unchanged (the
base class short-circuits the identity). For ``edge="hard"`` that is also what the formula gives;
for a gaussian lowpass the formula's identity is the limit ``σ → ∞``, so ``m = 1`` is the identity
*by convention* and the sweep's first step goes from the unfiltered image to ``σ = 0.7·r_max``.

``ring`` (the artificial frequency shortcut of Lu et al. 2025): adds a real pattern ``p`` whose
spectrum lies on the ring ``R = {|r − f₀| < 0.5 / min(H, W)}`` around the requested radial
frequency ``f₀`` (parameter ``frequency``, cycles/pixel)::

    A[k]  = exp(iφ_k) for k ∈ R, else 0       (pattern="noise": unit amplitude, random phases)
    A[k]  = exp(iφ) at one bin k* ∈ R          (pattern="grating": one cosine, random bin & phase)
    p     = Re(IDFT_2(A)) / RMS(Re(IDFT_2(A)))   (unit RMS, identical on the 3 channels)
    out   = clamp(round_half_even(x + m·p), 0, 255)   (m = amplitude in grey levels)

Random draws come only from the sample's generator ``ctx.generator(i, None)`` (seeded by
``(seed, sample id, "ring")`` without the magnitude, so every magnitude of a sweep scales the
same pattern: the sweep is nested). Draw order, for an ``H×W`` image: ``pattern="noise"`` draws
``U = torch.rand((H, W), dtype=float64)`` and uses ``φ = 2π·U`` (all bins in ``fft`` index
order, then masked to ``R``); ``pattern="grating"`` draws ``j = torch.randint(|R|, (1,))`` (the
``j``-th ring bin in row-major ``fft`` order) then ``φ = 2π·torch.rand(1, dtype=float64)``.
"Random orientation" for the grating thus means one of the grid directions on the ring, so the
cosine is exactly periodic on the tile and all its power sits in the bins ``±k*``.

References:
    R. Lu, D. Juodelyte, J. D. Victor, V. Cheplygina, "Exploring connections of spectral analysis
    and transfer learning in medical imaging", SPIE Medical Imaging 2025, arXiv:2407.11379.
    Fu et al., "The intriguing effect of frequency disentangled learning on medical image
    segmentation", SPIE Medical Imaging 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from shiftbench.errors import UserInputError
from shiftbench.shifts._planes import is_channels_last
from shiftbench.shifts.base import Shift, SweepContext

__all__ = [
    "HighPass",
    "LowPass",
    "Ring",
    "fourier_filter",
    "max_radius",
    "radial_frequency",
    "ring_bins",
    "ring_pattern",
    "transfer",
]

Edge = Literal["hard", "gaussian"]
Kind = Literal["lowpass", "highpass"]
Pattern = Literal["noise", "grating"]
_EDGES = ("hard", "gaussian")
# Bins exactly on a cut-off in exact arithmetic (e.g. r = 0.5·r_max at (56, 56)/224) must fall on the
# side the formula says, whatever the last bit of a float64 square root: compare with this slack
# (cycles/pixel; far below the spacing of distinct radii on any realistic grid).
_TIE = 1e-12
_PATTERNS = ("noise", "grating")


def _check_choice(value: Any, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise UserInputError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def radial_frequency(
    height: int, width: int, *, half: bool = False, device: Any = None
) -> torch.Tensor:
    """``r = √(fy² + fx²)`` in cycles/pixel on the DFT grid, in ``fft`` index order (float64).

    Args:
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.
        half: the ``rfft2`` half grid ``[H, W // 2 + 1]`` (``fx = rfftfreq(W)``) instead of the
            full ``[H, W]`` grid (``fx = fftfreq(W)``). ``r`` is the same at matching bins.
        device: device of the result.
    """
    fy = torch.fft.fftfreq(height, dtype=torch.float64, device=device)
    fx = (torch.fft.rfftfreq if half else torch.fft.fftfreq)(
        width, dtype=torch.float64, device=device
    )
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def max_radius(height: int, width: int) -> float:
    """``r_max``: the largest radial frequency on the ``H×W`` grid (√2/2 for even sizes)."""
    fy = (height // 2) / height  # the largest |fftfreq(H)|
    fx = (width // 2) / width
    return math.sqrt(fy * fy + fx * fx)


def transfer(
    height: int,
    width: int,
    magnitude: float,
    kind: Kind,
    edge: Edge = "hard",
    *,
    half: bool = True,
    device: Any = None,
) -> torch.Tensor:
    """Transfer function ``T(r)`` of ``lowpass`` / ``highpass`` (module docstring), float32.

    Args:
        height: image height in pixels.
        width: image width in pixels.
        magnitude: fraction of ``r_max`` kept (lowpass) or removed (highpass), in ``[0, 1]``.
        kind: ``"lowpass"`` or ``"highpass"``.
        edge: ``"hard"`` (disc) or ``"gaussian"``.
        half: on the ``rfft2`` half grid (default) or the full grid (see
            :func:`radial_frequency`).
        device: device of the result.

    Returns:
        float32 ``[H, W // 2 + 1]`` (``half``) or ``[H, W]`` tensor of values in ``[0, 1]``.
    """
    _check_choice(kind, ("lowpass", "highpass"), "kind")
    _check_choice(edge, _EDGES, "edge")
    r = radial_frequency(height, width, half=half, device=device)
    cut = float(magnitude) * max_radius(height, width)
    dc = r == 0
    if edge == "hard":
        keep = r <= cut + _TIE if kind == "lowpass" else (r >= cut - _TIE) | dc
        return keep.to(torch.float32)
    if cut == 0.0:  # σ → 0: the gaussian lowpass keeps the DC only; the highpass removes nothing
        low = dc.to(torch.float64)
    else:
        low = torch.exp(-(r**2) / (2.0 * cut * cut))
    t = low if kind == "lowpass" else torch.where(dc, 1.0, 1.0 - low)
    return t.to(torch.float32)


def _to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Round half-to-even, clamp to 0..255, uint8 (in place on ``values``)."""
    return values.round_().clamp_(0, 255).to(torch.uint8)


def _like(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``out`` in ``ref``'s memory format (channels-last in, channels-last out)."""
    return out.contiguous(memory_format=torch.channels_last) if is_channels_last(ref) else out


def _filter_spectrum(spectrum: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]):
    return _to_uint8(torch.fft.irfft2(spectrum * mask, s=size))


def fourier_filter(
    images: torch.Tensor, magnitude: float, kind: Kind, edge: Edge = "hard"
) -> torch.Tensor:
    """Low- or high-pass filter a uint8 batch by its 2-D DFT (the ``lowpass`` / ``highpass`` math).

    Unlike the shifts, no identity short-circuit: ``fourier_filter(x, 1, "lowpass")`` runs the
    transform (and returns ``x`` up to float32 round-off, i.e. exactly after rounding).

    Args:
        images: uint8 ``[B, C, H, W]`` on any device. Not modified.
        magnitude: fraction of ``r_max`` kept (lowpass) or removed (highpass), in ``[0, 1]``.
        kind: ``"lowpass"`` or ``"highpass"``.
        edge: ``"hard"`` or ``"gaussian"``.

    Returns:
        uint8 tensor of the input's shape on its device.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise UserInputError("fourier_filter expects a uint8 tensor [B, C, H, W]")
    h, w = images.shape[-2:]
    mask = transfer(h, w, magnitude, kind, edge, device=images.device)
    spectrum = torch.fft.rfft2(images.to(torch.float32))
    return _like(_filter_spectrum(spectrum, mask, (h, w)), images)


@dataclass
class _FilterState:
    spectrum: torch.Tensor  # rfft2 of the batch, complex64 [B, 3, H, W // 2 + 1]
    size: tuple[int, int]
    channels_last: bool
    masks: dict[float, torch.Tensor] = field(default_factory=dict)  # per magnitude


class _FourierFilter(Shift):
    """Shared sweep logic of ``lowpass`` / ``highpass``: one forward DFT per sweep."""

    kind: ClassVar[Kind]
    valid_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    units: ClassVar[str] = "fraction of max radial frequency"

    def __init__(self, edge: Edge = "hard") -> None:
        _check_choice(edge, _EDGES, "edge")
        self.edge = edge

    def params(self) -> dict[str, Any]:
        return {"edge": self.edge}

    def prepare(self, images: torch.Tensor, ctx: SweepContext) -> _FilterState:
        spectrum = torch.fft.rfft2(images.to(torch.float32))
        h, w = images.shape[-2:]
        return _FilterState(spectrum, (h, w), is_channels_last(images))

    def apply(self, state: _FilterState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        mask = state.masks.get(magnitude)
        if mask is None:
            h, w = state.size
            mask = transfer(h, w, magnitude, self.kind, self.edge, device=state.spectrum.device)
            state.masks[magnitude] = mask
        out = _filter_spectrum(state.spectrum, mask, state.size)
        return out.contiguous(memory_format=torch.channels_last) if state.channels_last else out


class LowPass(_FourierFilter):
    """Keep radial frequencies ``r ≤ m·r_max`` (hard disc) or weight them by a gaussian.

    Magnitude ``m``: fraction of the largest radial frequency kept, in ``[0, 1]``; ``m = 1`` is
    the identity, ``m = 0`` leaves the image mean. Default sweep
    ``1, 0.7, 0.5, 0.35, 0.25, 0.18, 0.125, 0.09, 0.06``. Formulas: module docstring.

    Args:
        edge: ``"hard"`` (default: ``T = 1[r ≤ m·r_max]``) or ``"gaussian"``
            (``T = exp(−r²/2σ²)``, ``σ = m·r_max``; ``m = 1`` is the identity by convention).
    """

    name: ClassVar[str] = "lowpass"
    kind: ClassVar[Kind] = "lowpass"
    magnitudes: ClassVar[tuple[float, ...]] = (1, 0.7, 0.5, 0.35, 0.25, 0.18, 0.125, 0.09, 0.06)
    identity: ClassVar[float] = 1
    description: ClassVar[str] = "keep radial frequencies r ≤ m·r_max (2-D DFT low-pass)"


class HighPass(_FourierFilter):
    """Remove radial frequencies ``0 < r < m·r_max`` (hard) or damp them by ``1 − gaussian``.

    The DC term is always kept, so the image mean stays. Magnitude ``m``: fraction of the largest
    radial frequency removed, in ``[0, 1]``; ``m = 0`` is the identity. Default sweep
    ``0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5``. Formulas: module docstring.

    Args:
        edge: ``"hard"`` (default) or ``"gaussian"`` (``T = 1 − exp(−r²/2σ²)``, ``σ = m·r_max``,
            ``T(0) = 1``).
    """

    name: ClassVar[str] = "highpass"
    kind: ClassVar[Kind] = "highpass"
    magnitudes: ClassVar[tuple[float, ...]] = (0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    identity: ClassVar[float] = 0
    description: ClassVar[str] = "remove radial frequencies 0 < r < m·r_max, keep the mean"


def ring_bins(height: int, width: int, frequency: float, *, device: Any = None) -> torch.Tensor:
    """Boolean ``[H, W]`` mask (full grid, ``fft`` order) of ``|r − frequency| < 0.5/min(H, W)``.

    Raises:
        UserInputError: no bin of the grid lies on that ring (frequency beyond ``r_max``).
    """
    r = radial_frequency(height, width, device=device)
    mask = (r - float(frequency)).abs() < 0.5 / min(height, width) - _TIE
    if not bool(mask.any()):
        raise UserInputError(
            f"ring frequency {frequency:g} cycles/pixel has no DFT bin on a {height}×{width} "
            f"image; use a frequency in (0, {max_radius(height, width):.4g}]"
        )
    return mask


def ring_pattern(coefficients: torch.Tensor) -> torch.Tensor:
    """Unit-RMS real pattern from DFT coefficients: ``p = Re(IDFT_2(A)) / RMS``.

    Args:
        coefficients: complex ``[B, H, W]`` spectrum ``A`` (``fft`` order), any device.

    Returns:
        float32 ``[B, H, W]`` with ``mean(p²) = 1`` per image.

    Raises:
        UserInputError: a pattern is zero (e.g. only self-conjugate bins with phase ±π/2).
    """
    p = torch.fft.ifft2(coefficients).real.to(torch.float32)
    rms = p.square().mean(dim=(-2, -1), keepdim=True).sqrt_()
    if bool((rms == 0).any()):
        raise UserInputError("ring pattern is zero; choose another frequency or seed")
    return p.div_(rms)


def _ring_coefficients(
    mask: torch.Tensor, pattern: Pattern, generator: torch.Generator
) -> torch.Tensor:
    """One image's ``A`` (complex128, CPU) drawn as documented in the module docstring."""
    h, w = mask.shape
    a = torch.zeros(h, w, dtype=torch.complex128)
    if pattern == "noise":
        phase = 2.0 * math.pi * torch.rand((h, w), generator=generator, dtype=torch.float64)
        a[mask] = torch.polar(torch.ones_like(phase[mask]), phase[mask])
        return a
    bins = mask.flatten().nonzero().squeeze(1)  # row-major fft order
    j = int(torch.randint(len(bins), (1,), generator=generator))
    phase = 2.0 * math.pi * torch.rand(1, generator=generator, dtype=torch.float64)
    a.view(-1)[bins[j]] = torch.polar(torch.ones_like(phase), phase)[0]
    return a


@dataclass
class _RingState:
    images: torch.Tensor  # float32 [B, 3, H, W]
    pattern: torch.Tensor  # float32 [B, 1, H, W], unit RMS, broadcast over channels
    channels_last: bool


class Ring(Shift):
    """Add band-limited noise (or one cosine) at radial frequency ``frequency``: a shortcut.

    The artificial frequency shortcut of Lu et al. (2025): a pattern whose spectrum lies on the
    ring ``|r − frequency| < 0.5/min(H, W)``, scaled to unit RMS, identical on the 3 channels,
    times the magnitude, added to the image. Magnitude: amplitude (RMS) in grey levels, in
    ``[0, 255]``; ``0`` is the identity. Default sweep ``0, 2, 4, 8, 16, 32``. The same pattern is
    scaled across a sweep (nested). Formulas and the random draws: module docstring.

    Args:
        frequency: radial frequency ``f₀`` in cycles/pixel, in ``(0, √2/2]`` (default 0.25).
        pattern: ``"noise"`` (default: every ring bin, random phases) or ``"grating"`` (one
            cosine at a random ring bin and phase).
    """

    name: ClassVar[str] = "ring"
    magnitudes: ClassVar[tuple[float, ...]] = (0, 2, 4, 8, 16, 32)
    identity: ClassVar[float] = 0
    units: ClassVar[str] = "amplitude (RMS grey levels)"
    description: ClassVar[str] = "add band-limited noise at radial frequency f (frequency shortcut)"
    valid_range: ClassVar[tuple[float, float]] = (0.0, 255.0)
    stochastic: ClassVar[bool] = True

    def __init__(self, frequency: float = 0.25, pattern: Pattern = "noise") -> None:
        try:
            f = float(frequency)
        except (TypeError, ValueError):
            f = math.nan
        if not (0.0 < f <= math.sqrt(0.5)):
            raise UserInputError(
                f"ring frequency must be a number in (0, 0.7071] cycles/pixel; got {frequency!r}"
            )
        _check_choice(pattern, _PATTERNS, "pattern")
        self.frequency = f
        self.pattern = pattern

    def params(self) -> dict[str, Any]:
        return {"frequency": self.frequency, "pattern": self.pattern}

    def prepare(self, images: torch.Tensor, ctx: SweepContext) -> _RingState:
        b, _, h, w = images.shape
        mask = ring_bins(h, w, self.frequency)
        coeffs = torch.stack(
            [_ring_coefficients(mask, self.pattern, ctx.generator(i, None)) for i in range(b)]
        )
        dev = images.device
        # complex64 on the device (float64 is not available everywhere, e.g. MPS).
        pattern = ring_pattern(coeffs.to(torch.complex64).to(dev))
        return _RingState(images.to(torch.float32), pattern[:, None], is_channels_last(images))

    def apply(self, state: _RingState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        out = _to_uint8(torch.add(state.images, state.pattern, alpha=float(magnitude)))
        return out.contiguous(memory_format=torch.channels_last) if state.channels_last else out
