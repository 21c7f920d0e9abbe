"""``run --normalize macenko``: stain normalisation after the shift, before the models.

Real oral tiles (64 px) plus one white tile; the target is a real H&E image. The independent
references: the same images normalised beforehand with :class:`StainNormalizer` and evaluated by
a plain run, and a hand-written shift → normalise → preprocess → model path.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from _models import CLASS_NAMES, oral_rows, save_tiny_checkpoint, tiny_model
from conftest import HE_IMAGES, ORAL, one_error_line, read_rgb

import shiftbench
from shiftbench.errors import RunError
from shiftbench.normalize import StainNormalizer
from shiftbench.registry import get_shift
from shiftbench.report.notes import ReportWarning
from shiftbench.run.rundir import CHECKPOINT_COLUMNS, NORMALIZE, PARTS_DIR

SIZE = 64
BLUR = 5.0  # a shifted cell: blur kernel 5 px (the identity is 1)
TARGET = HE_IMAGES / "histoqc_template1.png"
SEEDS = {"wd": 0, "sd": 1}  # method → model seed
RUN = {"n_boot": 0, "workers": 0, "batch_size": 8, "seed": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Raw data (3 + 3 real tiles and a white tile), a pre-normalised copy, two checkpoints and
    three runs: normalised, plain on the pre-normalised copy, plain on the raw data."""
    if not TARGET.exists():
        pytest.skip(f"shared data not found at {TARGET}")
    root = tmp_path_factory.mktemp("norm")
    raw, pre = root / "raw", root / "prenormalised"
    normalizer = StainNormalizer.from_file(TARGET)
    images = {}
    for r in oral_rows(3):
        rel = f"{r['class_name']}/{Path(r['path']).stem}.png"
        images[rel] = cv2.resize(read_rgb(ORAL / r["path"]), (SIZE, SIZE), cv2.INTER_AREA)
    images["Normal/zz_white.png"] = np.full((SIZE, SIZE, 3), 255, np.uint8)
    for rel, rgb in images.items():
        _write_png(raw / rel, rgb)
        one = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
        _write_png(pre / rel, normalizer(one).images[0].permute(1, 2, 0).numpy())
    ckpts = [
        save_tiny_checkpoint(
            root / f"{m}.pt", seed=s, meta={"method": m, "seed": 0}, class_names=CLASS_NAMES
        )
        for m, s in SEEDS.items()
    ]
    runs = {
        "macenko": shiftbench.run(
            ckpts, raw, ["blur"], out=root / "macenko", magnitudes=[1, BLUR], normalize="macenko",
            normalize_target=TARGET, **RUN,
        ),
        "pre": shiftbench.run(ckpts, pre, ["blur"], out=root / "pre", magnitudes=[1], **RUN),
        "plain": shiftbench.run(
            ckpts, raw, ["blur"], out=root / "plain", magnitudes=[1, BLUR], **RUN
        ),
    }  # fmt: skip
    return root, raw, ckpts, runs


def _probs(result, magnitude: float) -> pd.DataFrame:
    """Probabilities of the blur cell at ``magnitude``, indexed by (checkpoint, file name)."""
    df = result.predictions()
    df = df[df["magnitude"] == magnitude]
    df = df.assign(file=df["path"].map(lambda p: Path(p).name))
    return df.set_index(["checkpoint", "file"]).sort_index()[["prob_Normal", "prob_OSCC"]]


def _white_id(result) -> int:
    samples = pd.read_parquet(result.out_dir / "samples.parquet")
    return int(samples.loc[samples["path"].str.endswith("zz_white.png"), "sample_id"].iloc[0])


def test_clean_cell_equals_a_plain_run_on_images_normalised_beforehand(env):
    _root, _raw, _ckpts, runs = env
    got = _probs(runs["macenko"], 1.0)
    want = _probs(runs["pre"], 1.0)
    assert len(got) == 2 * 7
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    assert got.index.equals(want.index)
    # and normalisation did change what the models see (the test could fail)
    plain = _probs(runs["plain"], 1.0).drop(index="zz_white.png", level="file")
    assert not np.allclose(got.drop(index="zz_white.png", level="file").to_numpy(), plain)


def _by_hand(raw: Path, paths: list[str], method: str, order: str) -> np.ndarray:
    """Blur → normalise (or the wrong order) → (x/255 − 0.5)/0.25 → model → softmax."""
    images = torch.from_numpy(np.stack([read_rgb(raw / p) for p in paths]))
    images = images.permute(0, 3, 1, 2).contiguous()
    ids = list(range(len(paths)))
    blur = get_shift("blur")
    normalise = StainNormalizer.from_file(TARGET)
    if order == "shift, then normalise":
        x = normalise(blur(images, BLUR, seed=0, sample_ids=ids)).images
    else:
        x = blur(normalise(images).images, BLUR, seed=0, sample_ids=ids)
    model = tiny_model(seed=SEEDS[method])
    with torch.no_grad():
        logits = model((x.float() / 255.0 - 0.5) / 0.25)
    return torch.softmax(logits, dim=1).numpy()


