"""Run OpenCV on CPU batches in place: per image (or plane), in threads, without layout copies.

Why this exists: on CPU a ``cv2`` call per image writing straight into the output tensor's memory
(``dst=``) is faster than any eager-torch formulation of the same filter (measured: an O(1)
integral-image box filter in eager torch ran at ~0.15× a ``cv2.blur`` per-image loop on 2 cores,
because every torch op is one more pass over memory). OpenCV releases the GIL, so a small thread
pool (``torch.get_num_threads()`` workers) uses the cores torch is allowed to use.

Layout is kept, never converted: a channels-last batch is handled as ``H×W×C`` images (what
``cv2`` is fastest on), a contiguous NCHW batch as ``H×W`` planes. Outputs have the memory format
of the input (``torch.preserve_format``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["backend_for", "dense", "is_channels_last", "map_elementwise", "map_images"]

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shiftbench-cv2")
            _pools[workers] = pool
        return pool


def backend_for(images: torch.Tensor, backend: str) -> str:
    """Resolve ``backend="auto"``: cv2 for CPU tensors (fastest there), torch elsewhere (CUDA)."""
    if backend == "auto":
        return "cv2" if images.device.type == "cpu" else "torch"
    if backend == "cv2" and images.device.type != "cpu":
        from shiftbench.errors import UserInputError

        raise UserInputError(
            f"backend='cv2' needs CPU tensors; got device {images.device} (use backend='auto')"
        )
    return backend


def is_channels_last(t: torch.Tensor) -> bool:
    """True for a dense channels-last ``[B, C, H, W]`` tensor that is not also NCHW-contiguous."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if it is NCHW- or channels-last-contiguous, else an NCHW-contiguous copy."""
    return t if t.is_contiguous() or is_channels_last(t) else t.contiguous()


def _units(t: torch.Tensor) -> np.ndarray:
    """Per-image ``[B, H, W, C]`` (channels-last) or per-plane ``[B·C, H, W]`` numpy views."""
    if is_channels_last(t):
        return t.permute(0, 2, 3, 1).numpy()
    h, w = t.shape[-2:]
    return t.numpy().reshape(-1, h, w)


def _run(work: Callable[[int, int], None], n: int, tasks_per_worker: int = 4) -> None:
    """``work(start, stop)`` over ``range(n)``, split into small tasks for the thread pool.

    Several tasks per worker balance the load when another process holds a core.
    """
    workers = max(1, min(torch.get_num_threads(), n))
    if workers == 1:
        work(0, n)
        return
    n_tasks = min(n, workers * tasks_per_worker)
    bounds = np.linspace(0, n, n_tasks + 1).astype(int)
    pool = _pool(workers)
    futures = [pool.submit(work, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    for f in futures:
        f.result()  # re-raises a worker's exception here


def map_images(fn: Callable[[np.ndarray, np.ndarray], object], src: torch.Tensor) -> torch.Tensor:
    """Call ``fn(src_unit, dst_unit)`` per image (channels-last) or per plane (NCHW).

    Args:
        fn: e.g. ``lambda s, d: cv2.blur(s, (5, 5), dst=d)``; must write all of ``dst_unit``.
            Only for per-channel filters (the unit is ``H×W×C`` or ``H×W``, depending on layout).
        src: CPU tensor ``[B, C, H, W]``, NCHW- or channels-last-contiguous (see :func:`dense`).

    Returns:
        A new tensor of ``src``'s shape, dtype and memory format.
    """
    out = torch.empty_like(src)  # preserve_format: same strides as a dense src
    src_units, out_units = _units(src), _units(out)

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            fn(src_units[i], out_units[i])

    _run(work, src_units.shape[0])
    return out


def map_elementwise(
    fn: Callable[..., object], srcs: Sequence[torch.Tensor], chunk_rows: int = 256
) -> torch.Tensor:
    """Call ``fn(*src_chunks, dst_chunk)`` on row chunks of same-layout dense CPU tensors.

    For pixel-wise ops (e.g. ``cv2.addWeighted``) whose result does not depend on the layout.
    All ``srcs`` must have the same shape and strides.

    Returns:
        A new tensor of ``srcs[0]``'s shape, dtype and memory format.
    """
    first = srcs[0]
    if any(s.shape != first.shape or s.stride() != first.stride() for s in srcs):
        raise ValueError("map_elementwise needs tensors of identical shape and strides")
    out = torch.empty_like(first)
    width = first.shape[-1] * (first.shape[1] if is_channels_last(first) else 1)
    views = [_units(s).reshape(-1, width) for s in (*srcs, out)]
    n_rows = views[0].shape[0]
    n_chunks = -(-n_rows // chunk_rows)

    def work(start: int, stop: int) -> None:
        for c in range(start, stop):
            rows = slice(c * chunk_rows, min((c + 1) * chunk_rows, n_rows))
            fn(*(v[rows] for v in views))

    _run(work, n_chunks)
    return out
