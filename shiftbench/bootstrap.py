"""The one bootstrap core: seeded resample weights, drawn and consumed in bounded blocks.

A bootstrap resample of ``n`` samples is a row of multinomial counts ``w`` (how often every sample
was drawn); every statistic in shiftbench is written for such weights (``statistic(w [m, n]) ->
[m]``), so a whole bootstrap is a loop over blocks of rows. Everything that resamples —
:func:`shiftbench.metrics.cell_metrics`, :func:`shiftbench.stats.bootstrap_ci`,
:func:`shiftbench.stats.paired_bootstrap` and the reports — draws its rows here, so the same
``(n, n_boot, seed)`` gives the same resamples everywhere (common random numbers) and one constant
bounds the memory of a block.

Row ``b`` of the resamples is ``bincount(default_rng(seed).integers(0, n, (n_boot, n))[b])``;
drawing the indices block by block consumes the generator's stream in the same order, so the
rows do not depend on the block size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = [
    "MAX_BLOCK_ELEMENTS",
    "ResampleWeights",
    "block_rows",
    "bootstrap_weight_blocks",
    "bootstrap_weights",
    "percentile_interval",
    "replicates",
]

#: Bound on rows × samples of one block of weights: memory stays flat for large test sets.
MAX_BLOCK_ELEMENTS = 4_000_000


_controller: ThreadpoolController | None = None


def _single_threaded_blas() -> object:
    """Context manager: BLAS limited to one thread (library discovery done once per process)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def block_rows(n: int) -> int:
    """Rows of ``n`` weights per block: ``max(1, MAX_BLOCK_ELEMENTS // n)``."""
    return max(1, MAX_BLOCK_ELEMENTS // max(n, 1))


def bootstrap_weight_blocks(n: int, n_boot: int, seed: int, block: int) -> Iterator[np.ndarray]:
    """Resample counts ``[rows, n]`` (int32) in blocks of at most ``block`` rows.

    The concatenated blocks equal :func:`bootstrap_weights` for any ``block``.
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n))
        flat = (idx + (np.arange(rows) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.int32)
    if n_boot == 0:
        yield np.zeros((0, n), dtype=np.int32)


def bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Resample counts ``[n_boot, n]`` (int32): row b says how often each sample is in resample b.

    Equivalent to drawing ``n`` indices with replacement per resample
    (``numpy.random.default_rng(seed).integers(0, n, (n_boot, n))``) and counting them.
    """
    return np.concatenate(list(bootstrap_weight_blocks(n, n_boot, seed, block_rows(n))))


class ResampleWeights:
    """The resamples of a universe of ``n`` samples, shared by many statistics (paired, CRN).

    Row 0 is optionally a row of ones (the statistic on the data itself), then the ``n_boot``
    resamples of :func:`bootstrap_weights`. With ``cache=True`` the counts are drawn once and kept
    compactly (uint8 when every count is < 256, which is all but certain for n ≥ 2; else int32:
    ``n_boot · n`` bytes), so that each of many cells takes its columns without redrawing.

    Args:
        n: samples in the universe.
        n_boot: resamples.
        seed: resampling seed.
        with_point: prepend the row of ones.
        cache: keep the drawn counts (for use by several statistics).
    """

    def __init__(
        self, n: int, n_boot: int, seed: int, *, with_point: bool = False, cache: bool = False
    ) -> None:
        self.n, self.n_boot, self.seed, self.with_point = n, n_boot, seed, with_point
        self._cache: np.ndarray | None = None
        if cache and n_boot > 0:
            out: np.ndarray | None = None
            start = 0
            for w in bootstrap_weight_blocks(n, n_boot, seed, block_rows(n)):
                if out is None:
                    out = np.empty((n_boot, n), dtype=np.uint8)
                if int(w.max(initial=0)) > 255 and out.dtype == np.uint8:
                    out = out.astype(np.int32)
                out[start : start + len(w)] = w
                start += len(w)
            self._cache = out

    @property
    def rows(self) -> int:
        """Total rows: ``n_boot`` (+ 1 with the point row)."""
        return self.n_boot + int(self.with_point)

    def blocks(self, columns: np.ndarray | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, weights)`` blocks, float64 ``[rows, len(columns)]`` (all columns if None)."""
        width = self.n if columns is None else len(columns)
        step = block_rows(width)
        parts = self._int_blocks(step)
        start = 0
        for w in parts:
            if columns is not None:
                w = w[:, columns]
            yield slice(start, start + len(w)), w.astype(np.float64)
            start += len(w)

    def count_blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, counts)`` blocks of the integer counts ``[rows, n]`` (uint8 or int32).

        For statistics that stay in exact integer arithmetic (e.g. the weighted AUROC), which
        then read 1 byte per weight instead of 8.
        """
        start = 0
        for w in self._int_blocks(block_rows(self.n)):
            yield slice(start, start + len(w)), w
            start += len(w)

    def _int_blocks(self, step: int) -> Iterator[np.ndarray]:
        if self.with_point:
            yield np.ones((1, self.n), dtype=np.int32)
        if self.n_boot == 0:
            return
        if self._cache is not None:
            for s in range(0, self.n_boot, step):
                yield self._cache[s : s + step]
        else:
            yield from bootstrap_weight_blocks(self.n, self.n_boot, self.seed, step)


def replicates(
    statistic: Callable[[np.ndarray], np.ndarray],
    weights: ResampleWeights,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """``statistic`` under every row of ``weights``: ``[rows, ...]`` (its output stacked).

    ``statistic(w [m, n]) -> [m, ...]`` sees float64 weights restricted to ``columns``. BLAS runs
    single-threaded: these are many small products, for which OpenBLAS threads cost more than
    they give (measured 0.55 vs 21 ms per product on 2 busy cores).
    """
    out: np.ndarray | None = None
    with _single_threaded_blas():
        for rows, w in weights.blocks(columns):
            values = np.asarray(statistic(w))
            if out is None:
                out = np.empty((weights.rows, *values.shape[1:]), dtype=values.dtype)
            out[rows] = values
    if out is None:
        return np.empty((0,))
    return out


def percentile_interval(values: np.ndarray, ci: float) -> tuple[float, float]:
    """Two-sided percentile interval of the finite ``values`` (NaNs if there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
