"""Shared CLI options: one list parser, one naming and metavar scheme, per-shift settings."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import typer
from _models import CLASS_NAMES, save_tiny_checkpoint, write_oral_folder
from conftest import ORAL

from shiftbench import read_predictions
from shiftbench.cli import _load_commands, app
from shiftbench.cli.options import (
    MagnitudeSpec,
    configured_shifts,
    parse_magnitude_options,
    parse_param_options,
)
from shiftbench.errors import UserInputError
from shiftbench.lists import parse_numbers, split_list
from shiftbench.registry import get_shift, get_shift_class

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _commands() -> dict[str, object]:
    _load_commands()
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


# -- the list parser ----------------------------------------------------------------------------


def test_one_list_syntax_for_strings_repeats_and_numbers():
    assert split_list("a, b,c", option="--x") == ["a", "b", "c"]
    assert split_list(["a,b", "c"], option="--x") == ["a", "b", "c"]
    assert parse_numbers("1,0.5", option="--x") == [1.0, 0.5]
    assert parse_numbers(["1", "2,3"], option="--x", integer=True) == [1, 2, 3]
    assert parse_numbers([0.01, 0.001], option="--x") == [0.01, 0.001]
    for bad, kwargs, match in [
        ("1,,2", {}, "--x '1,,2' has an empty item"),
        ([], {}, "--x is empty"),
        ("1,a", {}, "--x: 'a' is not a number"),
        ("1,inf", {}, "not a finite number"),
        ("1,2.5", {"integer": True}, "'2.5' is not a whole number"),
        ("1,1", {"unique": True}, "'1' is given twice"),
    ]:
        with pytest.raises(UserInputError, match=re.escape(match)):
            parse_numbers(bad, option="--x", **kwargs)


# -- per-shift magnitudes and parameters --------------------------------------------------------


def test_magnitude_options_bare_and_per_shift():
    spec = parse_magnitude_options(["blur=1,5,9", "eosin = 1,0.5,0", "0,1"])
    assert spec == MagnitudeSpec(
        common=[0.0, 1.0], per_shift={"blur": [1, 5, 9], "eosin": [1, 0.5, 0]}
    )
    assert spec.for_shift("blur") == [1.0, 5.0, 9.0] and spec.for_shift("sharpen") == [0.0, 1.0]
    assert parse_magnitude_options(None) == MagnitudeSpec()
    for bad, match in [
        (["1,2", "3"], "a list for every shift is already given"),
        (["blur=1", "blur=2"], "'blur' is given twice"),
        (["=1,2"], "name the shift"),
        (["blur=1,,2"], "empty item"),
    ]:
        with pytest.raises(UserInputError, match=match):
            parse_magnitude_options(bad)


def test_param_options_are_typed():
    params = parse_param_options(
        ["sharpen.mode=kernel", "cutout.fill=255,0,0", "cutout.patch_size=4", "x.flag=true"]
    )
    assert params == {
        "sharpen": {"mode": "kernel"},
        "cutout": {"fill": (255, 0, 0), "patch_size": 4},
        "x": {"flag": True},
    }
    for bad in (["sharpen=kernel"], ["mode=kernel"], [".mode=kernel"], ["sharpen.mode"]):
        with pytest.raises(UserInputError, match=r"must look like SHIFT\.KEY=VALUE"):
            parse_param_options(bad)
    with pytest.raises(UserInputError, match="given twice"):
        parse_param_options(["sharpen.mode=kernel", "sharpen.mode=blend"])


def test_configured_shifts_carry_their_own_sweep_and_parameters():
    spec = parse_magnitude_options(["blur=1,3", "0,1"])
    params = parse_param_options(["sharpen.mode=kernel"])
    blur, sharpen = configured_shifts(["blur", "sharpen"], spec, params)
    assert blur.magnitudes == (1.0, 3.0) and sharpen.magnitudes == (0.0, 1.0)
    assert sharpen.params()["mode"] == "kernel"
    assert get_shift_class("blur").magnitudes[:3] == (1, 2, 3), "the class default is unchanged"
    with pytest.raises(UserInputError, match="--magnitudes names 'eosin', which is not among"):
        configured_shifts(["blur"], parse_magnitude_options(["eosin=1"]), {})
    with pytest.raises(UserInputError, match="--param names 'cutout'"):
        configured_shifts(["blur"], MagnitudeSpec(), {"cutout": {"fill": 1}})
    with pytest.raises(UserInputError, match=r"blur: magnitude 2\.5 must be a whole number"):
        configured_shifts(["blur"], parse_magnitude_options(["blur=2.5"]), {})
    with pytest.raises(
        UserInputError,
        match="shift 'sharpen' has no parameter 'mod'; its parameters: mode, backend",
    ):
        get_shift("sharpen", mod="kernel")


@pytest.fixture(scope="module")
def small_run_inputs(tmp_path_factory):
    if not ORAL.exists():
        pytest.skip(f"shared data not found at {ORAL}")
    root = tmp_path_factory.mktemp("opts")
    data = write_oral_folder(root / "data", n_per_class=2)
    ckpt = save_tiny_checkpoint(root / "a.pt", class_names=CLASS_NAMES)
    return data, ckpt


def test_run_with_per_shift_magnitudes_and_parameters(cli, small_run_inputs, tmp_path):
    data, ckpt = small_run_inputs
    out = tmp_path / "run"
    code, _, err = cli(
        "run", "--ckpt", ckpt, "--data", data, "--out", out, "--shift", "blur,sharpen",
        "--shift", "eosin", "--magnitudes", "blur=1,3", "--magnitudes", "eosin=1,0",
        "--magnitudes", "0,0.5", "--param", "sharpen.mode=kernel",
        "--workers", "0", "--n-boot", "0", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    metrics = pd.read_csv(out / "metrics.csv")
    got = {s: sorted(g["magnitude"].unique()) for s, g in metrics.groupby("shift")}
    assert got == {"blur": [1.0, 3.0], "eosin": [0.0, 1.0], "sharpen": [0.0, 0.5]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert "kernel" in json.dumps(manifest["shifts"]), manifest["shifts"]

    # The kernel-mode sharpen differs from the default blend at α = 0.5 for some image (they
    # differ where the sharpened pixel saturates; at α = 1 both are saturate(filter2D(x, K))).
    pred = read_predictions(out)
    blend_out = tmp_path / "blend"
    code, _, err = cli(
        "run", "--ckpt", ckpt, "--data", data, "--out", blend_out, "--shift", "sharpen",
        "--magnitudes", "0,0.5", "--workers", "0", "--n-boot", "0", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    blend = read_predictions(blend_out)
    strongest = [
        p[(p["shift"] == "sharpen") & (p["magnitude"] == 0.5)].sort_values("sample_id")
        for p in (pred, blend)
    ]
    assert not np.array_equal(strongest[0]["prob_OSCC"], strongest[1]["prob_OSCC"])


def test_run_rejects_settings_for_unselected_shifts(cli, small_run_inputs, tmp_path):
    data, ckpt = small_run_inputs
    base = ("run", "--ckpt", ckpt, "--data", data, "--out", tmp_path / "r", "--shift", "blur")
    code, _, err = cli(*base, "--magnitudes", "eosin=1,0")
    assert code == 2
    assert err.strip() == (
        "error: --magnitudes names 'eosin', which is not among the shifts (blur)"
    )
    code, _, err = cli(*base, "--param", "blur.kernel=3")
    assert code == 2
    assert err.strip().startswith("error: shift 'blur' has no parameter 'kernel'; its parameters:")
    assert not (tmp_path / "r").exists()


# -- naming and metavars ------------------------------------------------------------------------


def test_progress_flag_on_train_run_and_demo():
    commands = _commands()
    for name in ("train", "run", "demo"):
        opts = {o for p in commands[name].params for o in (*p.opts, *p.secondary_opts)}
        assert {"--progress", "--no-progress"} <= opts, name


def test_image_size_everywhere_input_size_hidden():
    commands = _commands()
    for name in ("train", "run"):
        names = {o for p in commands[name].params for o in p.opts}
        assert "--image-size" in names, name
    hidden = {o for p in commands["train"].params if p.hidden for o in p.opts}
    assert hidden == {"--input-size"}


def test_every_option_has_an_upper_case_metavar():
    """FILE, DIR, PATH, N, NAME, LIST, ...: not typer's TEXT / INTEGER / <path> defaults."""
    bad = []
    for cmd_name, cmd in _commands().items():
        for p in cmd.params:
            if p.param_type_name != "option" or p.is_flag or p.hidden:
                continue
            if not (p.metavar and re.fullmatch(r"[A-Z\[\]=.,:_|-]+", p.metavar)):
                bad.append(f"{cmd_name} {p.opts[0]} ({p.metavar!r})")
    assert bad == []