def test_shifted_cell_is_shift_then_normalise_before_preprocessing(env):
    _root, raw, _ckpts, runs = env
    df = runs["macenko"].predictions()
    df = df[df["magnitude"] == BLUR].sort_values(["checkpoint", "sample_id"])
    for method in SEEDS:
        rows = df[df["checkpoint"] == method]
        got = rows[["prob_Normal", "prob_OSCC"]].to_numpy()
        want = _by_hand(raw, list(rows["path"]), method, "shift, then normalise")
        np.testing.assert_allclose(got, want, atol=2e-5)
        wrong = _by_hand(raw, list(rows["path"]), method, "normalise, then shift")
        assert np.abs(got - wrong).max() > 1e-3


def test_white_tile_passes_through_and_is_counted(env):
    _root, _raw, _ckpts, runs = env
    norm = runs["macenko"].manifest["normalize"]
    white = _white_id(runs["macenko"])
    assert norm["passthrough_sample_ids"] == [white]
    assert norm["n_passthrough"] == 2  # the clean image and its blur-5 copy
    assert norm["method"] == "macenko" and norm["target"] == str(TARGET)
    assert len(norm["target_sha256"]) == 64
    assert np.asarray(norm["stain_matrix"]).shape == (2, 3)
    assert len(norm["max_concentrations"]) == 2
    got = _probs(runs["macenko"], 1.0).xs("zz_white.png", level="file")
    want = _probs(runs["plain"], 1.0).xs("zz_white.png", level="file")
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    config = runs["macenko"].manifest["config"]
    assert config["normalize"] == {"method": "macenko", "target_sha256": norm["target_sha256"]}
    assert "normalize" not in runs["plain"].manifest["config"]
    assert "normalize" not in runs["plain"].manifest
    timings = runs["macenko"].manifest["invocations"][-1]["timings_s"]
    assert timings["normalize"] > 0


def test_checkpoints_table_has_the_normalize_column(env):
    _root, _raw, _ckpts, runs = env
    for name, value in (("macenko", "macenko"), ("plain", "none")):
        table = pq.read_table(runs[name].out_dir / "checkpoints.parquet")
        assert table.column_names[len(CHECKPOINT_COLUMNS)] == NORMALIZE
        assert table.column(NORMALIZE).to_pylist() == [value, value]
        assert table.column_names[len(CHECKPOINT_COLUMNS) + 1 :] == ["method", "seed"]


def test_resume_keeps_the_counts_and_refuses_another_normalisation(env, tmp_path):
    _root, raw, ckpts, runs = env
    out = tmp_path / "run"
    args = (ckpts[:1], raw, ["blur"])
    options = {"out": out, "magnitudes": [1, BLUR], **RUN, "batch_size": 4}
    first = shiftbench.run(*args, normalize="macenko", normalize_target=TARGET, **options)
    assert _white_id(first) < 4  # its pass-through counts are in the part file that stays
    (part,) = (out / PARTS_DIR).glob("b000001-*.parquet")
    part.unlink()  # as if killed before the second batch was written
    again = shiftbench.run(
        *args, normalize="macenko", normalize_target=TARGET, resume=True, **options
    )
    assert again.manifest["normalize"] == first.manifest["normalize"]
    assert again.manifest["normalize"]["n_passthrough"] == 2
    before = (out / "manifest.json").read_text()
    other = HE_IMAGES / "torchstain_target.png"
    for kwargs in ({}, {"normalize": "macenko", "normalize_target": other}):
        with pytest.raises(RunError, match=r"holds a different run .*normalize") as e:
            shiftbench.run(*args, resume=True, **kwargs, **options)
        assert "\n" not in str(e.value)
    assert (out / "manifest.json").read_text() == before
    # and the other way round: a plain run is not resumed with normalisation
    with pytest.raises(RunError, match="normalize"):
        shiftbench.run(
            ckpts, raw, ["blur"], out=runs["plain"].out_dir, magnitudes=[1, BLUR], resume=True,
            normalize="macenko", normalize_target=TARGET, **RUN,
        )  # fmt: skip


