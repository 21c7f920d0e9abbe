"""The shift operator contract: every registered shift subclasses :class:`Shift`.

A shift is a pure, batched function of a ``uint8`` RGB batch ``[B, 3, H, W]`` and a scalar
magnitude. Subclasses implement two hooks:

* :meth:`Shift.prepare` — per-image work that does not depend on the magnitude (e.g. the Macenko
  decomposition), run once per :meth:`Shift.sweep`;
* :meth:`Shift.apply` — the magnitude-dependent part, run once per magnitude.

The base class owns everything else, so every shift behaves the same: input checks, magnitude
checks (``ValueError`` naming the valid range), the identity magnitude (returns a bit-exact copy
without calling the hooks), float input, and randomness. Randomness comes only from per-sample
``torch.Generator`` objects derived from ``(seed, sample_id, shift name, magnitude)`` via
:func:`~shiftbench.rng.derive_seed` (re-exported here), so a sample's output does not depend on
batch size, batch order or device; a shift that does not declare ``stochastic = True`` gets no
generator (:meth:`SweepContext.generator` raises), so undeclared randomness cannot slip in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from shiftbench.errors import UserInputError
from shiftbench.registry import register_shift
from shiftbench.rng import derive_seed, generator_for

__all__ = ["Shift", "Sweep", "SweepContext", "check_images", "derive_seed"]


@dataclass
class SweepContext:
    """What a shift's hooks may know besides the pixels.

    Attributes:
        shift: registered name of the shift.
        seed: base seed of the run.
        sample_ids: one stable integer id per image of the batch (e.g. its index in the data set).
        device: device of the batch.
        report: counters a shift may fill in :meth:`Shift.prepare` (e.g. ``{"unchanged": 2}`` for
            images with too little tissue for a stable stain estimate); read via ``Sweep.report``.
        stochastic: the shift declared ``stochastic = True``; only then may it ask for
            generators.
    """

    shift: str
    seed: int
    sample_ids: list[int]
    device: torch.device
    report: dict[str, Any] = field(default_factory=dict)
    stochastic: bool = True

    def generator(self, index: int, magnitude: float | None = None) -> torch.Generator:
        """CPU generator for image ``index`` of the batch (draw on CPU, then move to device).

        Raises:
            RuntimeError: the shift did not declare ``stochastic = True`` (its runs would not
                record that the seed matters).
        """
        if not self.stochastic:
            raise RuntimeError(
                f"shift {self.shift!r} draws random numbers but does not declare "
                "stochastic = True; set it on the class"
            )
        return generator_for(self.seed, self.sample_ids[index], self.shift, magnitude)


def check_images(images: Any, name: str = "images") -> None:
    """Raise :class:`UserInputError` unless ``images`` is a ``[B, 3, H, W]`` uint8/float tensor."""
    if not isinstance(images, torch.Tensor):
        raise UserInputError(
            f"{name} must be a torch.Tensor [B, 3, H, W] (uint8 RGB); got {type(images).__name__}"
        )
    if images.ndim != 4:
        hint = " (a single image? add a batch axis with images[None])" if images.ndim == 3 else ""
        raise UserInputError(
            f"{name} must have shape [B, 3, H, W]; got {tuple(images.shape)}{hint}"
        )
    if images.shape[1] != 3:
        hint = (
            "; channels-last input? use images.permute(0, 3, 1, 2)"
            if images.shape[-1] == 3
            else "; convert grayscale/RGBA images to RGB first"
        )
        raise UserInputError(
            f"{name} must be RGB with 3 channels at dim 1; got shape {tuple(images.shape)}{hint}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UserInputError(
            f"{name} must be uint8 (0..255) or float (0..1); got dtype {images.dtype}"
        )


class Sweep:
    """Iterable of ``(magnitude, shifted_batch)`` over the magnitudes of one sweep.

    Per-image work (:meth:`Shift.prepare`) runs at most once, lazily, on the first magnitude that
    is not the identity. After iteration, :attr:`report` holds the counters the shift filled in.
    """

    def __init__(
        self, shift: Shift, images: torch.Tensor, magnitudes: Sequence[float], ctx: SweepContext
    ) -> None:
        self.shift = shift
        self.images = images
        self.magnitudes = list(magnitudes)
        self.ctx = ctx
        self._state: Any = None
        self._prepared = False

    @property
    def report(self) -> dict[str, Any]:
        return self.ctx.report

    def __len__(self) -> int:
        return len(self.magnitudes)

    def __iter__(self) -> Iterator[tuple[float, torch.Tensor]]:
        images = self.images
        is_float = images.is_floating_point()
        if is_float and images.numel():
            lo, hi = float(images.min()), float(images.max())
            if lo < 0.0 or hi > 1.0:
                raise UserInputError(
                    f"float images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}] "
                    "(divide uint8 images by 255, or pass them as uint8)"
                )
        if is_float:
            images_u8 = images.mul(255.0).round_().to(torch.uint8)
        else:
            images_u8 = images
        for m in self.magnitudes:
            if m == self.shift.identity:
                # Bit-exact identity, also for float input (no uint8 round trip).
                yield m, images.clone()
                continue
            if not self._prepared:
                self._state = self.shift.prepare(images_u8, self.ctx)
                self._prepared = True
            out = self.shift.apply(self._state, m, self.ctx)
            if is_float:
                out = out.to(images.dtype).div_(255.0)
            yield m, out


class Shift:
    """Base class of all shifts. Subclasses that set ``name`` register themselves.

    Class attributes every shift declares next to its math:
        name: CLI name (unique; a duplicate raises ``ValueError`` at import).
        magnitudes: default sweep, ordered from the identity to the strongest shift.
        identity: the magnitude that returns the input unchanged.
        units: what the magnitude measures, for tables and figure axes.
        description: one line for ``shiftbench shifts``.
        valid_range: inclusive ``(low, high)`` range of accepted magnitudes (``math.inf`` allowed).
        integer_magnitude: magnitudes must be whole numbers (kernel sizes, patch counts).
        stochastic: the shift draws random numbers (needs a seed / generator).
    """

    name: ClassVar[str]
    magnitudes: ClassVar[tuple[float, ...]]
    identity: ClassVar[float]
    units: ClassVar[str]
    description: ClassVar[str]
    valid_range: ClassVar[tuple[float, float]]
    integer_magnitude: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # abstract intermediate class
        for attr in ("magnitudes", "identity", "units", "description", "valid_range"):
            if not hasattr(cls, attr):
                raise TypeError(f"shift {cls.name!r} must declare class attribute {attr!r}")
        if cls.identity not in cls.magnitudes:
            raise TypeError(f"shift {cls.name!r}: identity {cls.identity} not in its sweep")
        register_shift(cls)

    # -- parameters ---------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Non-magnitude parameters of this instance (recorded in run manifests)."""
        return {}

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({ps})"

    # -- checks -------------------------------------------------------------------------------
    def range_text(self) -> str:
        lo, hi = self.valid_range
        kind = "integers" if self.integer_magnitude else "numbers"
        hi_s = "∞" if math.isinf(hi) else f"{hi:g}"
        return f"{kind} in [{lo:g}, {hi_s}]"

    def check_magnitude(self, magnitude: Any) -> float:
        """Validate one magnitude; returns it as float.

        Raises:
            UserInputError (a ``ValueError``): not a finite number, outside ``valid_range``, or not
            a whole number for an integer shift. The message names the valid range.
        """
        if getattr(magnitude, "ndim", 0) != 0 or isinstance(magnitude, list | tuple):
            raise UserInputError(
                f"{self.name}: magnitude {magnitude!r} is not one number; pass one magnitude per "
                "call, or several to sweep(images, magnitudes)"
            )
        try:
            m = float(magnitude)
        except (TypeError, ValueError):
            raise UserInputError(
                f"{self.name}: magnitude {magnitude!r} is not a number; valid: {self.range_text()}"
            ) from None
        lo, hi = self.valid_range
        if not math.isfinite(m) or m < lo or m > hi:
            raise UserInputError(
                f"{self.name}: magnitude {magnitude!r} out of range; valid: {self.range_text()}"
            )
        if self.integer_magnitude and m != int(m):
            raise UserInputError(
                f"{self.name}: magnitude {magnitude!r} must be a whole number; "
                f"valid: {self.range_text()}"
            )
        return m

    # -- public API -----------------------------------------------------------------------------
    def sweep(
        self,
        images: torch.Tensor,
        magnitudes: Iterable[float] | None = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        sample_ids: Sequence[int] | torch.Tensor | None = None,
    ) -> Sweep:
        """Shift ``images`` at every magnitude, reusing per-image work across magnitudes.

        Args:
            images: ``[B, 3, H, W]`` RGB batch, ``uint8`` (0..255) or float (0..1), any device.
            magnitudes: one or more magnitudes (a sequence, 1-D array or tensor); ``None``
                (the default) means the shift's default sweep (:attr:`magnitudes`). All are
                validated before any work is done; an empty sequence is an error.
            generator: source of the base seed when ``seed`` is not given (one draw).
            seed: base seed; with ``sample_ids`` it fixes every random draw (default 0).
            sample_ids: one stable id per image (default ``0..B-1``). Pass data-set indices so
                results do not depend on batching.

        Returns:
            A :class:`Sweep` yielding ``(magnitude, shifted)`` with ``shifted`` of the input's
            shape, dtype and device. The input is never modified.
        """
        check_images(images)
        mags = [self.check_magnitude(m) for m in self._magnitude_list(magnitudes)]
        ctx = self._context(images, generator, seed, sample_ids)
        return Sweep(self, images, mags, ctx)

    def __call__(
        self,
        images: torch.Tensor,
        magnitude: float,
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
        sample_ids: Sequence[int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Shift ``images`` at one magnitude (see :meth:`sweep` for the arguments)."""
        sweep = self.sweep(
            images, [magnitude], generator=generator, seed=seed, sample_ids=sample_ids
        )
        return next(iter(sweep))[1]

    def _magnitude_list(self, magnitudes: Iterable[float] | None) -> list[Any]:
        if magnitudes is None:
            return list(self.magnitudes)
        if isinstance(magnitudes, str | bytes) or getattr(magnitudes, "ndim", 1) != 1:
            raise UserInputError(
                f"{self.name}: magnitudes must be a sequence or 1-D array of numbers; got "
                f"{magnitudes!r} (one magnitude: shift(images, m))"
            )
        mags = list(magnitudes)
        if not mags:
            raise UserInputError(
                f"{self.name}: no magnitudes given; pass at least one, or None for the default "
                f"sweep ({', '.join(format(float(m), 'g') for m in self.magnitudes)})"
            )
        return mags

    def _context(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None,
        seed: int | None,
        sample_ids: Sequence[int] | torch.Tensor | None,
    ) -> SweepContext:
        if seed is None:
            if generator is not None and self.stochastic:
                seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
            else:
                seed = 0
        n = images.shape[0]
        if sample_ids is None:
            ids = list(range(n))
        else:
            ids = [
                int(i) for i in (sample_ids.tolist() if torch.is_tensor(sample_ids) else sample_ids)
            ]
            if len(ids) != n:
                raise UserInputError(f"got {len(ids)} sample_ids for a batch of {n} images")
        return SweepContext(
            shift=self.name,
            seed=int(seed),
            sample_ids=ids,
            device=images.device,
            stochastic=bool(self.stochastic),
        )

    # -- hooks for subclasses ---------------------------------------------------------------------
    def prepare(self, images: torch.Tensor, ctx: SweepContext) -> Any:
        """Per-image work shared by all magnitudes. ``images`` is uint8 ``[B, 3, H, W]``.

        Must not modify ``images``. The default keeps the images themselves as the state.
        """
        return images

    def apply(self, state: Any, magnitude: float, ctx: SweepContext) -> torch.Tensor:
        """Return the uint8 batch shifted by ``magnitude`` (never the identity; never in place)."""
        raise NotImplementedError