def test_train_accepts_the_deprecated_input_size(cli, tmp_path, monkeypatch):
    from shiftbench import training

    seen = {}

    def fake_train(data, **kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr(training, "train", fake_train)
    base = ("train", "--data", tmp_path, "--method", "wd", "--out", tmp_path / "o")
    code, _, err = cli(*base, "--input-size", "48", "--seeds", "0,1", "--seeds", "2")
    assert code == 0, err
    assert err.strip() == "warning: --input-size is deprecated; use --image-size"
    assert seen["input_size"] == 48 and seen["seeds"] == [0, 1, 2] and seen["progress"] is True
    code, _, err = cli(*base, "--image-size", "32", "--no-progress")
    assert code == 0 and err == ""
    assert seen["input_size"] == 32 and seen["progress"] is False
    code, _, err = cli(*base, "--seeds", "0,0.5")
    assert code == 2 and err.strip() == "error: --seeds: '0.5' is not a whole number; e.g. 0,1,2"


def test_one_parameter_parser_for_run_preview_spurious_and_spectrum():
    # --param of run/preview (SHIFT.KEY=VALUE) and of make-spurious-set/spectrum (KEY=VALUE)
    # convert values the same way.
    from shiftbench.spurious_set import parse_param

    for text, want in (
        ("3", 3),
        ("0.5", 0.5),
        ("true", True),
        ("none", None),
        ("0,255,0", (0, 255, 0)),
        ("kernel", "kernel"),
    ):
        assert parse_param(f"k={text}") == ("k", want)
        assert parse_param_options([f"s.k={text}"]) == {"s": {"k": want}}
    with pytest.raises(UserInputError, match="--param"):
        parse_param("fill=0,,255")
