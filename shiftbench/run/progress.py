"""Messages and the progress bar of a run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("shiftbench.run")


class Messenger:
    """Messages to a rich console, or to the ``shiftbench.run`` logger when there is none."""

    def __init__(self, console: Any) -> None:
        self.console = console

    def __call__(self, message: str, style: str | None = None) -> None:
        if self.console is not None:
            self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            log.warning(message) if style else log.info(message)


class _NullBar:
    def advance(self, images: int, evals: int) -> None:
        pass


class _RichBar:
    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task
        self.evals = 0

    def advance(self, images: int, evals: int) -> None:
        self.evals += evals
        self.progress.update(self.task, advance=images, evals=self.evals)


@contextlib.contextmanager
def progress_bar(enabled: bool, console: Any, total: int, n_evals: int) -> Iterator[Any]:
    if not enabled:
        yield _NullBar()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Speed(TextColumn):
        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} img/s" if speed else "– img/s")

    progress = Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TaskProgressColumn(),
        _Speed(""),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task("sweep", total=total, evals=0)
        yield _RichBar(progress, task)
