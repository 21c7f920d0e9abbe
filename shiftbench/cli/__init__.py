"""Command-line interface: a thin layer over the Python API.

Each command lives in its own module and attaches itself to :data:`app`. :func:`main` runs the
app in-process (tests call it directly) and turns user errors into one line on stderr with a
non-zero exit code and no traceback.
"""

from __future__ import annotations

import importlib
import sys

from shiftbench.cli.app import app
from shiftbench.errors import ShiftbenchError

# Command modules; each registers its commands on `app` when imported.
_COMMAND_MODULES = (
    "shiftbench.cli.shifts_cmd",  # shifts, preview
    "shiftbench.cli.run_cmd",  # run
    "shiftbench.cli.train_cmd",  # train, make-cutout-set, demo
    "shiftbench.cli.spurious_cmd",  # make-spurious-set
    "shiftbench.cli.report_cmd",  # leaderboard, plot, roc, figures
    "shiftbench.cli.migrate_cmd",  # migrate
    "shiftbench.cli.profile_cmd",  # profile
    "shiftbench.cli.spectrum_cmd",  # spectrum
)

EXIT_USER_ERROR = 2


def _click_exceptions() -> tuple[type, type, type]:
    """(ClickException, Exit, Abort) as raised by the click that typer runs on."""
    import typer

    try:
        from typer._click.exceptions import ClickException  # typer >= 0.22 vendors click
    except ImportError:  # pragma: no cover - older typer runs on click itself
        from click import ClickException
    return ClickException, typer.Exit, typer.Abort


def _load_commands() -> None:
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    _load_commands()
    click_exception, click_exit, click_abort = _click_exceptions()
    try:
        rv = app(args=argv, prog_name="shiftbench", standalone_mode=False)
    except click_exit as e:
        return int(e.exit_code)
    except click_exception as e:
        e.show()
        return int(e.exit_code)
    except click_abort:
        print("Aborted.", file=sys.stderr)
        return 130
    except ShiftbenchError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("Interrupted; finished cells are kept (rerun with --resume).", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) else 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["app", "entrypoint", "main"]
