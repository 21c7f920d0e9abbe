"""Checkpoints of a run: loading, naming, a probe forward pass, class names and labels."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shiftbench.checkpoint import LoadedCheckpoint, load_checkpoint
from shiftbench.data import ImageDataset
from shiftbench.errors import CheckpointError, DataError, RunError, UserInputError
from shiftbench.preprocess import Preprocess
from shiftbench.run.progress import Messenger
from shiftbench.run.rundir import check_reserved
from shiftbench.run.values import first_line


@dataclass
class Model:
    """A loaded checkpoint, its name in the tables and its preprocessing."""

    ckpt: LoadedCheckpoint
    name: str
    prep: Preprocess


def load_models(
    checkpoints: Any,
    arch: str | None,
    num_classes: int | None,
    trust: bool,
    device: torch.device,
    channels_last: bool,
    say: Messenger,
) -> list[Model]:
    if isinstance(checkpoints, str | os.PathLike | LoadedCheckpoint):
        checkpoints = [checkpoints]
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise UserInputError("no checkpoint given; pass --ckpt FILE")
    loaded: list[LoadedCheckpoint] = []
    for c in checkpoints:
        if isinstance(c, LoadedCheckpoint):
            c.model.to(device).eval()
            loaded.append(c)
        else:
            loaded.append(
                load_checkpoint(
                    c, arch=arch, num_classes=num_classes, trust_checkpoint=trust, device=device
                )
            )
    by_sha: dict[str, Path] = {}
    for ck in loaded:
        if ck.sha256 in by_sha:
            raise UserInputError(
                f"the same checkpoint is given twice ({by_sha[ck.sha256]} and {ck.path})"
            )
        by_sha[ck.sha256] = ck.path
    names = unique_names([ck.path for ck in loaded], [ck.name for ck in loaded])
    models = []
    for ck, name in zip(loaded, names, strict=True):
        for note in ck.notes:
            say(f"{name}: {note}")
        if ck.defaults_used:
            say(f"{name}: using default {', '.join(ck.defaults_used)} (recorded in the manifest)")
        if channels_last:
            with contextlib.suppress(Exception):  # e.g. TorchScript modules
                ck.model.to(memory_format=torch.channels_last)
        models.append(Model(ck, name, ck.preprocess(channels_last=channels_last)))
    return models


def unique_names(paths: list[Path], names: list[str]) -> list[str]:
    """File stems, disambiguated by parent folders (then a counter) when two are equal."""
    out = list(names)
    for depth in range(1, 4):
        dups = {n for n in out if out.count(n) > 1}
        if not dups:
            return out
        out = [
            "/".join([*p.parts[-depth - 1 : -1], n0]) if n in dups else n
            for p, n, n0 in zip(paths, out, names, strict=True)
        ]
    seen: dict[str, int] = {}
    final = []
    for n in out:
        seen[n] = seen.get(n, 0) + 1
        final.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return final


def probe(models: list[Model], dataset: ImageDataset, device: torch.device) -> int:
    """One forward pass per model on a grey image: checks the output shape before any work."""
    size = dataset.native_size or (
        (dataset.image_size, dataset.image_size) if dataset.image_size else None
    )
    if size is None:  # sizes unknown (e.g. all headers unreadable): use the first readable image
        size = (224, 224)
    x = torch.full((1, 3, *size), 128, dtype=torch.uint8, device=device)
    counts = {}
    for m in models:
        try:
            with torch.inference_mode():
                logits = m.ckpt.model(m.prep(x))
        except Exception as e:
            raise RunError(
                f"checkpoint {m.name} fails on a {size[1]}x{size[0]} input "
                f"(input_size {m.ckpt.input_size or 'data size'}): {first_line(e)}"
            ) from None
        if not torch.is_tensor(logits) or logits.ndim != 2 or logits.shape[0] != 1:
            shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
            raise RunError(
                f"checkpoint {m.name} must return logits of shape [batch, classes]; got {shape}"
            )
        c = int(logits.shape[1])
        if c < 2:
            raise RunError(f"checkpoint {m.name} has {c} output; shiftbench needs >= 2 classes")
        if m.ckpt.num_classes is not None and m.ckpt.num_classes != c:
            raise RunError(
                f"checkpoint {m.name} says {m.ckpt.num_classes} classes but outputs {c} logits"
            )
        if m.ckpt.num_classes is None:
            m.ckpt.num_classes = c
            m.ckpt.notes.append(f"num_classes={c} taken from the model's output")
        counts[m.name] = c
    if len(set(counts.values())) > 1:
        raise UserInputError(
            "checkpoints of one run must have the same number of classes; got "
            + ", ".join(f"{k}: {v}" for k, v in counts.items())
        )
    return next(iter(counts.values()))


def resolve_classes(
    dataset: ImageDataset, models: list[Model], num_classes: int
) -> tuple[list[str], np.ndarray]:
    """Class names of the run and the map from data-set labels to model class indices."""
    named = [m for m in models if m.ckpt.class_names]
    ckpt_names = named[0].ckpt.class_names if named else None
    for m in named[1:]:
        if m.ckpt.class_names != ckpt_names:
            raise UserInputError(
                f"checkpoints {named[0].name} and {m.name} have different class names "
                f"({ckpt_names} vs {m.ckpt.class_names}); evaluate them in separate runs"
            )
    data_names = list(dataset.class_names)
    identity = np.arange(max(len(data_names), num_classes), dtype=np.int64)
    labels = dataset.labels
    if dataset.labels_are_names:
        if ckpt_names is not None:
            lookup = {n: i for i, n in enumerate(ckpt_names)}
            unknown = [n for n in data_names if n not in lookup]
            if unknown:
                raise DataError(
                    f"data class(es) {', '.join(unknown)} are not among the checkpoint's classes "
                    f"({', '.join(ckpt_names)}); rename the folders/labels to match"
                )
            return list(ckpt_names), np.array([lookup[n] for n in data_names], dtype=np.int64)
        if len(data_names) != num_classes:
            raise DataError(
                f"the data has {len(data_names)} classes ({', '.join(data_names)}) but the model "
                f"outputs {num_classes}; use a CSV manifest with integer labels to say which "
                "index each class has"
            )
        return data_names, identity
    too_big = np.flatnonzero(labels >= num_classes)
    if len(too_big):
        i = int(too_big[0])
        raise DataError(
            f"label {int(labels[i])} of {dataset.paths[i]} is outside the model's "
            f"{num_classes} classes (0..{num_classes - 1})"
        )
    if ckpt_names is not None:
        given = [i for i, n in enumerate(data_names) if n != str(i) and i < num_classes]
        clash = [i for i in given if data_names[i] != ckpt_names[i]]
        if clash:
            i = clash[0]
            raise DataError(
                f"class {i} is {data_names[i]!r} in the data but {ckpt_names[i]!r} in the "
                "checkpoint; fix the labels or the class names"
            )
        return list(ckpt_names), identity
    names = [data_names[i] if i < len(data_names) else str(i) for i in range(num_classes)]
    return names, identity


def check_names(models: list[Model], dataset: ImageDataset) -> None:
    """Meta keys and data columns must not be reserved names nor share a name with each other.

    Raises:
        CheckpointError: a meta key is reserved (e.g. ``auroc``); DataError: a data column is;
        UserInputError: a meta key is also a data column.
    """
    check_reserved(
        map(str, dataset.extras.columns), f"data set {dataset.source}: column", DataError
    )
    extras = set(map(str, dataset.extras.columns))
    for m in models:
        check_reserved(m.ckpt.meta, f"checkpoint {m.name}: meta key", CheckpointError)
        clash = sorted(extras & set(m.ckpt.meta))
        if clash:
            raise UserInputError(
                f"checkpoint {m.name} meta key {clash[0]!r} is also a column of the data "
                "manifest; rename one of them"
            )
