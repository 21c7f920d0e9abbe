"""Several ranks of one run (``torchrun --nproc-per-node N -m shiftbench run …``).

Launched by ``torchrun`` (or any launcher that sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), every rank loads the data set and the checkpoints, and:

1. rank 0 alone holds the run directory's lock, checks the directory (resume, overwrite) and
   writes the manifest; the others wait for its verdict (an error there stops every rank);
2. every rank scans the part files, then a barrier, so that all ranks see the same pending
   batches; rank *r* computes pending batches ``r, r + N, r + 2N, …`` (no padded duplicates)
   and writes its own part files. Part files name their batch, not their rank, so parts from
   any N are interchangeable: cells, not ranks, are the unit of ``--resume``;
3. a monitored barrier (gloo), which names a rank that died, then every rank's status;
4. rank 0 assembles the tables, metrics.csv and the manifest; the others wait for it and read
   the same result.

Backend: NCCL when the ranks run on CUDA (each on GPU ``LOCAL_RANK``), gloo otherwise; the
control messages (barriers, errors) always go through a gloo group. The process group is
created only when ``WORLD_SIZE > 1`` and none exists, and only what is created here is
destroyed at the end.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from shiftbench.errors import RunError
from shiftbench.run.values import first_line

__all__ = ["Ranks", "join_ranks", "rank_device"]

T = TypeVar("T")

TIMEOUT_ENV = "SHIFTBENCH_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 7200.0  # how long a rank waits for a *slow* one; a dead one is seen at once
# Test hook: "R:K" makes rank R exit abruptly (os._exit) after writing K part files.
FAULT_ENV = "SHIFTBENCH_TEST_RANK_EXIT_AFTER_PARTS"


class RankStopped(RunError):
    """Another rank (or the launcher) stopped this one."""


@dataclass
class Ranks:
    """This process's place among the ranks of a run (one rank, world size 1, when alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None  # gloo process group for control messages (None when alone)
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, todo: Sequence[T]) -> list[T]:
        """This rank's share of the pending batches: every ``world_size``-th, from ``rank``."""
        return list(todo[self.rank :: self.world_size])

    def on_main(self, what: str, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 only; every rank raises if it failed there.

        Returns:
            ``fn()`` on rank 0, None on the other ranks.
        """
        if not self.distributed:
            return fn()
        error: str | None = None
        result = None
        if self.is_main:
            try:
                result = fn()
            except BaseException as e:
                error = first_line(e) or type(e).__name__
                with contextlib.suppress(RankStopped):  # keep rank 0's own error
                    self._broadcast(error, what)
                raise
        error = self._broadcast(error, what)
        if error is not None and not self.is_main:
            raise RankStopped(f"rank 0 failed while {what}: {error}")
        return result

    def barrier(self, what: str, error: BaseException | None = None) -> None:
        """Wait for every rank; raise, naming the rank, if one died or failed.

        Args:
            what: what the ranks were doing (for the message).
            error: this rank's own failure, if any (shared with the other ranks).
        """
        if not self.distributed:
            if error is not None:
                raise error
            return
        timeout = datetime.timedelta(seconds=self.timeout_s)
        try:
            torch.distributed.monitored_barrier(self.group, timeout=timeout, wait_all_ranks=True)
            statuses: list[Any] = [None] * self.world_size
            mine = None if error is None else (first_line(error) or type(error).__name__)
            torch.distributed.all_gather_object(statuses, mine, group=self.group)
        except RuntimeError as e:
            raise RankStopped(
                f"rank {self.rank}: another rank stopped while {what} ({_gloo_reason(e)}); "
                "finished batches are kept: rerun the same command with --resume"
            ) from None
        if error is not None:
            raise error
        failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
        if failed:
            r, s = failed[0]
            raise RankStopped(
                f"rank {r} failed while {what}: {s}; finished batches are kept: "
                "rerun the same command with --resume"
            )

    def _broadcast(self, error: str | None, what: str) -> str | None:
        box = [error]
        try:
            torch.distributed.broadcast_object_list(box, src=0, group=self.group)
        except RuntimeError as e:
            raise RankStopped(
                f"rank {self.rank}: lost contact with rank 0 while {what} ({_gloo_reason(e)})"
            ) from None
        return box[0]


def _gloo_reason(error: BaseException) -> str:
    """The useful part of a gloo error: which rank(s) did not reach the barrier, if it says."""
    found = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", str(error))
    if found:
        who = found.group(1).strip().rstrip(",")
        return f"rank {who} died or did not reach the barrier in time"
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[0] if lines else type(error).__name__


def _environment() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the variables torchrun sets (1, 0, 0 without)."""

    def read(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        try:
            return int(value) if value.strip() else default
        except ValueError:
            raise RunError(f"environment variable {name}={value!r} is not an integer") from None

    return read("WORLD_SIZE", 1), read("RANK", 0), read("LOCAL_RANK", 0)


def rank_device(spec: str | torch.device, ranks: Ranks) -> str | torch.device:
    """Each rank its own GPU: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` with several ranks."""
    if not ranks.distributed or (isinstance(spec, torch.device) and spec.index is not None):
        return spec
    name = str(spec).strip().lower()
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return f"cuda:{ranks.local_rank % max(torch.cuda.device_count(), 1)}"
    return spec


@contextlib.contextmanager
def join_ranks(device: str | torch.device) -> Iterator[Ranks]:
    """The ranks of this run: joins the process group when launched with ``WORLD_SIZE > 1``.

    Creates the default process group (NCCL on CUDA, gloo otherwise) only if none exists, and a
    gloo group for control messages when the default one is not gloo; destroys only those. While
    inside, SIGTERM (sent by torchrun to the other ranks when one fails) becomes a
    :class:`RankStopped` error, so the run records why it stopped.

    Args:
        device: the ``--device`` spec (decides the backend).
    """
    world, rank, local_rank = _environment()
    if world <= 1:
        yield Ranks()
        return
    dist = torch.distributed
    if not dist.is_available():  # pragma: no cover - every torch build we support has it
        raise RunError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    created_default = created_group = False
    group = None
    try:
        if not dist.is_initialized():
            on_cuda = str(rank_device(device, Ranks(world_size=2))).startswith("cuda")
            dist.init_process_group(
                "nccl" if on_cuda else "gloo",
                timeout=datetime.timedelta(seconds=timeout_s),
                world_size=world,
                rank=rank,
            )
            created_default = True
        if dist.get_backend() == "gloo":
            group = dist.group.WORLD
        else:
            group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
            created_group = True
        ranks = Ranks(dist.get_rank(), dist.get_world_size(), local_rank, group, timeout_s)
        with _sigterm_stops(ranks):
            yield ranks
    finally:
        if created_group:
            dist.destroy_process_group(group)
        if created_default:
            dist.destroy_process_group()


@contextlib.contextmanager
def _sigterm_stops(ranks: Ranks) -> Iterator[None]:
    """SIGTERM → :class:`RankStopped` while inside (main thread only); the old handler after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise RankStopped(
            f"rank {ranks.rank} stopped by the launcher (SIGTERM), usually because another rank "
            "failed (torchrun names it); finished batches are kept: rerun with --resume"
        )

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fault_hook(ranks: Ranks) -> Callable[[int], None] | None:
    """For tests only: the ``SHIFTBENCH_TEST_RANK_EXIT_AFTER_PARTS=R:K`` crash of rank R."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    r, k = (int(x) for x in spec.split(":"))
    if r != ranks.rank:
        return None

    def after_part(n_written: int) -> None:
        if n_written >= k:
            os._exit(17)  # an abrupt death: no cleanup, no message, like a killed process

    return after_part
