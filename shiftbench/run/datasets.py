"""The evaluation sets of a run: ``data`` as given → named, opened sets → one data set.

``run(…, data=…)`` (and ``shiftbench run --data``) takes one set or several:

* a path or an opened :class:`~shiftbench.data.ImageDataset` (one set, as before);
* a mapping ``{name: path or data set}`` (order kept);
* a sequence of ``"NAME=PATH"`` strings, bare paths or data sets.

A bare path (or data set) is named :func:`~shiftbench.run.rundir.dataset_name` of its path. The
sets are concatenated in the given order (:class:`~shiftbench.data_sets.ConcatImageDataset`);
one set is used as it is, so its sample ids, fingerprint and run identity are unchanged.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shiftbench.data import ImageDataset, open_dataset
from shiftbench.data_sets import ConcatImageDataset
from shiftbench.errors import DataError, UserInputError
from shiftbench.run.rundir import dataset_name

__all__ = ["EvalSets", "check_group_by", "named_sources", "open_eval_sets"]

Source = str | os.PathLike[str] | ImageDataset


@dataclass
class EvalSets:
    """The named evaluation sets of a run and the one data set the sweep reads.

    Attributes:
        names: set names in the given order.
        members: the opened sets.
        dataset: the single set, or their :class:`ConcatImageDataset`.
    """

    names: list[str]
    members: list[ImageDataset]
    dataset: ImageDataset

    @property
    def starts(self) -> list[int]:
        """First sample id of every set, then the total number of samples."""
        if isinstance(self.dataset, ConcatImageDataset):
            return self.dataset.starts.tolist()
        return [0, len(self.dataset)]

    def sample_names(self) -> list[str]:
        """The set name of every sample, in sample-id order."""
        return np.repeat(self.names, np.diff(self.starts)).tolist()

    def describe(self) -> list[dict[str, Any]]:
        """Manifest ``datasets``: ``{name, first_sample_id, n_samples, …describe()}`` per set."""
        return [
            {"name": n, "first_sample_id": s, **d.describe()}
            for n, s, d in zip(self.names, self.starts[:-1], self.members, strict=True)
        ]

    def identity(self) -> list[list[str]] | None:
        """``[[name, fingerprint], …]`` for several sets (part of the run's identity), else None."""
        if len(self.members) == 1:
            return None  # one set: identity as before, so earlier runs stay resumable
        return [[n, d.fingerprint()] for n, d in zip(self.names, self.members, strict=True)]


def named_sources(data: Any) -> list[tuple[str, Source]]:
    """``data`` in any accepted form → ``[(name, path or data set), …]`` in the given order.

    Raises:
        UserInputError: no set, an empty name or path, a name given twice.
    """
    if isinstance(data, Mapping):
        pairs = [(_checked_name(str(k), v), v) for k, v in data.items()]
    elif isinstance(data, str | os.PathLike | ImageDataset):
        pairs = [_one(data)]
    else:
        pairs = [_one(item) for item in data]
    if not pairs:
        raise UserInputError("give at least one data set: --data PATH or --data NAME=PATH")
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise UserInputError(
                f"--data name {name!r} is given twice; give each set its own NAME=PATH"
            )
        seen.add(name)
    return pairs


def _one(item: Any) -> tuple[str, Source]:
    """One ``--data`` value: a data set, a bare path, or ``NAME=PATH``."""
    if isinstance(item, ImageDataset):
        return dataset_name(item.source), item
    if not isinstance(item, str | os.PathLike):
        raise UserInputError(f"--data {item!r}: expected a path, NAME=PATH or an opened data set")
    text = os.fspath(item)
    name, sep, path = text.partition("=")
    if not sep or Path(text).exists() or "/" in name or os.sep in name:
        if not text.strip():
            raise UserInputError("--data is empty; give PATH or NAME=PATH")
        return dataset_name(text), text
    if not path.strip():
        raise UserInputError(f"--data {text!r}: the path is empty; write --data {name}=PATH")
    return _checked_name(name, text), path.strip()


def _checked_name(name: str, given: Any) -> str:
    name = name.strip()
    if not name:
        raise UserInputError(f"--data {given!r}: the name before '=' is empty; write NAME=PATH")
    return name


def open_eval_sets(
    data: Any, *, limit: int | None, strict: bool, image_size: int | None
) -> EvalSets:
    """Open every set (``limit`` applies to each) and combine them.

    Raises:
        UserInputError: bad ``data`` form; ``limit``/``image_size`` with an opened data set.
        DataError: a set is empty or unreadable; class names or image sizes disagree.
    """
    sources = named_sources(data)
    members = []
    for name, source in sources:
        if isinstance(source, ImageDataset):
            if limit is not None or image_size is not None:
                raise UserInputError(
                    "pass limit/image_size to open_dataset, not with an opened data set"
                )
            ds = source
            if strict and not ds.strict:
                ds = copy.copy(ds)  # never change the caller's object
                ds.strict = True
        else:
            ds = open_dataset(source, limit=limit, strict=strict, image_size=image_size)
        if len(ds) == 0:
            where = f"{name!r} ({ds.source})" if len(sources) > 1 else str(ds.source)
            raise DataError(f"data set {where} is empty")
        members.append(ds)
    names = [n for n, _ in sources]
    dataset = (
        members[0]
        if len(members) == 1
        else ConcatImageDataset(list(zip(names, members, strict=True)))
    )
    return EvalSets(names, members, dataset)


def check_group_by(sets: EvalSets, group_by: str | None) -> None:
    """``group_by`` must be a column of every set.

    Raises:
        UserInputError: naming the set that lacks it and its columns.
    """
    if group_by is None:
        return
    for name, d in zip(sets.names, sets.members, strict=True):
        if group_by not in d.extras.columns:
            have = ", ".join(map(str, d.extras.columns)) or "none (only CSV manifests have them)"
            where = f" of data set {name!r}" if len(sets.members) > 1 else " of the data"
            raise UserInputError(f"--group-by {group_by!r} is not a column{where}; columns: {have}")
