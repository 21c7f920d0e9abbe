"""Several evaluation sets as one: :class:`ConcatImageDataset` (``run --data A=… --data B=…``).

The members keep their own layout, root, resize and reading; the concatenation only numbers
their samples one after the other (member k occupies the contiguous sample-id range after member
k-1) and puts every label on one common list of class names:

* sets whose labels are class **names** (folders, CSV name labels) are mapped by name;
* sets whose labels are class **indices** (npz, CSV integer labels) keep them; their names must
  agree index by index wherever both sets name the class (``"0"``, ``"1"`` … are unnamed);
* a set may lack classes (e.g. after ``--limit``) but never have one that the set with the most
  classes lacks, nor name an index differently: a one-line error naming both sets and their
  class lists.

All members must share one image size (native, or the same ``image_size`` resize).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from shiftbench.data import ImageDataset
from shiftbench.errors import DataError, UserInputError

__all__ = ["ConcatImageDataset", "common_class_names"]


class ConcatImageDataset(ImageDataset):
    """Named image sets concatenated in the given order; reading is delegated to the members.

    Attributes:
        names: the members' names, in order.
        members: the member data sets.
        starts: ``int64 [len(members) + 1]``: member k holds sample ids ``starts[k]`` to
            ``starts[k+1] - 1``.
        (the :class:`~shiftbench.data.ImageDataset` attributes: ``paths`` are each member's own
        relative paths, ``labels`` are on the common ``class_names``, ``extras`` is the union of
        the members' columns, missing values where a member lacks a column.)
    """

    format = "concat"

    def __init__(self, named: Sequence[tuple[str, ImageDataset]]) -> None:
        if len(named) < 2:
            raise UserInputError("a concatenation needs at least two data sets")
        names = [n for n, _ in named]
        members = [d for _, d in named]
        class_names, labels_are_names, labels = common_class_names(named)
        size = _common_size(named)
        super().__init__(
            source=members[0].source,
            paths=[p for d in members for p in d.paths],
            labels=np.concatenate(labels),
            class_names=class_names,
            labels_are_names=labels_are_names,
            extras=pd.concat([d.extras.reset_index(drop=True) for d in members], ignore_index=True),
            image_size=members[0].image_size,
            strict=any(d.strict for d in members),
        )
        self.native_size = size
        self.names = names
        self.members = members
        self.starts = np.concatenate([[0], np.cumsum([len(d) for d in members])]).astype(np.int64)

    def locate(self, index: int) -> tuple[int, int]:
        """``(member k, index within member k)`` of sample ``index``."""
        k = int(np.searchsorted(self.starts, index, side="right")) - 1
        return k, int(index) - int(self.starts[k])

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as ``uint8 [H, W, 3]``, read (and resized) by its member."""
        k, local = self.locate(index)
        return self.members[k].read(local)

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256(b"concat\n")
        for name, d in zip(self.names, self.members, strict=True):
            h.update(f"{name}\t{d.fingerprint()}\n".encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """The first member's description (what ``manifest["data"]`` held for one set)."""
        return self.members[0].describe()


def common_class_names(
    named: Sequence[tuple[str, ImageDataset]],
) -> tuple[list[str], bool, list[np.ndarray]]:
    """One class list for several sets, and each set's labels on it.

    Returns:
        ``(class_names, labels_are_names, labels per set)``; ``labels_are_names`` is true when
        every set's labels are names (then they can still be matched to a checkpoint by name).

    Raises:
        DataError: two sets disagree on a class name (one line naming both and their lists).
    """
    indexed = [(n, d) for n, d in named if not d.labels_are_names]
    reference = _merged_index_names(indexed) if indexed else []
    # Names only name-labelled sets have: after the indices, sorted (as one folder orders them).
    named_only = {c for _, d in named if d.labels_are_names for c in d.class_names}
    reference += sorted(named_only - set(reference))
    # Sets may lack classes (e.g. after --limit) but never bring ones the largest set lacks.
    largest_name, largest = max(named, key=lambda nd: len(nd[1].class_names))
    if len(reference) > len(largest.class_names):
        other_name, other = next(
            (n, d) for n, d in named if not set(d.class_names) <= set(largest.class_names)
        )
        raise _mismatch(
            largest_name, list(largest.class_names), other_name, list(other.class_names)
        )
    lookup = {c: i for i, c in enumerate(reference)}
    labels = []
    for _, d in named:
        if not d.labels_are_names:
            labels.append(np.asarray(d.labels, np.int64))
            continue
        mapping = np.array([lookup[c] for c in d.class_names], np.int64)
        labels.append(mapping[np.asarray(d.labels, np.int64)] if len(d.labels) else d.labels)
    return reference, not indexed, labels


def _merged_index_names(indexed: Sequence[tuple[str, ImageDataset]]) -> list[str]:
    """Index-labelled sets: per index the name any set gives it (``str(i)`` if none)."""
    merged: dict[int, tuple[str, str]] = {}  # index -> (name, set that named it)
    length = 0
    for set_name, d in indexed:
        length = max(length, len(d.class_names))
        for i, c in enumerate(d.class_names):
            if c == str(i):
                continue  # unnamed
            if i in merged and merged[i][0] != c:
                other = next(x for n, x in indexed if n == merged[i][1])
                raise _mismatch(
                    merged[i][1], list(other.class_names), set_name, list(d.class_names)
                )
            merged.setdefault(i, (c, set_name))
    return [merged[i][0] if i in merged else str(i) for i in range(length)]


def _mismatch(a: str, a_names: list[str], b: str, b_names: list[str]) -> DataError:
    return DataError(
        f"data sets {a!r} and {b!r} have different class names ({', '.join(a_names)} vs "
        f"{', '.join(b_names)}); give every set the same classes (folder names or labels)"
    )


def _common_size(named: Sequence[tuple[str, ImageDataset]]) -> tuple[int, int] | None:
    """The members' one native size (``None`` when they are resized on load).

    Raises:
        DataError: native sizes differ, or the members resize to different sizes.
    """
    first_name, first = named[0]
    for name, d in named[1:]:
        if d.image_size != first.image_size:
            raise DataError(
                f"data sets {first_name!r} and {name!r} are resized to different sizes "
                f"({first.image_size} vs {d.image_size}); open them with one image_size"
            )
        if first.image_size is None and None not in (d.native_size, first.native_size):
            if tuple(d.native_size) != tuple(first.native_size):  # type: ignore[arg-type]
                (h1, w1), (h2, w2) = first.native_size, d.native_size  # type: ignore[misc]
                raise DataError(
                    f"data sets {first_name!r} ({w1}x{h1}) and {name!r} ({w2}x{h2}) differ in "
                    "image size; pass --image-size N to resize every image to NxN on load"
                )
    if first.image_size is not None:
        return None
    return next((tuple(d.native_size) for _, d in named if d.native_size), None)  # type: ignore[return-value]
