"""Training recipes: spectral decoupling (SD) vs weight decay (WD), over several seeds.

:func:`train` mirrors ``shiftbench train``. For each seed it trains one timm model
(``pretrained=False``) and writes, into ``out``:

* ``<name>_seed<S>.pt`` — a canonical ``shiftbench/1`` checkpoint (:func:`save_checkpoint`) whose
  ``meta`` records the recipe (method, seed, λ/γ, loss convention, weight decay, epochs,
  augmentation, optimiser, data fingerprint, validation metrics, grid results);
* ``<name>_seed<S>.log.csv`` — one row per epoch (losses, validation metrics, learning rate,
  seconds);
* ``<name>_seed<S>.grid.csv`` — with a λ/γ grid, one row per grid point (validation scores).

Recipe (all choices are recorded in the checkpoint meta):

* **method** ``wd``: cross-entropy, weight decay ``weight_decay`` (default 1e-4) on weights
  (not on biases and norm layers: timm's ``create_optimizer_v2`` filter).
  **method** ``sd``: cross-entropy + the spectral-decoupling penalty of
  :mod:`shiftbench.losses` (Eq. 1 with ``sd_lambda``, Eq. 2 with ``sd_lambdas``/``sd_gammas``);
  weight decay is off unless ``weight_decay`` is given (as in the paper).
* Optimiser ``adamw`` (decoupled decay) or ``sgd`` (momentum 0.9, Nesterov); learning rate: a
  linear warm-up over the first epoch (at most 10 % of the steps), then cosine decay to 0,
  updated every step.
* Images are resized once to ``input_size`` (bilinear, antialiased: the evaluation
  preprocessing of :class:`~shiftbench.preprocess.Preprocess`) and held in memory as uint8
  (``N·3·input_size²`` bytes: 8.7 MB for 711 images at 64 px, 150 MB for 1,000 at 224 px),
  augmented as uint8, then normalised with the training split's per-channel mean/std
  (stored in the checkpoint).
* The weights of the last epoch are saved (no early stopping); the validation split is used for
  monitoring and for choosing λ/γ on a grid.

Determinism: every random draw (initialisation, shuffling, augmentation, dropout) comes from
``seed``: shuffling and augmentation use a CPU ``torch.Generator`` seeded per epoch with
:func:`~shiftbench.rng.derive_seed`; initialisation and dropout use torch's global RNG
seeded inside :func:`torch.random.fork_rng`, so the caller's RNG state is untouched. Two runs with
the same arguments on the CPU give identical weights.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from shiftbench.errors import DataError, UserInputError
from shiftbench.losses import (
    BINARY_SD_LOSS_CONVENTION,
    SD_LOSS_CONVENTION,
    BinarySpectralDecouplingLoss,
    SpectralDecouplingLoss,
)
from shiftbench.rng import derive_seed

__all__ = [
    "AUGMENTATIONS",
    "UNIFORM_OPS",
    "TrainResult",
    "augment_batch",
    "load_training_data",
    "train",
    "train_one",
    "warmup_cosine",
]

AUGMENTATIONS = ("none", "basic", "uniform")
METHODS = ("sd", "wd")
OPTIMIZERS = ("adamw", "sgd")
HEADS = ("softmax", "binary-logit")
DEFAULT_LR = {"adamw": 1e-3, "sgd": 0.05}
DEFAULT_WEIGHT_DECAY = 1e-4


# ---------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------


def _sharpen(img: torch.Tensor, m: float) -> torch.Tensor:
    return TF.adjust_sharpness(img, m)


#: ``uniform`` augmentation ops: (name, low, high, function(img_u8, magnitude)). Each image gets
#: two ops drawn uniformly (with replacement), each applied with probability 0.5, with a
#: magnitude drawn uniformly from [low, high] (UniformAugment, Lingchen et al. 2020, with
#: histology-safe ranges). Sharpening is included (sharpness factor ≥ 1 only: factors < 1
#: would blend towards a smoothed image, i.e. blur); blur, noise and geometric warps are not.
UNIFORM_OPS: tuple[tuple[str, float, float, Callable[[torch.Tensor, float], torch.Tensor]], ...] = (
    ("brightness", 0.7, 1.3, TF.adjust_brightness),
    ("contrast", 0.7, 1.3, TF.adjust_contrast),
    ("saturation", 0.7, 1.3, TF.adjust_saturation),
    ("hue", -0.05, 0.05, TF.adjust_hue),
    ("gamma", 0.7, 1.4, TF.adjust_gamma),
    ("sharpness", 1.0, 3.0, _sharpen),
    ("posterize", 5.0, 8.99, lambda x, m: TF.posterize(x, int(m))),
    ("autocontrast", 0.0, 0.0, lambda x, m: TF.autocontrast(x)),
    ("equalize", 0.0, 0.0, lambda x, m: TF.equalize(x)),
)


def augment_batch(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a uint8 ``[B, 3, H, W]`` batch with draws from ``generator`` only.

    ``basic``: a random element of the dihedral group D4 per image (horizontal flip, then
    0–3 quarter turns; tissue has no orientation). ``uniform``: ``basic`` plus two
    :data:`UNIFORM_OPS`. ``none``: unchanged. Draws are made on the CPU generator in a fixed
    order, so the result depends only on the generator state and the batch.
    """
    if kind == "none":
        return images
    b = images.shape[0]
    flips = torch.randint(0, 2, (b,), generator=generator).tolist()
    turns = torch.randint(0, 4, (b,), generator=generator).tolist()
    if kind == "uniform":
        ops = torch.randint(0, len(UNIFORM_OPS), (b, 2), generator=generator).tolist()
        apply = (torch.rand((b, 2), generator=generator) < 0.5).tolist()
        unit = torch.rand((b, 2), generator=generator, dtype=torch.float64).tolist()
    out = []
    for i in range(b):
        img = images[i]
        if flips[i]:
            img = img.flip(-1)
        if turns[i]:
            img = torch.rot90(img, turns[i], dims=(-2, -1))
        if kind == "uniform":
            for j in range(2):
                if apply[i][j]:
                    _, lo, hi, fn = UNIFORM_OPS[ops[i][j]]
                    img = fn(img, lo + (hi - lo) * unit[i][j])
        out.append(img)
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainingData:
    """Images resized to ``input_size`` and held in memory as uint8, split into train/val."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    class_names: list[str]
    input_size: int
    fingerprint: str
    split_source: str  # "column" (the data's `split` column) or "random" (val_fraction)
    source: str


def _resize_u8(img: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(img.shape[-2:]) == (size, size):
        return img
    x = F.interpolate(
        img[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return x.round_().clamp_(0, 255).to(torch.uint8)[0]


def load_training_data(
    data: Any,
    *,
    input_size: int | None = None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    limit: int | None = None,
) -> TrainingData:
    """Read a data set into memory for training and split it into train/val.

    If the data set has a ``split`` column (CSV manifest), rows with ``split == "train"`` are
    trained on and rows with ``split == "val"`` validate (other rows, e.g. ``test``, are never
    read); without ``val`` rows, ``val_fraction`` of the train rows is held out. Without a
    ``split`` column, a stratified ``val_fraction`` of all rows (``split_seed``, the same for
    every training seed) is held out.

    Args:
        data: path understood by :func:`shiftbench.data.open_dataset`, or an opened data set.
        input_size: side of the square training input (default: the images' own size).
        val_fraction: fraction held out for validation when no ``val`` rows exist (0 = none).
        split_seed: seed of that random hold-out.
        limit: read at most this many images (quick tests).
    """
    from shiftbench.data import open_dataset

    if not 0.0 <= val_fraction < 1.0:
        raise UserInputError(f"--val-fraction must be in [0, 1); got {val_fraction}")
    ds = open_dataset(data, limit=limit) if isinstance(data, (str, os.PathLike)) else data
    n = len(ds)
    if n == 0:
        raise DataError(f"data set {data} has no images")
    labels_all = np.asarray([int(v) for v in _labels_of(ds)], dtype=np.int64)
    extras = getattr(ds, "extras", None)
    has_split = extras is not None and "split" in getattr(extras, "columns", ())
    all_idx = np.arange(n)
    if has_split:
        split = extras["split"].astype(str).str.strip().str.lower().to_numpy()
        train_idx = all_idx[split == "train"]
        val_idx = all_idx[split == "val"]
        split_source = "column"
        if len(train_idx) == 0:
            raise DataError(
                f"data set {data} has a 'split' column but no rows with split == 'train'"
            )
        if len(val_idx) == 0 and val_fraction > 0:
            train_idx, val_idx = _holdout(train_idx, labels_all, val_fraction, split_seed)
            split_source = "column+random"
    else:
        split_source = "random"
        if val_fraction > 0:
            train_idx, val_idx = _holdout(all_idx, labels_all, val_fraction, split_seed)
        else:
            train_idx, val_idx = all_idx, all_idx[:0]
    if len(np.unique(labels_all[train_idx])) < 2:
        raise DataError(f"the training split of {data} has fewer than 2 classes")

    size = input_size
    train_images, size = _read_images(ds, train_idx, size, data)
    val_images, _ = _read_images(ds, val_idx, size, data)
    fingerprint = ds.fingerprint() if hasattr(ds, "fingerprint") else ""
    return TrainingData(
        train_images=train_images,
        train_labels=torch.from_numpy(labels_all[train_idx]),
        val_images=val_images,
        val_labels=torch.from_numpy(labels_all[val_idx]),
        class_names=list(ds.class_names),
        input_size=int(size),
        fingerprint=str(fingerprint),
        split_source=split_source,
        source=str(data),
    )


def _labels_of(ds: Any) -> Sequence[int]:
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return list(labels)
    return [int(ds[i][1]) for i in range(len(ds))]


def _holdout(
    idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    y = labels[idx]
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    tr, va = train_test_split(idx, test_size=fraction, stratify=stratify, random_state=seed)
    return np.sort(tr), np.sort(va)


def _read_images(
    ds: Any, idx: np.ndarray, size: int | None, source: Any
) -> tuple[torch.Tensor, int | None]:
    imgs = []
    for i in idx.tolist():
        img = ds[i][0]
        if size is None:
            size = int(img.shape[-1])
            if img.shape[-2] != img.shape[-1]:
                raise DataError(
                    f"{source}: images are not square ({tuple(img.shape[-2:])}); pass "
                    "--input-size N"
                )
        imgs.append(_resize_u8(img, size))
    if not imgs:
        return torch.empty((0, 3, size or 1, size or 1), dtype=torch.uint8), size
    return torch.stack(imgs), size


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """One trained (or reused) checkpoint."""

    checkpoint: Path
    log: Path
    meta: dict[str, Any]
    reused: bool = False
    grid: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Recipe:
    arch: str
    method: str
    sd_lambda: float | list[float] | None
    sd_gamma: float | list[float] | None
    weight_decay: float
    epochs: int
    augment: str
    batch_size: int
    lr: float
    optimizer: str
    drop_rate: float
    drop_path_rate: float
    head: str = "softmax"


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up, then cosine decay to 0; stepped once per optimiser step.

    With peak rate ``lr`` and ``w = warmup_steps``, ``T = total_steps``, the rate used at step
    ``s`` (0-based) is ``lr · (s + 1) / w`` for ``s < w``, then
    ``lr · ½ (1 + cos(π (s − w) / (T − w)))``: torch's ``LinearLR`` followed by
    ``CosineAnnealingLR`` in a ``SequentialLR``.
    """
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    w = max(1, int(warmup_steps))
    warmup = LinearLR(optimizer, start_factor=1.0 / w, end_factor=1.0, total_iters=w - 1)
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, int(total_steps) - w), eta_min=0.0)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[w])


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    prep: Any,
    device: torch.device,
    batch_size: int,
) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score

    if len(images) == 0:
        return {}
    model.eval()
    logits = []
    for s in range(0, len(images), batch_size):
        logits.append(model(prep(images[s : s + batch_size].to(device))).float().cpu())
    out = torch.cat(logits)
    ce = float(F.cross_entropy(out, labels))
    pred = out.argmax(1).numpy()
    y = labels.numpy()
    return {
        "val_loss": ce,
        "val_accuracy": float((pred == y).mean()),
        "val_balanced_accuracy": float(balanced_accuracy_score(y, pred)),
    }


