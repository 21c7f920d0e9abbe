"""``blur``: n×n mean (box) filter, bit-exact with OpenCV's ``cv2.blur``.

The paper (Pohjonen et al. 2022, §2.3.2) blurs test images with ``cv2.blur`` at kernel sizes
1..20; this module reproduces those pixels exactly, batched and on any device.

Formula, for output pixel ``(y, x)`` of each channel, with ``b = n // 2``::

    S(y, x) = Σ_{i=0}^{n-1} Σ_{j=0}^{n-1} x_pad[y - b + i, x - b + j]
    blur(x)[y, x] = R_n(S(y, x))

``x_pad`` extends the image by mirror reflection without repeating the edge pixel (OpenCV
``BORDER_REFLECT_101``, ``dcb|abcd|cba``). For even ``n`` the window is not centred: it reaches
``n // 2`` pixels up/left and ``n - 1 - n // 2`` down/right (OpenCV's default anchor).
``R_n`` is OpenCV 5.0's rounding of the window mean ``S / n²`` (found by testing against
``cv2.blur`` for every n in 2..255 on real H&E tiles; see ``tests/test_shift_blur.py``)::

    n ≤ 17:  R_n(S) = ⌊(S + ⌊n²/2⌋ + c_n) / n²⌋,  c_n = 1 if n ∈ {2, 4, 8, 16} else 0
    n ≥ 18:  R_n(S) = round_half_even(fl32(S) · fl32(1 / n²))   (float32 product)

Backends: on CPU the shift calls ``cv2.blur`` itself per image (channels-last input) or per
``H×W`` plane (NCHW input), in threads, written straight into the output tensor; that is faster
than any eager-torch formulation. On other
devices it uses an integral image (summed-area table) computed once per sweep: each kernel size
then costs four lookups per pixel, independent of ``n``, followed by ``R_n`` in integer/float32
arithmetic. Both backends give identical pixels.

References:
    OpenCV ``cv::blur`` / ``cv::boxFilter``:
    https://docs.opencv.org/5.x/d4/d86/group__imgproc__filter.html
    J. Pohjonen et al., the spectral decoupling paper, iScience 2022, §2.3.2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from shiftbench.errors import UserInputError
from shiftbench.shifts._planes import backend_for as _backend_for
from shiftbench.shifts._planes import dense, is_channels_last, map_images
from shiftbench.shifts.base import Shift, SweepContext

__all__ = ["Blur", "box_blur", "reflect101_index"]

Backend = Literal["auto", "cv2", "torch"]
_BACKENDS = ("auto", "cv2", "torch")
MAX_KERNEL = 255  # R_n was verified against cv2 up to here; 255·n² < 2²⁴ keeps S exact in float32


def reflect101_index(length: int, before: int, after: int, device: Any = None) -> torch.Tensor:
    """Source indices of a ``BORDER_REFLECT_101`` padding of ``length`` by ``(before, after)``.

    Works for any padding, also wider than the image (the reflection repeats with period
    ``2·(length − 1)``, as ``cv::borderInterpolate`` does).

    Returns:
        int64 tensor of ``before + length + after`` indices into ``0..length-1``.
    """
    p = torch.arange(-before, length + after, device=device)
    if length == 1:
        return torch.zeros_like(p)
    period = 2 * (length - 1)
    m = torch.remainder(p, period)
    return torch.where(m >= length, period - m, m)


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise UserInputError(f"backend must be one of {', '.join(_BACKENDS)}; got {backend!r}")


@dataclass
class _Integral:
    """Summed-area table of a REFLECT_101-padded batch: ``table[..., r, c] = Σ pad[..., :r, :c]``."""

    table: torch.Tensor
    before: int  # padding rows/columns before the image
    after: int  # padding rows/columns after the image

    def fits(self, n: int) -> bool:
        return n // 2 <= self.before and n - 1 - n // 2 <= self.after


def _integral(images: torch.Tensor, before: int, after: int) -> _Integral:
    _, _, h, w = images.shape
    dev = images.device
    padded = images.index_select(2, reflect101_index(h, before, after, dev)).index_select(
        3, reflect101_index(w, before, after, dev)
    )
    # int32 while the total sum cannot overflow it (up to ~2900² px); int64 beyond.
    total = padded.shape[-2] * padded.shape[-1] * 255
    dtype = torch.int32 if total < 2**31 else torch.int64
    sums = padded.to(dtype).cumsum_(2).cumsum_(3)
    return _Integral(torch.nn.functional.pad(sums, (1, 0, 1, 0)), before, after)


def _round_mean(sums: torch.Tensor, n: int) -> torch.Tensor:
    """``R_n``: OpenCV 5.0's rounding of ``sums / n²`` to uint8 (see the module docstring)."""
    d = n * n
    if n <= 17:
        offset = d // 2 + (1 if n in (2, 4, 8, 16) else 0)
        return torch.div(sums + offset, d, rounding_mode="floor").to(torch.uint8)
    scale = torch.tensor(1.0 / d, dtype=torch.float32, device=sums.device)
    return sums.to(torch.float32).mul_(scale).round_().to(torch.uint8)


