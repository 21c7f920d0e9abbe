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
transfer mask, one inverse transform and the rounding, one image at a time (see :func:`_chunks`).

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
same pattern: the sweep is nested). Draw order, with the ring's bins listed in row-major ``fft``
index order: ``pattern="noise"`` draws ``U = torch.rand(|R|, dtype=float64)`` and gives the
``j``-th ring bin the phase ``φ_j = 2π·U_j``; ``pattern="grating"`` draws
``j = torch.randint(|R|, (1,))`` (the bin) then ``φ = 2π·torch.rand(1, dtype=float64)``.
"Random orientation" for the grating thus means one of the grid directions on the ring, so the
cosine is exactly periodic on the tile and all its power sits in the bins ``±k*``.

References:
    R. Lu, D. Juodelyte, J. D. Victor, V. Cheplygina, "Exploring connections of spectral analysis
    and transfer learning in medical imaging", SPIE Medical Imaging 2025, arXiv:2407.11379.
    Fu et al., "The intriguing effect of frequency disentangled learning on medical image
    segmentation", SPIE Medical Imaging 2024.
"""

from __future__ import annotations

import functools
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
    # Built in float64 on CPU (not every device has float64, e.g. MPS), then moved as float32.
    return _transfer_cpu(height, width, float(magnitude), kind, edge, half).to(device, copy=True)


@functools.lru_cache(maxsize=64)
def _transfer_cpu(height: int, width: int, magnitude: float, kind: str, edge: str, half: bool):
    """Cached CPU transfer mask (a run calls ``sweep`` once per batch: build each mask once).

    Callers must not modify the returned tensor (:func:`transfer` hands out copies).
    """
    r = radial_frequency(height, width, half=half)
    cut = magnitude * max_radius(height, width)
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


def _chunks(images: torch.Tensor) -> list[slice]:
    """One slice per image: every FFT runs on exactly one image's ``[1, C, H, W]``.

    Why per image: (1) pocketfft groups the many 1-D transforms of a call into SIMD blocks, so an
    image's last float bits could depend on which other images share the call, and a flipped
    rounding at a half grey level would make results depend on the batch; (2) one image's planes
    stay in cache across mask-multiply, inverse transform and rounding (measured on 64 × 3 × 224²
    with 1 torch thread: the same ops over the whole batch at once were ~4× slower).
    """
    return [slice(i, i + 1) for i in range(images.shape[0])]


def _empty_like_images(images: torch.Tensor) -> torch.Tensor:
    """An uninitialised uint8 batch of ``images``' shape, device and layout (NCHW or NHWC)."""
    fmt = torch.channels_last if is_channels_last(images) else torch.contiguous_format
    return torch.empty(images.shape, dtype=torch.uint8, device=images.device, memory_format=fmt)


def _store_rounded(out: torch.Tensor, values: torch.Tensor) -> None:
    """``out[:] = clamp(round_half_even(values), 0, 255)``; ``values`` is used as scratch.

    The rounded, clamped values are whole numbers in 0..255, so the float → uint8 copy is exact.
    """
    out.copy_(values.round_().clamp_(0, 255))


def _rfft2_chunked(images: torch.Tensor) -> torch.Tensor:
    """``rfft2`` of a uint8 batch as complex64 ``[B, C, H, W // 2 + 1]``, a chunk at a time."""
    b, c, h, w = images.shape
    spectrum = torch.empty(b, c, h, w // 2 + 1, dtype=torch.complex64, device=images.device)
    for part in _chunks(images):
        spectrum[part] = torch.fft.rfft2(images[part].to(torch.float32))
    return spectrum


def _filter_spectrum(
    spectrum: torch.Tensor, mask: torch.Tensor, like: torch.Tensor
) -> torch.Tensor:
    """``clamp(round(irfft2(T · X)))`` as uint8 in ``like``'s shape and layout."""
    out = _empty_like_images(like)
    size = tuple(like.shape[-2:])
    for part in _chunks(like):
        _store_rounded(out[part], torch.fft.irfft2(spectrum[part] * mask, s=size))
    return out


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
    _check_choice(kind, ("lowpass", "highpass"), "kind")
    _check_choice(edge, _EDGES, "edge")
    if not 0.0 <= float(magnitude) <= 1.0:
        raise UserInputError(f"{kind}: magnitude must be in [0, 1]; got {magnitude!r}")
    mask = _transfer_cpu(h, w, float(magnitude), kind, edge, True).to(images.device)
    return _filter_spectrum(_rfft2_chunked(images), mask, images)


@dataclass
class _FilterState:
    images: torch.Tensor  # the uint8 batch (for shape, device and layout of the outputs)
    spectrum: torch.Tensor  # rfft2 of the batch, complex64 [B, 3, H, W // 2 + 1]
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
        return _FilterState(images, _rfft2_chunked(images))

    def apply(self, state: _FilterState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        mask = state.masks.get(magnitude)
        if mask is None:
            h, w = state.images.shape[-2:]
            mask = _transfer_cpu(h, w, float(magnitude), self.kind, self.edge, True)
            mask = mask.to(state.spectrum.device)
            state.masks[magnitude] = mask
        return _filter_spectrum(state.spectrum, mask, state.images)


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
    mask: torch.Tensor, pattern: Pattern, generators: list[torch.Generator], device: Any
) -> torch.Tensor:
    """``A`` (complex64 ``[B, H, W]`` on ``device``) drawn as documented in the module docstring.

    Draws happen on CPU in float64, one generator per image; only the ring's bins are drawn and
    written (a few hundred of the ``H·W`` coefficients), so no full-grid trigonometry is needed.
    """
    h, w = mask.shape
    b = len(generators)
    bins = mask.flatten().nonzero().squeeze(1)  # ring bins in row-major fft order
    if pattern == "noise":
        u = torch.empty(b, len(bins), dtype=torch.float64)
        for i, g in enumerate(generators):
            torch.rand(len(bins), generator=g, dtype=torch.float64, out=u[i])
        index = bins.expand(b, -1)
    else:
        u = torch.empty(b, 1, dtype=torch.float64)
        index = torch.empty(b, 1, dtype=torch.int64)
        for i, g in enumerate(generators):
            index[i, 0] = bins[int(torch.randint(len(bins), (1,), generator=g))]
            torch.rand(1, generator=g, dtype=torch.float64, out=u[i])
    phase = (2.0 * math.pi * u).to(torch.float32)
    values = torch.polar(torch.ones_like(phase), phase)
    a = torch.zeros(b, h * w, dtype=torch.complex64, device=device)
    a.scatter_(1, index.to(device), values.to(device))
    return a.view(b, h, w)


@dataclass
class _RingState:
    images: torch.Tensor  # uint8 [B, 3, H, W]
    pattern: torch.Tensor  # float32 [B, 1, H, W], unit RMS, broadcast over channels


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
        generators = [ctx.generator(i, None) for i in range(b)]
        pattern = torch.empty(b, 1, h, w, dtype=torch.float32, device=images.device)
        for part in _chunks(images):
            # complex64 on the device (float64 is not available everywhere, e.g. MPS).
            coeffs = _ring_coefficients(mask, self.pattern, generators[part], images.device)
            pattern[part, 0] = ring_pattern(coeffs)
        return _RingState(images, pattern)

    def apply(self, state: _RingState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        out = _empty_like_images(state.images)
        for part in _chunks(state.images):
            # uint8 + float32 promotes to float32: x + m·p in one pass, then round/clamp/store.
            added = torch.add(state.images[part], state.pattern[part], alpha=float(magnitude))
            _store_rounded(out[part], added)
        return out