def _channel_stats(images: torch.Tensor, chunk: int = 512) -> tuple[tuple, tuple]:
    """Per-channel mean and SD of uint8 images in [0, 1] units, rounded to 4 decimals.

    Accumulated in float64 chunk by chunk (no float copy of the whole set).
    """
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for s in range(0, len(images), chunk):
        x = images[s : s + chunk].to(torch.float64) / 255.0
        total += x.sum((0, 2, 3))
        total_sq += x.square().sum((0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    std = var.sqrt().clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _write_csv_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def train_one(
    td: TrainingData,
    recipe: _Recipe,
    seed: int,
    device: torch.device,
    *,
    log_path: Path | None = None,
    progress: Any = None,
    task: Any = None,
    on_epoch_end: Callable[[int, torch.nn.Module, dict[str, float], tuple, tuple], Any]
    | None = None,
) -> tuple[torch.nn.Module, dict[str, float], list[dict[str, Any]], tuple, tuple]:
    """Train one model on ``td`` with ``recipe`` and ``seed``.

    With ``recipe.head == "binary-logit"`` the timm model has one output z and is trained inside
    :class:`~shiftbench.checkpoint.BinaryLogitHead` (logits (0, z)) with
    :class:`~shiftbench.losses.BinarySpectralDecouplingLoss`. ``on_epoch_end(epoch, model,
    val, mean, std)`` is called after each epoch (1-based; model in eval mode).

    Returns ``(model, final validation metrics, epoch log rows, mean, std)``.
    """
    import timm
    from timm.optim import create_optimizer_v2

    from shiftbench.preprocess import Preprocess

    x_train = td.train_images
    mean, std = _channel_stats(x_train)
    channels_last = device.type in ("cpu", "cuda")
    prep = Preprocess(td.input_size, mean, std, channels_last)
    num_classes = len(td.class_names)

    binary = recipe.head == "binary-logit"
    loss_class = BinarySpectralDecouplingLoss if binary else SpectralDecouplingLoss
    if recipe.method == "sd":
        criterion = loss_class(recipe.sd_lambda or 0.0, recipe.sd_gamma or 0.0)
    else:
        criterion = loss_class(0.0, 0.0)  # plain CE / BCE; penalty is exactly 0

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(derive_seed(seed, 0, "train-init"))
        model = timm.create_model(
            recipe.arch,
            pretrained=False,
            num_classes=1 if binary else num_classes,
            drop_rate=recipe.drop_rate,
            drop_path_rate=recipe.drop_path_rate or None,
        )
        if binary:
            from shiftbench.checkpoint import BinaryLogitHead

            model = BinaryLogitHead(model)
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt_kwargs = {"momentum": 0.9} if recipe.optimizer == "sgd" else {}
        try:
            # The fused kernel is ~10× faster than the per-tensor loop on the CPU (the default
            # there) and gives the same update rule.
            opt = create_optimizer_v2(
                model,
                opt=recipe.optimizer,
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                fused=True,
                **opt_kwargs,
            )
        except (RuntimeError, ValueError):  # device without fused kernels
            opt = create_optimizer_v2(
                model,
                opt=recipe.optimizer,
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                **opt_kwargs,
            )
        n = len(x_train)
        bs = min(recipe.batch_size, n)
        steps_per_epoch = n // bs if n % bs < 2 else n // bs + 1  # drop a last batch of 1 (BN)
        total = steps_per_epoch * recipe.epochs
        warmup = max(1, min(steps_per_epoch, total // 10))
        sched = warmup_cosine(opt, total, warmup)
        rows: list[dict[str, Any]] = []
        val: dict[str, float] = {}
        for epoch in range(recipe.epochs):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(derive_seed(seed, epoch, "train-epoch"))
            perm = torch.randperm(n, generator=g)
            model.train()
            sums = {"loss": 0.0, "ce": 0.0, "penalty": 0.0, "correct": 0.0, "n": 0}
            lr_now = opt.param_groups[0]["lr"]
            for s in range(steps_per_epoch):
                idx = perm[s * bs : (s + 1) * bs]
                xb = augment_batch(x_train[idx], recipe.augment, g)
                yb = td.train_labels[idx].to(device)
                logits = model(prep(xb.to(device)))
                loss, ce, pen = criterion(logits, yb)
                if not torch.isfinite(loss):
                    raise UserInputError(
                        f"training diverged (loss {float(loss)}) at epoch {epoch + 1}; lower --lr"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                k = len(idx)
                sums["loss"] += float(loss.detach()) * k
                sums["ce"] += float(ce.detach()) * k
                sums["penalty"] += float(pen.detach()) * k
                sums["correct"] += float((logits.argmax(1) == yb).sum())
                sums["n"] += k
            val = _evaluate(model, td.val_images, td.val_labels, prep, device, 4 * bs)
            m = max(1, sums["n"])
            row = {
                "seed": seed,
                "epoch": epoch + 1,
                "lr": lr_now,
                "train_loss": sums["loss"] / m,
                "train_ce": sums["ce"] / m,
                "train_penalty": sums["penalty"] / m,
                "train_accuracy": sums["correct"] / m,
                **val,
                "seconds": round(time.perf_counter() - t0, 3),
            }
            rows.append(row)
            if log_path is not None:
                _write_csv_atomic(log_path, rows)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model, val, mean, std)
            if progress is not None and task is not None:
                acc = val.get("val_accuracy")
                desc = f"loss {row['train_loss']:.3f}" + (
                    f", val acc {acc:.3f}" if acc is not None else ""
                )
                progress.update(task, advance=1, status=desc)
    model.eval()
    return model, val, rows, mean, std


def _parse_floats(values: Any, name: str) -> list[float] | None:
    """``None``, ``"0.01,0.001"``, several such strings or numbers → floats (shared parser)."""
    from shiftbench.lists import parse_numbers

    return None if values is None else parse_numbers(values, option=name, example="0.01,0.001")


def _fmt_list(v: float | list[float] | None) -> str | float | None:
    if isinstance(v, list):
        return ",".join(f"{x:g}" for x in v)
    return v


def train(
    data: Any,
    *,
    out: str | os.PathLike[str],
    arch: str = "resnet10t",
    method: Literal["sd", "wd"] = "sd",
    sd_lambda: float | None = None,
    sd_lambdas: Sequence[float] | str | None = None,
    sd_gammas: Sequence[float] | str | None = None,
    sd_lambda_grid: Sequence[float] | str | None = None,
    sd_gamma_grid: Sequence[float] | str | None = None,
    weight_decay: float | None = None,
    seeds: Sequence[int] | int = (0,),
    epochs: int = 10,
    augment: str = "basic",
    input_size: int | None = None,
    val_fraction: float = 0.2,
    batch_size: int = 32,
    lr: float | None = None,
    optimizer: str = "adamw",
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    device: str | torch.device = "auto",
    name: str | None = None,
    if_exists: Literal["error", "skip", "overwrite"] = "error",
    progress: bool = True,
    limit: int | None = None,
    training_data: TrainingData | None = None,
    head: Literal["softmax", "binary-logit"] = "softmax",
    save_every: int | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> list[TrainResult]:
    """Train one checkpoint per seed with spectral decoupling or weight decay.

    Args:
        data: data set path (image folder, CSV manifest, ``.npz``; see
            :func:`shiftbench.data.open_dataset`) or an opened data set.
        out: output folder (created).
        arch: timm architecture, built with ``pretrained=False``.
        method: ``"sd"`` (spectral decoupling) or ``"wd"`` (weight decay).
        sd_lambda: λ of Eq. 1 (default 0.01 for ``sd``).
        sd_lambdas: per-class λ_k (Eq. 2), e.g. ``[0.01, 0.001]`` (class-index order).
        sd_gammas: per-class γ_k (Eq. 2), e.g. ``[0, 1]``; default all 0.
        sd_lambda_grid: candidate λ values; each seed trains one model per (λ, γ) pair and keeps
            the one with the best validation balanced accuracy (ties: lower validation loss).
        sd_gamma_grid: candidate γ values (one γ for all classes) for the grid; default ``[0]``.
        weight_decay: weight decay (default 1e-4 for ``wd``, 0 for ``sd``).
        seeds: one checkpoint per seed.
        epochs: training epochs.
        augment: ``none``, ``basic`` (flips + quarter turns) or ``uniform`` (basic + two random
            ops of :data:`UNIFORM_OPS`).
        input_size: square training input size in pixels (default: the data's size).
        val_fraction: validation hold-out when the data has no ``val`` split.
        batch_size: images per step.
        lr: peak learning rate (default 1e-3 for AdamW, 0.05 for SGD).
        optimizer: ``adamw`` or ``sgd``.
        drop_rate: classifier dropout (timm ``drop_rate``; paper, EfficientNet-B0: 0.2).
        drop_path_rate: stochastic depth (timm ``drop_path_rate``; paper: 0.2).
        device: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps``.
        name: checkpoint file prefix (default: ``method``); files are ``<name>_seed<S>.pt``.
        if_exists: an existing checkpoint is an ``error`` (default), reused (``skip``) or
            retrained (``overwrite``).
        progress: show a rich progress bar on stderr.
        limit: read at most this many images (quick tests).
        training_data: already-loaded data (skips reading ``data`` again; used by the demo).
        head: ``softmax`` (one logit per class, cross-entropy) or ``binary-logit`` (2-class data
            only: one logit z, BCE, SD's Eq. 2 γ acting on z; saved so that evaluation sees
            the logits (0, z), i.e. probabilities (1 − σ(z), σ(z))).
        save_every: also keep a checkpoint every this many epochs,
            ``<name>_seed<S>_epoch<E>.pt`` with meta ``epoch`` = E (for learning-priority heat
            maps over training, :func:`shiftbench.spectrum`).
        extra_meta: more labels for every checkpoint's meta (e.g. ``{"degradation": 0.5}``);
            they become table columns. May not replace a recipe key.

    Returns:
        One :class:`TrainResult` per seed, in seed order.
    """
    from shiftbench.devices import resolve_device

    recipe_args = _check_args(
        arch=arch,
        method=method,
        sd_lambda=sd_lambda,
        sd_lambdas=sd_lambdas,
        sd_gammas=sd_gammas,
        sd_lambda_grid=sd_lambda_grid,
        sd_gamma_grid=sd_gamma_grid,
        weight_decay=weight_decay,
        epochs=epochs,
        augment=augment,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        if_exists=if_exists,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        head=head,
    )
    grid = recipe_args.pop("grid")
    if save_every is not None:
        if isinstance(save_every, bool) or int(save_every) < 1:
            raise UserInputError(f"--save-every must be a positive integer; got {save_every!r}")
        if len(grid) > 1:
            raise UserInputError("--save-every needs one lambda/gamma (not a grid)")
    seed_list = [int(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise UserInputError("give at least one seed (--seed S or --seeds 0,1,2)")
    if len(set(seed_list)) != len(seed_list):
        raise UserInputError(f"seeds must be distinct; got {seed_list}")
    dev = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prefix = name or method

    todo: list[int] = []
    results: dict[int, TrainResult] = {}
    for s in seed_list:
        ckpt = out / f"{prefix}_seed{s}.pt"
        if ckpt.exists():
            if if_exists == "error":
                raise UserInputError(
                    f"{ckpt} already exists; pass --overwrite to retrain or --resume to keep it"
                )
            if if_exists == "skip":
                results[s] = TrainResult(
                    ckpt, out / f"{prefix}_seed{s}.log.csv", _read_meta(ckpt), reused=True
                )
                continue
        todo.append(s)
    if todo:
        td = training_data or load_training_data(
            data, input_size=input_size, val_fraction=val_fraction, limit=limit
        )
        if len(td.val_images) == 0 and len(grid) > 1:
            raise UserInputError("a lambda/gamma grid needs a validation split (--val-fraction)")
        n_cls = len(td.class_names)
        if head == "binary-logit" and n_cls != 2:
            raise UserInputError(
                f"--head binary-logit needs 2 classes; the data has {n_cls} "
                f"({', '.join(td.class_names)})"
            )
        for lam, gam in grid:
            for v, opt in ((lam, "--sd-lambdas"), (gam, "--sd-gammas")):
                if isinstance(v, list) and len(v) != n_cls:
                    raise UserInputError(
                        f"{opt} needs one value per class ({n_cls}: "
                        f"{', '.join(td.class_names)}); got {len(v)}"
                    )
        for s in todo:
            results[s] = _train_seed(
                td, recipe_args, grid, s, dev, out, prefix, progress, save_every, extra_meta
            )
    return [results[s] for s in seed_list]


def _check_args(**a: Any) -> dict[str, Any]:
    if a["method"] not in METHODS:
        raise UserInputError(f"--method must be one of {', '.join(METHODS)}; got {a['method']!r}")
    if a["augment"] not in AUGMENTATIONS:
        raise UserInputError(
            f"--augment must be one of {', '.join(AUGMENTATIONS)}; got {a['augment']!r}"
        )
    if a["head"] not in HEADS:
        raise UserInputError(f"--head must be one of {', '.join(HEADS)}; got {a['head']!r}")
    if a["optimizer"] not in OPTIMIZERS:
        raise UserInputError(
            f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {a['optimizer']!r}"
        )
    if a["if_exists"] not in ("error", "skip", "overwrite"):
        raise UserInputError(f"if_exists must be error, skip or overwrite; got {a['if_exists']!r}")
    if int(a["epochs"]) < 1 or int(a["batch_size"]) < 2:
        raise UserInputError("--epochs must be >= 1 and --batch-size >= 2")
    import timm

    if not timm.is_model(a["arch"]):
        raise UserInputError(
            f"unknown timm architecture {a['arch']!r}; see timm.list_models() (e.g. resnet10t)"
        )
    lambdas = _parse_floats(a["sd_lambdas"], "--sd-lambdas")
    gammas = _parse_floats(a["sd_gammas"], "--sd-gammas")
    lam_grid = _parse_floats(a["sd_lambda_grid"], "--sd-lambda-grid")
    gam_grid = _parse_floats(a["sd_gamma_grid"], "--sd-gamma-grid")
    method = a["method"]
    sd_given = any(v is not None for v in (a["sd_lambda"], lambdas, gammas, lam_grid, gam_grid))
    if method == "wd" and sd_given:
        raise UserInputError("SD options (--sd-*) need --method sd")
    if a["sd_lambda"] is not None and lambdas is not None:
        raise UserInputError("give --sd-lambda (Eq. 1) or --sd-lambdas (Eq. 2), not both")
    if (lam_grid or gam_grid) and (lambdas is not None or gammas is not None):
        raise UserInputError("a lambda/gamma grid uses one lambda and gamma for all classes")
    for vals, nm in ((lambdas, "--sd-lambdas"), (lam_grid, "--sd-lambda-grid")):
        if vals is not None and (not vals or any(v < 0 or not math.isfinite(v) for v in vals)):
            raise UserInputError(f"{nm} must be finite numbers >= 0; got {vals}")
    if a["sd_lambda"] is not None and not (a["sd_lambda"] >= 0 and math.isfinite(a["sd_lambda"])):
        raise UserInputError(f"--sd-lambda must be a finite number >= 0; got {a['sd_lambda']}")
    if lambdas is not None and gammas is not None and len(lambdas) != len(gammas):
        raise UserInputError("--sd-lambdas and --sd-gammas need one value per class each")

    grid: list[tuple[Any, Any]]
    if method == "sd":
        if lam_grid or gam_grid:
            lam_values = lam_grid or [a["sd_lambda"] if a["sd_lambda"] is not None else 0.01]
            grid = [(lv, gv) for lv in lam_values for gv in (gam_grid or [0.0])]
        else:
            lam = (
                lambdas
                if lambdas is not None
                else (a["sd_lambda"] if a["sd_lambda"] is not None else 0.01)
            )
            gam: Any = gammas if gammas is not None else 0.0
            if lambdas is None and gammas is not None:
                lam = [float(lam)] * len(gammas)
            grid = [(lam, gam)]
        wd = float(a["weight_decay"]) if a["weight_decay"] is not None else 0.0
    else:
        grid = [(None, None)]
        wd = float(a["weight_decay"]) if a["weight_decay"] is not None else DEFAULT_WEIGHT_DECAY
    if wd < 0 or not math.isfinite(wd):
        raise UserInputError(f"--weight-decay must be a finite number >= 0; got {wd}")
    lr = a["lr"] if a["lr"] is not None else DEFAULT_LR[a["optimizer"]]
    if not (lr > 0 and math.isfinite(lr)):
        raise UserInputError(f"--lr must be a positive number; got {lr}")
    return {
        "arch": a["arch"],
        "method": method,
        "weight_decay": wd,
        "epochs": int(a["epochs"]),
        "augment": a["augment"],
        "batch_size": int(a["batch_size"]),
        "lr": float(lr),
        "optimizer": a["optimizer"],
        "drop_rate": float(a["drop_rate"]),
        "drop_path_rate": float(a["drop_path_rate"]),
        "head": a["head"],
        "grid": grid,
    }


def _read_meta(path: Path) -> dict[str, Any]:
    from shiftbench.errors import CheckpointError

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        return dict(obj.get("meta") or {})
    except Exception as e:
        raise CheckpointError(
            f"cannot reuse {path} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "delete it or pass --overwrite"
        ) from None


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _train_seed(
    td: TrainingData,
    recipe_args: dict[str, Any],
    grid: list[tuple[Any, Any]],
    seed: int,
    device: torch.device,
    out: Path,
    prefix: str,
    progress: bool,
    save_every: int | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> TrainResult:
    from shiftbench.checkpoint import save_checkpoint

    stem = f"{prefix}_seed{seed}"
    t_start = time.perf_counter()

    def save(path: Path, model: Any, recipe: _Recipe, val: dict, mean: tuple, std: tuple,
             extra: dict[str, Any]) -> Path:  # fmt: skip
        meta = _recipe_meta(recipe, seed, td, val, t_start)
        clash = sorted(set(meta) & set(extra_meta or {}))
        if clash:
            raise UserInputError(f"extra_meta may not replace recipe keys: {', '.join(clash)}")
        meta = {**meta, **(extra_meta or {}), **extra}
        return save_checkpoint(
            path, model, arch=recipe.arch, num_classes=len(td.class_names),
            input_size=td.input_size, mean=mean, std=std, meta=meta,
            class_names=td.class_names, head=recipe.head,
        )  # fmt: skip

    def epoch_saver(recipe: _Recipe) -> Callable[..., Any] | None:
        if save_every is None:
            return None

        def on_epoch_end(epoch: int, model: Any, val: dict, mean: tuple, std: tuple) -> None:
            if epoch % int(save_every) == 0:
                save(out / f"{stem}_epoch{epoch}.pt", model, recipe, val, mean, std,
                     {"epoch": epoch})  # fmt: skip

        return on_epoch_end

    log_path = out / f"{stem}.log.csv"
    bar = _progress_bar(progress)
    best: tuple | None = None
    grid_rows: list[dict[str, Any]] = []
    with bar if bar is not None else contextlib.nullcontext():
        for gi, (lam, gam) in enumerate(grid):
            recipe = _Recipe(sd_lambda=lam, sd_gamma=gam, **recipe_args)
            label = f"{stem}" + (f" λ={_fmt_list(lam)} γ={_fmt_list(gam)}" if len(grid) > 1 else "")
            task = bar.add_task(label, total=recipe.epochs, status="") if bar is not None else None
            this_log = log_path if len(grid) == 1 else out / f"{stem}.grid{gi}.log.csv"
            model, val, rows, mean, std = train_one(
                td, recipe, seed, device, log_path=this_log, progress=bar, task=task,
                on_epoch_end=epoch_saver(recipe),
            )  # fmt: skip
            grid_rows.append({"sd_lambda": _fmt_list(lam), "sd_gamma": _fmt_list(gam), **val})
            key = (val.get("val_balanced_accuracy", 0.0), -val.get("val_loss", 0.0))
            if best is None or key > best[0]:
                best = (key, gi, model, val, rows, mean, std, recipe)
    assert best is not None
    _, gi, model, val, rows, mean, std, recipe = best
    if len(grid) > 1:
        _write_csv_atomic(log_path, rows)
        _write_csv_atomic(out / f"{stem}.grid.csv", grid_rows)
    extra = {
        "sd_grid": json.dumps(grid_rows) if len(grid) > 1 else None,
        "selected_by": "val_balanced_accuracy" if len(grid) > 1 else None,
    }
    ckpt = save(out / f"{stem}.pt", model, recipe, val, mean, std, extra)
    meta = _read_meta(ckpt)
    return TrainResult(ckpt, log_path, meta, reused=False, grid=grid_rows if len(grid) > 1 else [])


def _recipe_meta(
    recipe: _Recipe, seed: int, td: TrainingData, val: dict[str, float], t_start: float
) -> dict[str, Any]:
    """Checkpoint meta: the recipe, the data and the validation metrics."""
    convention = BINARY_SD_LOSS_CONVENTION if recipe.head == "binary-logit" else SD_LOSS_CONVENTION
    return {
        "method": recipe.method,
        "seed": seed,
        "arch": recipe.arch,
        "sd_lambda": _fmt_list(recipe.sd_lambda) if recipe.method == "sd" else None,
        "sd_gamma": _fmt_list(recipe.sd_gamma) if recipe.method == "sd" else None,
        "sd_loss_convention": convention if recipe.method == "sd" else None,
        "weight_decay": recipe.weight_decay,
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "batch_size": recipe.batch_size,
        "epochs": recipe.epochs,
        "augment": recipe.augment,
        "drop_rate": recipe.drop_rate,
        "drop_path_rate": recipe.drop_path_rate,
        "train_input_size": td.input_size,
        "data_fingerprint": td.fingerprint,
        "data_source": td.source,
        "split_source": td.split_source,
        "train_n": len(td.train_labels),
        "val_n": len(td.val_labels),
        "val_accuracy": val.get("val_accuracy"),
        "val_balanced_accuracy": val.get("val_balanced_accuracy"),
        "val_loss": val.get("val_loss"),
        "train_seconds": round(time.perf_counter() - t_start, 2),
    }
