"""Registry of shift operators (timm ``_registry.py`` style): a leaf module.

It imports nothing from ``shiftbench.shifts`` at import time; the shift modules import
:func:`register_shift` from here. A :class:`~shiftbench.shifts.base.Shift` subclass that defines
``name`` is registered by ``Shift.__init_subclass__`` through :func:`register_shift` when its
module is imported (:func:`register_shift` can also be called directly, or used as a class
decorator, which is a no-op for an already registered class).

The built-in shifts are the modules listed in :data:`BUILTIN_SHIFTS` (name → module), imported
explicitly on first use, all or nothing: if one fails to import, the registry is left as it was
and the error says which module failed (a later call tries again). A new built-in shift is a new
file under ``shiftbench/shifts/`` plus one line in :data:`BUILTIN_SHIFTS`
(``tests/test_registry.py`` checks that every shift module is listed). Shifts from other
packages come in three ways:

* import the module that defines them (``import my_shifts``) before calling the API;
* ``shiftbench ... --plugin my_shifts`` on the CLI (imports the module by name);
* an entry point in the group ``shiftbench.shifts`` in the other package's metadata.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from shiftbench.errors import ShiftbenchError, UserInputError

if TYPE_CHECKING:
    from shiftbench.shifts.base import Shift

__all__ = [
    "BUILTIN_SHIFTS",
    "ENTRY_POINT_GROUP",
    "get_shift",
    "get_shift_class",
    "list_shifts",
    "load_plugins",
    "register_shift",
]

#: Built-in shifts: registered name → module that defines it (imported explicitly, in order).
BUILTIN_SHIFTS: dict[str, str] = {
    "blur": "shiftbench.shifts.blur",
    "sharpen": "shiftbench.shifts.sharpen",
    "haematoxylin": "shiftbench.shifts.stain",
    "eosin": "shiftbench.shifts.stain",
    "cutout": "shiftbench.shifts.cutout",
    "lowpass": "shiftbench.shifts.frequency",
    "highpass": "shiftbench.shifts.frequency",
    "ring": "shiftbench.shifts.frequency",
}

ENTRY_POINT_GROUP = "shiftbench.shifts"

_SHIFTS: dict[str, type[Shift]] = {}
_builtin_loaded = False
_entry_points_loaded = False

S = TypeVar("S", bound="type[Shift]")


def register_shift(cls: S) -> S:
    """Register a :class:`~shiftbench.shifts.base.Shift` subclass under its ``name``.

    ``Shift.__init_subclass__`` calls this for every subclass that defines ``name``; calling it
    again for the same class (e.g. as a class decorator) changes nothing. Returns ``cls``.

    Raises:
        TypeError: ``cls`` is not a Shift subclass with a ``name``.
        ValueError: ``name`` is already registered by another class.
    """
    from shiftbench.shifts.base import Shift

    if not (isinstance(cls, type) and issubclass(cls, Shift)) or not isinstance(
        cls.__dict__.get("name"), str
    ):
        raise TypeError(f"register_shift expects a Shift subclass that defines name; got {cls!r}")
    name = cls.name
    existing = _SHIFTS.get(name)
    if existing is not None and _qualname(existing) != _qualname(cls):
        raise ValueError(
            f"shift name {name!r} is already registered by {_qualname(existing)}; "
            f"choose another name for {_qualname(cls)}"
        )
    _SHIFTS[name] = cls
    return cls


def _unregister(name: str) -> None:
    """Remove a shift (for tests that register temporary shifts)."""
    _SHIFTS.pop(name, None)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_builtin() -> None:
    """Import every module of :data:`BUILTIN_SHIFTS`; all or nothing (see the module docstring)."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    before = dict(_SHIFTS)
    modules = list(dict.fromkeys(BUILTIN_SHIFTS.values()))
    module = ""
    try:
        for module in modules:
            importlib.import_module(module)
        missing = [n for n, m in BUILTIN_SHIFTS.items() if _SHIFTS.get(n, type).__module__ != m]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not registered by its module")
    except Exception as e:
        _SHIFTS.clear()
        _SHIFTS.update(before)
        for m in modules:  # so that the next call imports (and registers) them again
            sys.modules.pop(m, None)
        first = str(e).splitlines()[0] if str(e) else ""
        raise ShiftbenchError(
            f"built-in shift module {module} failed to load ({type(e).__name__}: {first}); "
            "reinstall shiftbench"
        ) from e
    _builtin_loaded = True


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
        UserInputError: ``name`` is not registered (the message lists valid names), or
            ``params`` names a parameter the shift does not have (the message lists its
            parameters); the shift's own checks reject bad values.
    """
    cls = get_shift_class(name)
    if params:
        accepted = inspect.signature(cls).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        unknown = [k for k in params if k not in accepted]
        if unknown and not takes_any:
            known = ", ".join(accepted) or "none"
            raise UserInputError(
                f"shift {name!r} has no parameter {unknown[0]!r}; its parameters: {known}"
            )
    return cls(**params)


def get_shift_class(name: str) -> type[Shift]:
    """The class registered as ``name`` (see :func:`get_shift`)."""
    shifts = _all()
    if name not in shifts:
        raise UserInputError(f"unknown shift {name!r}; valid shifts: {', '.join(sorted(shifts))}")
    return shifts[name]
