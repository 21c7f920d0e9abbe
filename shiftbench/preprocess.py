"""Model-side preprocessing, applied after the shift on the run's device.

``uint8 [B, 3, H, W]`` → resize to ``input_size × input_size`` (bilinear, antialiased; skipped
when the batch already has that size) → scale to ``[0, 1]`` → normalise per channel:

    x = (u / 255 − mean) / std = u · (1 / (255 · std)) − mean / std

The two steps are folded into one multiply-add. Defaults when a checkpoint does not say
(recorded in the run manifest as ``defaults_used``): ImageNet ``mean``/``std`` and the data's own
image size (no resize).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize + scale + normalise, as a callable on uint8 batches.

    Attributes:
        input_size: side of the square model input in pixels; ``None`` keeps the data's size.
        mean: per-channel mean of the ``[0, 1]``-scaled input (RGB order).
        std: per-channel standard deviation (RGB order), all > 0.
        channels_last: return a channels-last tensor (can be faster for convnets).
    """

    input_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channels_last: bool = False
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB); got {self.mean}, {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0; got {self.std}")
        if self.input_size is not None and int(self.input_size) < 1:
            raise ValueError(f"input_size must be a positive integer; got {self.input_size}")

    @property
    def key(self) -> tuple:
        """Hashable identity: two checkpoints with the same key share one preprocessed batch."""
        return (self.input_size, tuple(self.mean), tuple(self.std), self.channels_last)

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._cache.get(device)
        if cached is None:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
            cached = ((1.0 / (255.0 * std)).to(device), (-mean / std).to(device))
            self._cache[device] = cached
        return cached

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8 [B, 3, H, W]`` (any device) → normalised ``float32 [B, 3, S, S]``."""
        x = images.float()
        size = self.input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        scale, bias = self._affine(x.device)
        return torch.addcmul(bias, x, scale)
