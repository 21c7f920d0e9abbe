"""Registry: registration by subclassing, duplicates, lookup errors, plugin modules."""

from __future__ import annotations

import sys
import textwrap
from typing import ClassVar

import pytest
import torch

import shiftbench
from shiftbench.errors import UserInputError
from shiftbench.registry import _unregister, get_shift_class, list_shifts, load_plugins
from shiftbench.shifts.base import Shift


@pytest.fixture
def cleanup():
    """Names registered by a test; unregistered afterwards so other tests see the real registry."""
    names: list[str] = []
    yield names
    for name in names:
        _unregister(name)


def test_user_defined_shift_registers_and_is_usable(cleanup):
    cleanup.append("test_invert")

    class Invert(Shift):
        """Blend towards the negative: x + m·(255 − 2x)."""

        name: ClassVar[str] = "test_invert"
        magnitudes: ClassVar[tuple[float, ...]] = (0.0, 0.5, 1.0)
        identity: ClassVar[float] = 0.0
        units: ClassVar[str] = "fraction"
        description: ClassVar[str] = "blend towards the negative image"
        valid_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

        def apply(self, state, magnitude, ctx):
            x = state.float()
            return (x + magnitude * (255 - 2 * x)).round().to(torch.uint8)

    assert "test_invert" in list_shifts()
    assert get_shift_class("test_invert") is Invert
    shift = shiftbench.get_shift("test_invert")
    x = torch.tensor([[[[0, 100, 255]]] * 3], dtype=torch.uint8)
    assert torch.equal(shift(x, 1.0), 255 - x)
    assert torch.equal(shift(x, 0.0), x)
    _unregister("test_invert")
    assert "test_invert" not in list_shifts()


def test_duplicate_name_is_an_error(cleanup):
    cleanup.append("test_dup")

    class First(Shift):
        name: ClassVar[str] = "test_dup"
        magnitudes: ClassVar[tuple[float, ...]] = (0.0, 1.0)
        identity: ClassVar[float] = 0.0
        units: ClassVar[str] = "u"
        description: ClassVar[str] = "first"
        valid_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    with pytest.raises(ValueError, match=r"'test_dup' is already registered.*First"):

        class Second(Shift):
            name: ClassVar[str] = "test_dup"
            magnitudes: ClassVar[tuple[float, ...]] = (0.0, 1.0)
            identity: ClassVar[float] = 0.0
            units: ClassVar[str] = "u"
            description: ClassVar[str] = "second"
            valid_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    assert get_shift_class("test_dup") is First
    with pytest.raises(ValueError, match="already registered"):

        class TakesABuiltinName(Shift):
            name: ClassVar[str] = "blur"
            magnitudes: ClassVar[tuple[float, ...]] = (1.0,)
            identity: ClassVar[float] = 1.0
            units: ClassVar[str] = "u"
            description: ClassVar[str] = "x"
            valid_range: ClassVar[tuple[float, float]] = (1.0, 2.0)

    assert get_shift_class("blur").__module__ == "shiftbench.shifts.blur"


def test_unknown_name_lists_valid_names():
    with pytest.raises(UserInputError, match="unknown shift 'blurr'") as info:
        shiftbench.get_shift("blurr")
    for name in ("blur", "sharpen", "cutout"):
        assert name in str(info.value)


