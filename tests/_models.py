"""Tiny models, checkpoints and data sets for fast end-to-end tests (importable by any test).

* :func:`tiny_model` / :func:`save_tiny_checkpoint`: a timm ``test_resnet`` (0.37 M parameters)
  at 64 px, random weights fixed by a seed.
* :func:`write_oral_folder`, :func:`write_oral_csv`, :func:`write_oral_npz`: small copies of the
  real oral tiles (shared/data/oral_oscc_224, clean rows), downsized so tests stay fast.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

TINY_ARCH = "test_resnet"
TINY_SIZE = 64
CLASS_NAMES = ["Normal", "OSCC"]


def tiny_model(num_classes: int = 2, seed: int = 0, arch: str = TINY_ARCH) -> torch.nn.Module:
    """A small timm model with reproducible random weights (eval mode)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    # Spread the random classifier so that predictions depend on the image (not one class).
    with torch.no_grad():
        clf = model.get_classifier()
        clf.weight.mul_(20.0)
    return model.eval()


def save_tiny_checkpoint(
    path: Path,
    *,
    num_classes: int = 2,
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    input_size: int = TINY_SIZE,
    model: torch.nn.Module | None = None,
) -> Path:
    """Save a canonical ``shiftbench/1`` checkpoint of :func:`tiny_model`."""
    from shiftbench import save_checkpoint

    model = model if model is not None else tiny_model(num_classes, seed)
    return save_checkpoint(
        path,
        model,
        arch=TINY_ARCH,
        num_classes=num_classes,
        input_size=input_size,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        meta=dict(meta) if meta is not None else {"method": "test", "seed": seed},
        class_names=list(class_names) if class_names is not None else None,
    )


def oral_rows(n_per_class: int) -> list[dict[str, str]]:
    """``n_per_class`` clean oral rows per class, spread over the file list."""
    import pytest
    from conftest import ORAL, clean_oral_rows

    if not ORAL.exists():
        pytest.skip(f"shared data not found at {ORAL}")
    rows = clean_oral_rows()
    out = []
    for label in ("0", "1"):
        cls = [r for r in rows if r["label"] == label]
        step = max(1, len(cls) // n_per_class)
        out += cls[::step][:n_per_class]
    return out


def _small_rgb(rel: str, size: int) -> np.ndarray:
    import cv2
    from conftest import ORAL, read_rgb

    rgb = read_rgb(ORAL / rel)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def _write_image(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, path


def write_oral_folder(root: Path, n_per_class: int = 6, size: int = TINY_SIZE) -> Path:
    """Class-subfolder copy of real tiles (PNG, ``size``²): ``root/Normal``, ``root/OSCC``."""
    for r in oral_rows(n_per_class):
        name = Path(r["path"]).with_suffix(".png").name
        _write_image(root / r["class_name"] / name, _small_rgb(r["path"], size))
    return root


def write_oral_csv(
    root: Path, n_per_class: int = 6, size: int = TINY_SIZE, label_names: bool = False
) -> Path:
    """CSV manifest (``path,label,magnification``) of real tiles stored under ``root/img``."""
    rows = oral_rows(n_per_class)
    csv_path = root / "labels.csv"
    root.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "magnification"])
        for r in rows:
            rel = f"img/{Path(r['path']).with_suffix('.png').name}"
            _write_image(root / rel, _small_rgb(r["path"], size))
            w.writerow([rel, r["class_name"] if label_names else r["label"], r["magnification"]])
    return csv_path


def write_oral_npz(
    path: Path, n_per_class: int = 6, size: int = TINY_SIZE, compressed: bool = False
) -> Path:
    """``.npz`` with ``images`` (uint8 N×H×W×3), ``labels`` and ``class_names``."""
    rows = oral_rows(n_per_class)
    images = np.stack([_small_rgb(r["path"], size) for r in rows])
    labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    save = np.savez_compressed if compressed else np.savez
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path, images=images, labels=labels, class_names=np.array(CLASS_NAMES))
    return path


class NaNAfter(torch.nn.Module):
    """Wraps a model; every forward call after the first ``ok_calls`` returns NaN logits.

    Saved whole with ``torch.save`` it is a pickled module (needs ``--trust-checkpoint``).
    """

    def __init__(self, model: torch.nn.Module, ok_calls: int) -> None:
        super().__init__()
        self.model = model
        self.ok_calls = ok_calls
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.model(x)
        return out if self.calls <= self.ok_calls else out * float("nan")
