"""Registry of shift operators (timm ``_registry.py`` style).

A :class:`~shiftbench.shifts.base.Shift` subclass that defines ``name`` registers itself when its
module is imported (``__init_subclass__``), so adding a shift is one new file under
``shiftbench/shifts/`` and nothing else. Shifts from other packages come in three ways:

* import the module that defines them (``import my_shifts``) before calling the API;
* ``shiftbench ... --plugin my_shifts`` on the CLI (imports the module by name);
* an entry point in the group ``shiftbench.shifts`` in the other package's metadata.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from shiftbench.errors import UserInputError

if TYPE_CHECKING:
    from shiftbench.shifts.base import Shift

_SHIFTS: dict[str, type[Shift]] = {}
_builtin_loaded = False
_entry_points_loaded = False

ENTRY_POINT_GROUP = "shiftbench.shifts"


def _register(cls: type[Shift]) -> None:
    """Called by ``Shift.__init_subclass__``; errors on a name taken by another class."""
    name = cls.name
    existing = _SHIFTS.get(name)
    if existing is not None and _qualname(existing) != _qualname(cls):
        raise ValueError(
            f"shift name {name!r} is already registered by {_qualname(existing)}; "
            f"choose another name for {_qualname(cls)}"
        )
    _SHIFTS[name] = cls


def _unregister(name: str) -> None:
    """Remove a shift (for tests that register temporary shifts)."""
    _SHIFTS.pop(name, None)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    import shiftbench.shifts as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def load_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import modules by name so the shifts they define register themselves.

    Raises:
        UserInputError: a module cannot be imported.
    """
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise UserInputError(
                f"cannot import plugin module {mod!r} ({e}); check that it is on PYTHONPATH"
            ) from e
        except Exception as e:  # a plugin's own bug or a duplicate shift name
            first = str(e).splitlines()[0] if str(e) else ""
            raise UserInputError(
                f"plugin module {mod!r} failed on import: {type(e).__name__}: {first}"
            ) from e


def _all() -> dict[str, type[Shift]]:
    _load_builtin()
    _load_entry_points()
    return _SHIFTS


def list_shifts() -> list[str]:
    """Names of all registered shifts, sorted."""
    return sorted(_all())


def get_shift(name: str, **params: Any) -> Shift:
    """Instantiate the shift registered as ``name`` with optional parameters.

    Raises:
        UserInputError: ``name`` is not registered (the message lists valid names).
    """
    shifts = _all()
    if name not in shifts:
        raise UserInputError(f"unknown shift {name!r}; valid shifts: {', '.join(sorted(shifts))}")
    return shifts[name](**params)


def get_shift_class(name: str) -> type[Shift]:
    """The class registered as ``name`` (see :func:`get_shift`)."""
    shifts = _all()
    if name not in shifts:
        raise UserInputError(f"unknown shift {name!r}; valid shifts: {', '.join(sorted(shifts))}")
    return shifts[name]