def _blur_from_integral(integral: _Integral, n: int, h: int, w: int) -> torch.Tensor:
    t = integral.table
    r1 = integral.before - n // 2  # first padded row of the window of output row 0
    rows = t[:, :, r1 + n : r1 + n + h] - t[:, :, r1 : r1 + h]  # sums over n rows, [.., h, W+1]
    sums = rows[..., r1 + n : r1 + n + w] - rows[..., r1 : r1 + w]
    return _round_mean(sums, n)


def _blur_cv2(images: torch.Tensor, n: int) -> torch.Tensor:
    import cv2

    def one(src: Any, dst: Any) -> None:
        cv2.blur(src, (n, n), dst=dst, borderType=cv2.BORDER_REFLECT_101)

    return map_images(one, dense(images))


def box_blur(images: torch.Tensor, n: int, *, backend: Backend = "auto") -> torch.Tensor:
    """n×n mean filter of a uint8 batch, pixel-identical to ``cv2.blur(img, (n, n))``.

    Args:
        images: uint8 ``[B, C, H, W]`` on any device. Not modified.
        n: kernel side length in pixels, ``1 ≤ n ≤ 255``; ``n = 1`` returns a copy.
        backend: ``"cv2"`` (CPU only), ``"torch"`` (integral image, any device) or ``"auto"``
            (``cv2`` on CPU, ``torch`` elsewhere). Both give identical pixels.

    Returns:
        uint8 tensor of the input's shape on its device: ``R_n(window sum)`` per pixel, with
        REFLECT_101 borders and OpenCV's anchor (see the module docstring).
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise UserInputError("box_blur expects a uint8 tensor [B, C, H, W]")
    _check_backend(backend)
    if not (isinstance(n, int) and 1 <= n <= MAX_KERNEL):
        raise UserInputError(f"kernel size must be an integer in [1, {MAX_KERNEL}]; got {n!r}")
    if n == 1:
        return images.clone()
    if _backend_for(images, backend) == "cv2":
        return _blur_cv2(images, n)
    h, w = images.shape[-2:]
    out = _blur_from_integral(_integral(images, n // 2, n - 1 - n // 2), n, h, w)
    return _like(out, images)


def _like(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``out`` in ``ref``'s memory format (channels-last in, channels-last out)."""
    return out.contiguous(memory_format=torch.channels_last) if is_channels_last(ref) else out


@dataclass
class _BlurState:
    images: torch.Tensor
    backend: str
    integral: _Integral | None = None


class Blur(Shift):
    """n×n mean filter (``cv2.blur``), the paper's blur shift.

    Magnitude: kernel side length ``n`` in pixels (integer, 1..255); ``n = 1`` is the identity.
    Default sweep ``n = 1, 2, …, 20`` (paper §2.3.2). Pixels are identical to ``cv2.blur`` with
    its default border (``BORDER_REFLECT_101``) and anchor; see :func:`box_blur`.

    Args:
        backend: ``"auto"`` (default: ``cv2`` on CPU, integral image elsewhere), ``"cv2"`` or
            ``"torch"``. Results do not depend on it.
    """

    name: ClassVar[str] = "blur"
    magnitudes: ClassVar[tuple[float, ...]] = tuple(range(1, 21))
    identity: ClassVar[float] = 1
    units: ClassVar[str] = "kernel size (px)"
    description: ClassVar[str] = "n×n mean filter, bit-exact with cv2.blur"
    valid_range: ClassVar[tuple[float, float]] = (1, MAX_KERNEL)
    integer_magnitude: ClassVar[bool] = True

    def __init__(self, backend: Backend = "auto") -> None:
        _check_backend(backend)
        self.backend = backend

    def params(self) -> dict[str, Any]:
        return {"backend": self.backend}

    def prepare(self, images: torch.Tensor, ctx: SweepContext) -> _BlurState:
        backend = _backend_for(images, self.backend)
        state = _BlurState(dense(images), backend)
        if backend == "torch":
            # Pad once for the default sweep (n ≤ 20); a larger n re-pads lazily in apply.
            n_max = int(max(self.magnitudes))
            state.integral = _integral(state.images, n_max // 2, n_max - 1 - n_max // 2)
        return state

    def apply(self, state: _BlurState, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        n = int(magnitude)
        if state.backend == "cv2":
            return _blur_cv2(state.images, n)
        assert state.integral is not None
        if not state.integral.fits(n):
            before = max(state.integral.before, n // 2)
            after = max(state.integral.after, n - 1 - n // 2)
            state.integral = _integral(state.images, before, after)
        h, w = state.images.shape[-2:]
        return _like(_blur_from_integral(state.integral, n, h, w), state.images)