def test_cli_bad_normalisation_options_are_one_line_and_write_nothing(cli, env, tmp_path):
    _root, raw, ckpts, _runs = env
    white = tmp_path / "white.png"
    _write_png(white, np.full((256, 256, 3), 255, np.uint8))
    garbage = tmp_path / "garbage.png"
    garbage.write_text("not an image")
    cases = [
        (["--normalize", "reinhard"], "is not one of none, macenko"),
        (["--normalize", "macenko"], "needs --normalize-target"),
        (["--normalize-target", str(TARGET)], "--normalize is none"),
        (["--normalize", "macenko", "--normalize-target", str(white)], "no usable tissue"),
        (["--normalize", "macenko", "--normalize-target", str(tmp_path / "no.png")], "not exist"),
        (["--normalize", "macenko", "--normalize-target", str(garbage)], "cannot read image"),
    ]
    for extra, expected in cases:
        out = tmp_path / "out"
        code, _stdout, err = cli(
            "run", "--ckpt", ckpts[0], "--data", raw, "--shift", "blur", "--magnitudes", "1",
            "--out", out, "--no-progress", *extra,
        )  # fmt: skip
        assert expected in one_error_line(code, err), err
        assert not out.exists()


def test_cli_run_with_normalisation(cli, env, tmp_path):
    _root, raw, ckpts, _runs = env
    out = tmp_path / "out"
    code, _stdout, err = cli(
        "run", "--ckpt", ckpts[0], "--data", raw, "--shift", "blur", "--magnitudes", "1",
        "--out", out, "--no-progress", "--n-boot", "0", "--workers", "0",
        "--normalize", "macenko", "--normalize-target", TARGET,
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["normalize"]["n_passthrough"] == 1
    assert "--normalize" in manifest["command"]


def test_leaderboard_groups_normalised_checkpoints_apart(env, tmp_path):
    _root, _raw, _ckpts, runs = env
    with pytest.warns(ReportWarning, match="single seed"):  # one checkpoint per group here
        result = shiftbench.leaderboard(
            [runs["plain"].out_dir, runs["macenko"].out_dir], out=tmp_path / "lb", by="method",
            baseline="wd", n_boot=50,
        )  # fmt: skip
    assert sorted(result.table["method"]) == ["sd", "sd+macenko", "wd", "wd+macenko"]
    assert "wd+macenko" in result.markdown
    diffs = result.differences
    assert set(diffs["method"]) == {"sd", "sd+macenko", "wd+macenko"}
    # the macenko groups hold the normalised run's checkpoints (names clash → <run>/<name>)
    from shiftbench.report.align import align
    from shiftbench.report.study import load_runs

    aligned = align(load_runs([runs["plain"].out_dir, runs["macenko"].out_dir]), "method", None)
    members = dict(zip(aligned.checkpoints, aligned.groups, strict=True))
    assert members == {"plain/sd": "sd", "macenko/sd": "sd+macenko", "plain/wd": "wd",
                       "macenko/wd": "wd+macenko"}  # fmt: skip
    assert aligned.group_names == ["sd", "sd+macenko", "wd", "wd+macenko"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_normalisation_runs_on_the_run_device(env, tmp_path):
    _root, raw, ckpts, runs = env
    gpu = shiftbench.run(
        ckpts, raw, ["blur"], out=tmp_path / "gpu", magnitudes=[1, BLUR], normalize="macenko",
        normalize_target=TARGET, device="cuda", **RUN,
    )  # fmt: skip
    cpu = runs["macenko"]
    assert gpu.manifest["normalize"]["passthrough_sample_ids"] == [_white_id(cpu)]
    for mag in (1.0, BLUR):  # float32 on another device: a grey level here and there
        diff = np.abs(_probs(gpu, mag).to_numpy() - _probs(cpu, mag).to_numpy())
        assert diff.max() < 0.05


def test_normalised_runs_with_different_targets_form_different_groups(env, tmp_path):
    """One target per normalised run: groups ``sd+macenko``; two targets: the label names each."""
    from shiftbench.report.align import align
    from shiftbench.report.study import load_runs

    _root, raw, ckpts, runs = env
    other = HE_IMAGES / "torchstain_target.png"
    second = shiftbench.run(
        ckpts, raw, ["blur"], out=tmp_path / "other", magnitudes=[1, BLUR], normalize="macenko",
        normalize_target=other, **RUN,
    )  # fmt: skip
    dirs = [runs["plain"].out_dir, runs["macenko"].out_dir, second.out_dir]
    aligned = align(load_runs(dirs), "method", None)
    assert aligned.group_names == [
        "sd", "sd+macenko:histoqc_template1", "sd+macenko:torchstain_target",
        "wd", "wd+macenko:histoqc_template1", "wd+macenko:torchstain_target",
    ]  # fmt: skip
    members = dict(zip(aligned.checkpoints, aligned.groups, strict=True))
    assert members["other/sd"] == "sd+macenko:torchstain_target"
    assert members["macenko/wd"] == "wd+macenko:histoqc_template1"
    # the same target in two runs is one condition: plain labels stay
    one_target = align(load_runs(dirs[:2]), "method", None)
    assert one_target.group_names == ["sd", "sd+macenko", "wd", "wd+macenko"]
