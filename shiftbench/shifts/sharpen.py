"""``sharpen``: blend an image with its 3×3 sharpened version, bit-exact with OpenCV.

The paper (Pohjonen et al. 2022, §2.3.2) sharpens with ``cv2.filter2D`` and the kernel ``K``
below, then mixes the result with the original image with weight ``α`` (``cv2.addWeighted``).

Default ``mode="blend"`` (the paper's)::

    K       = [[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]]
    x_sharp = saturate(filter2D(x, K))                       # uint8, border REFLECT_101
    out     = round_half_even(fma(x, fl32(1 − α), fl32(x_sharp · fl32(α))))   # cv2.addWeighted

``filter2D`` with this integer kernel is exact integer arithmetic (``x_sharp = clamp(10·x −
Σ_{3×3} x, 0, 255)``); it saturates to ``[0, 255]`` *before* the blend, as OpenCV does for uint8.
The blend is OpenCV 5.0's ``addWeighted`` for uint8 (float32 weights, one fused multiply-add,
round half to even, saturate), verified on all 256×256 input pairs at every default ``α``.

``mode="kernel"`` applies the blended kernel once instead::

    K_α = (1 − α)·I + α·K        (I: the 3×3 identity kernel; centre 1 + 8α, neighbours −α)
    out = saturate(round_half_even(filter2D(x, K_α)))

which is ``x + α·(9x − Σ_{3×3} x)`` before rounding: the same as ``blend`` where ``x_sharp`` is
not clipped, and a stronger shift near edges where it is. OpenCV evaluates ``filter2D`` for a
float kernel as a chain of float32 fused multiply-adds over the taps in row-major order; the
torch backend reproduces that chain.

Backends: on CPU the shift calls ``cv2.filter2D`` / ``cv2.addWeighted`` itself (threads, written
straight into the output tensor; the sharpened image is computed once per sweep). On other devices
it uses torch: integer arithmetic for ``x_sharp``, a 256×256 lookup table per ``α`` for the blend
(built from the formula above), and the float32 FMA chain for ``mode="kernel"``.

References:
    OpenCV ``cv::filter2D`` (https://docs.opencv.org/5.x/d4/d86/group__imgproc__filter.html),
    ``cv::addWeighted`` (https://docs.opencv.org/5.x/d2/de8/group__core__array.html).
    J. Pohjonen et al., the spectral decoupling paper, iScience 2022, §2.3.2.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from shiftbench.errors import UserInputError
from shiftbench.shifts._planes import backend_for as _backend_for
from shiftbench.shifts._planes import dense, is_channels_last, map_elementwise, map_images
from shiftbench.shifts.base import Shift, SweepContext
from shiftbench.shifts.blur import reflect101_index

__all__ = ["SHARPEN_KERNEL", "Sharpen", "blend_kernel", "sharpen", "sharpened"]

Mode = Literal["blend", "kernel"]
Backend = Literal["auto", "cv2", "torch"]
_MODES = ("blend", "kernel")
_BACKENDS = ("auto", "cv2", "torch")

SHARPEN_KERNEL = np.array([[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]], dtype=np.float64)
_IDENTITY_KERNEL = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64)


def blend_kernel(alpha: float) -> np.ndarray:
    """``K_α = (1 − α)·I + α·K`` as float64 ``3×3`` (the kernel of ``mode="kernel"``)."""
    return (1.0 - alpha) * _IDENTITY_KERNEL + alpha * SHARPEN_KERNEL


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise UserInputError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _like(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return out.contiguous(memory_format=torch.channels_last) if is_channels_last(ref) else out


def _padded(images: torch.Tensor) -> torch.Tensor:
    """REFLECT_101 padding by one pixel on each side (cv2's default border)."""
    h, w = images.shape[-2:]
    dev = images.device
    return images.index_select(2, reflect101_index(h, 1, 1, dev)).index_select(
        3, reflect101_index(w, 1, 1, dev)
    )


# -- x_sharp = saturate(filter2D(x, K)) ---------------------------------------------------------
def _sharpened_torch(images: torch.Tensor) -> torch.Tensor:
    p = _padded(images).to(torch.int16)  # |10·x − Σ| ≤ 2550 fits int16
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    return _like((images.to(torch.int16) * 10 - box).clamp_(0, 255).to(torch.uint8), images)


def _sharpened_cv2(images: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    import cv2

    def one(src: Any, dst: Any) -> None:
        cv2.filter2D(src, -1, kernel, dst=dst, borderType=cv2.BORDER_REFLECT_101)

    return map_images(one, dense(images))


def sharpened(images: torch.Tensor, *, backend: Backend = "auto") -> torch.Tensor:
    """``saturate(filter2D(x, K))`` for a uint8 batch ``[B, C, H, W]`` (the paper's ``x_sharp``).

    Pixel-identical to ``cv2.filter2D(img, -1, K)`` (border REFLECT_101) on any device.
    """
    _check_uint8(images)
    _check_choice(backend, _BACKENDS, "backend")
    if _backend_for(images, backend) == "cv2":
        return _sharpened_cv2(images, SHARPEN_KERNEL)
    return _sharpened_torch(images)


# -- blend: cv2.addWeighted(x, 1 − α, x_sharp, α, 0) ----------------------------------------------
@functools.lru_cache(maxsize=64)
def _blend_lut(alpha: float) -> torch.Tensor:
    """uint8 table ``lut[256·x + s]`` = addWeighted(x, 1 − α, s, α, 0) for all uint8 pairs.

    float32 weights; ``fma(x, a, fl32(s·b))`` is evaluated exactly in float64 (products of an
    8-bit and a 24-bit number are exact there) and rounded once to float32, then half-to-even.
    """
    a = torch.tensor(1.0 - alpha, dtype=torch.float32)
    b = torch.tensor(alpha, dtype=torch.float32)
    v = torch.arange(256, dtype=torch.float32)
    x, s = v[:, None], v[None, :]
    sb = s * b  # float32 product, rounded as cv2 does
    fused = (x.double() * a.double() + sb.double()).float()
    return fused.round().clamp(0, 255).to(torch.uint8).reshape(-1)


def _blend_torch(pair_index: torch.Tensor, alpha: float, ref: torch.Tensor) -> torch.Tensor:
    lut = _blend_lut(float(alpha)).to(pair_index.device)
    return _like(lut.index_select(0, pair_index.reshape(-1)).view(pair_index.shape), ref)


def _blend_cv2(images: torch.Tensor, sharp: torch.Tensor, alpha: float) -> torch.Tensor:
    import cv2

    def one(x: Any, s: Any, dst: Any) -> None:
        cv2.addWeighted(x, 1.0 - alpha, s, alpha, 0.0, dst=dst)

    return map_elementwise(one, [images, sharp])


# -- mode="kernel": saturate(filter2D(x, K_α)) -----------------------------------------------------
def _kernel_torch(padded: torch.Tensor, alpha: float, ref: torch.Tensor) -> torch.Tensor:
    """float32 FMA chain over the 9 taps in row-major order, as cv2's filter2D computes it."""
    h, w = padded.shape[-2] - 2, padded.shape[-1] - 2
    k32 = blend_kernel(alpha).astype(np.float32)
    acc: torch.Tensor | None = None
    for i in range(3):
        for j in range(3):
            k = float(k32[i, j])  # exactly representable in float64
            if k == 0.0:
                continue  # cv2 skips zero taps
            tap = padded[:, :, i : i + h, j : j + w].to(torch.float64) * k
            # fma(tap, k, acc): exact in float64 (8-bit × 24-bit products), one float32 rounding
            acc = (tap if acc is None else tap.add_(acc)).to(torch.float32)
    assert acc is not None
    return _like(acc.round_().clamp_(0, 255).to(torch.uint8), ref)


def _kernel_cv2(images: torch.Tensor, alpha: float) -> torch.Tensor:
    return _sharpened_cv2(images, blend_kernel(alpha))


def _check_uint8(images: Any) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise UserInputError("sharpen expects a uint8 tensor [B, C, H, W]")


def sharpen(
    images: torch.Tensor, alpha: float, *, mode: Mode = "blend", backend: Backend = "auto"
) -> torch.Tensor:
    """Sharpen a uint8 batch by ``α`` (see the module docstring for the formulas).

    Args:
        images: uint8 ``[B, C, H, W]`` on any device. Not modified.
        alpha: blend weight ``α`` in ``[0, 1]`` (0: unchanged copy, 1: fully sharpened).
        mode: ``"blend"`` (paper: ``addWeighted(x, 1 − α, saturate(filter2D(x, K)), α)``) or
            ``"kernel"`` (``saturate(filter2D(x, (1 − α)·I + α·K))``).
        backend: ``"cv2"`` (CPU only), ``"torch"`` or ``"auto"`` (cv2 on CPU). Same pixels.

    Returns:
        uint8 tensor of the input's shape, device and memory format.
    """
    _check_uint8(images)
    _check_choice(mode, _MODES, "mode")
    _check_choice(backend, _BACKENDS, "backend")
    if not 0.0 <= float(alpha) <= 1.0:
        raise UserInputError(f"alpha must be in [0, 1]; got {alpha!r}")
    if alpha == 0:
        return images.clone()
    images = dense(images)
    use_cv2 = _backend_for(images, backend) == "cv2"
    if mode == "blend":
        if use_cv2:
            return _blend_cv2(images, _sharpened_cv2(images, SHARPEN_KERNEL), float(alpha))
        return _blend_torch(_pair_index(images), float(alpha), images)
    if use_cv2:
        return _kernel_cv2(images, float(alpha))
    return _kernel_torch(_padded(images), float(alpha), images)


def _pair_index(images: torch.Tensor) -> torch.Tensor:
    """``256·x + x_sharp`` (int32): the blend's lookup-table index, computed once per sweep."""
    return images.to(torch.int32) * 256 + _sharpened_torch(images)


@dataclass
class _SharpenState:
    images: torch.Tensor
    backend: str
    sharp: torch.Tensor | None = None  # blend: x_sharp (cv2 backend)
    pair_index: torch.Tensor | None = None  # blend: 256·x + x_sharp (torch backend)
    padded: torch.Tensor | None = None  # kernel: REFLECT_101-padded images (torch backend)


class Sharpen(Shift):
    """3×3 sharpening blended with the original image, the paper's sharpen shift.

    Magnitude: blend weight ``α`` (0..1, unitless); ``α = 0`` is the identity. Default sweep
    ``α = 0, 0.1, …, 1`` (paper §2.3.2). Pixel-identical to ``cv2.filter2D`` +
    ``cv2.addWeighted`` (``mode="blend"``) or ``cv2.filter2D`` with ``(1 − α)·I + α·K``
    (``mode="kernel"``); see the module docstring.

    Args:
        mode: ``"blend"`` (default, paper) or ``"kernel"``.
        backend: ``"auto"`` (default: cv2 on CPU, torch elsewhere), ``"cv2"`` or ``"torch"``.
    """

    name: ClassVar[str] = "sharpen"
    magnitudes: ClassVar[tuple[float, ...]] = (
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        1.0,
    )
    identity: ClassVar[float] = 0.0
    units: ClassVar[str] = "blend weight α"
    description: ClassVar[str] = "3×3 sharpening blended with the image, bit-exact with cv2"
    valid_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, mode: Mode = "blend", backend: Backend = "auto") -> None:
        _check_choice(mode, _MODES, "mode")
        _check_choice(backend, _BACKENDS, "backend")
        self.mode = mode
        self.backend = backend

    def params(self) -> dict[str, Any]:
        return {"mode": self.mode, "backend": self.backend}

    def prepare(self, images: torch.Tensor, ctx: SweepContext) -> _SharpenState:
        images = dense(images)
        state = _SharpenState(images, _backend_for(images, self.backend))
        if self.mode == "blend":
            if state.backend == "cv2":
                state.sharp = _sharpened_cv2(images, SHARPEN_KERNEL)
            else:
                state.pair_index = _pair_index(images)
        elif state.backend == "torch":
            state.padded = _padded(images)
        return state

    def apply(self, state: _SharpenState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        alpha = float(magnitude)
        if self.mode == "blend":
            if state.backend == "cv2":
                assert state.sharp is not None
                return _blend_cv2(state.images, state.sharp, alpha)
            assert state.pair_index is not None
            return _blend_torch(state.pair_index, alpha, state.images)
        if state.backend == "cv2":
            return _kernel_cv2(state.images, alpha)
        assert state.padded is not None
        return _kernel_torch(state.padded, alpha, state.images)