def test_load_plugins_imports_a_module_that_registers(tmp_path, monkeypatch, cleanup):
    cleanup.append("test_plugin_gamma")
    (tmp_path / "sb_test_plugin_gamma.py").write_text(
        textwrap.dedent(
            """
            from shiftbench.shifts.base import Shift

            class Gamma(Shift):
                name = "test_plugin_gamma"
                magnitudes = (1.0, 2.0)
                identity = 1.0
                units = "gamma"
                description = "power-law intensity change"
                valid_range = (0.1, 10.0)

                def apply(self, state, magnitude, ctx):
                    return ((state.float() / 255) ** magnitude * 255).round().byte()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sb_test_plugin_gamma", raising=False)
    load_plugins(["sb_test_plugin_gamma"])
    assert "test_plugin_gamma" in list_shifts()
    sys.modules.pop("sb_test_plugin_gamma", None)


def test_load_plugins_with_a_bad_module_is_a_user_error():
    with pytest.raises(UserInputError, match="cannot import plugin module 'no_such_module_xyz'"):
        load_plugins(["no_such_module_xyz"])


# -- register_shift, the explicit built-in list, all-or-nothing loading --------------------------


def test_register_shift_is_public_and_idempotent(cleanup):
    from shiftbench.registry import register_shift

    cleanup.append("test_explicit")

    @register_shift  # also registered by subclassing: the decorator changes nothing
    class Explicit(Shift):
        name: ClassVar[str] = "test_explicit"
        magnitudes: ClassVar[tuple[float, ...]] = (0.0, 1.0)
        identity: ClassVar[float] = 0.0
        units: ClassVar[str] = "u"
        description: ClassVar[str] = "x"
        valid_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    assert get_shift_class("test_explicit") is Explicit
    with pytest.raises(TypeError, match="expects a Shift subclass"):
        register_shift(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects a Shift subclass"):
        register_shift(Shift)


def test_every_shift_module_is_listed_explicitly():
    """A new file under shiftbench/shifts/ needs its line in BUILTIN_SHIFTS (nothing is scanned)."""
    from pathlib import Path

    import shiftbench.shifts as pkg
    from shiftbench.registry import BUILTIN_SHIFTS

    modules = {
        f"shiftbench.shifts.{p.stem}"
        for p in Path(pkg.__file__).parent.glob("*.py")
        if not p.stem.startswith("_") and p.stem != "base"
    }
    assert set(BUILTIN_SHIFTS.values()) == modules
    for name, module in BUILTIN_SHIFTS.items():
        assert get_shift_class(name).__module__ == module


@pytest.fixture
def fake_builtins(tmp_path, monkeypatch):
    """BUILTIN_SHIFTS replaced by modules written to tmp_path; the real registry is restored."""
    from shiftbench import registry

    saved = dict(registry._SHIFTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_builtin_loaded", False)
    monkeypatch.setattr(registry, "BUILTIN_SHIFTS", {})

    def write(module: str, body: str, names: list[str]) -> None:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
        sys.modules.pop(module, None)
        for n in names:
            registry.BUILTIN_SHIFTS[n] = module

    yield write
    registry._SHIFTS.clear()
    registry._SHIFTS.update(saved)
    for module in list(sys.modules):
        if module.startswith("sb_fake_"):
            sys.modules.pop(module)


_FAKE_SHIFT = """
from shiftbench.shifts.base import Shift

class Fake(Shift):
    name = "{name}"
    magnitudes = (0.0, 1.0)
    identity = 0.0
    units = "u"
    description = "fake built-in"
    valid_range = (0.0, 1.0)
"""


def test_a_failing_builtin_module_leaves_no_partial_registry(fake_builtins, tmp_path):
    from shiftbench import registry
    from shiftbench.errors import ShiftbenchError

    fake_builtins("sb_fake_ok", _FAKE_SHIFT.format(name="test_fake_ok"), ["test_fake_ok"])
    fake_builtins("sb_fake_broken", "raise ImportError('missing dependency xyz')\n", ["test_bad"])
    before = dict(registry._SHIFTS)
    for _ in range(2):  # the second call tries again and fails the same way
        with pytest.raises(ShiftbenchError, match=r"sb_fake_broken failed to load .*xyz"):
            list_shifts()
        assert registry._SHIFTS == before, "a partial registry was left behind"

    (tmp_path / "sb_fake_broken.py").write_text(_FAKE_SHIFT.format(name="test_bad"))
    sys.modules.pop("sb_fake_broken", None)
    assert {"test_fake_ok", "test_bad"} <= set(list_shifts())


def test_a_listed_helper_module_that_registers_nothing_is_an_error(fake_builtins):
    from shiftbench.errors import ShiftbenchError

    fake_builtins("sb_fake_helper", "def helper():\n    return 1\n", ["test_helper"])
    with pytest.raises(ShiftbenchError, match="test_helper not registered by its module"):
        list_shifts()
