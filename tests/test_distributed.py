"""``torchrun -m shiftbench run``: N ranks give the tables of one process, also after a rank dies.

The ranks are real processes started by ``python -m torch.distributed.run`` (gloo on the CPU).
The reference is an independent single-process :func:`shiftbench.run` with one torch thread:
torchrun gives each rank one thread (``OMP_NUM_THREADS=1``), and float sums in the model can
differ in the last bit between thread counts, so "identical" is checked at equal thread count.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from _models import save_tiny_checkpoint

import shiftbench
from shiftbench.errors import RunError
from shiftbench.run.distributed import FAULT_ENV, Ranks, join_ranks, rank_device

REPO = Path(shiftbench.__file__).resolve().parents[1]
DATA = REPO / "shiftbench" / "assets" / "oral_oscc" / "test.csv"
N_IMAGES = 24
OPTIONS = dict(
    shifts="cutout,sharpen",
    magnitudes=[0, 1],
    limit=N_IMAGES,
    image_size=32,
    batch_size=4,  # 6 batches: rank 0 gets 0, 2, 4 and rank 1 gets 1, 3, 5
    workers=0,
    n_boot=20,
)


def _cli_args(ckpts: list[Path], out: Path, *extra: str) -> list[str]:
    words = ["run", "--data", str(DATA), "--out", str(out), "--no-progress"]
    for c in ckpts:
        words += ["--ckpt", str(c)]
    words += ["--shift", OPTIONS["shifts"], "--magnitudes", "0,1", "--limit", str(N_IMAGES)]
    words += ["--image-size", "32", "--batch-size", "4", "--workers", "0", "--n-boot", "20"]
    return [*words, *extra]


def _torchrun(
    n: int, args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(n), "-m", "shiftbench", *args]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)


def _one_process(ckpts: list[Path], out: Path, resume: bool = False) -> None:
    """shiftbench.run in this process with one torch thread (as each torchrun rank has)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shiftbench.run(ckpts, DATA, out=out, resume=resume, **OPTIONS)
    finally:
        torch.set_num_threads(threads)


def _tables(run_dir: Path) -> tuple[pd.DataFrame, bytes, list]:
    """What must be identical: predictions, metrics.csv bytes, the manifest's done cells."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    predictions = shiftbench.read_predictions(run_dir)
    return predictions, (run_dir / "metrics.csv").read_bytes(), manifest["done_cells"]


def _assert_same_tables(a: Path, b: Path) -> None:
    pa_, ma, ca = _tables(a)
    pb, mb, cb = _tables(b)
    assert len(pa_) == 2 * 2 * 2 * N_IMAGES  # checkpoints × shifts × magnitudes (0 is clean)
    pd.testing.assert_frame_equal(pa_, pb, check_exact=True)
    assert ma == mb
    assert ca == cb


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not DATA.exists():
        pytest.skip(f"vendored tiles not found at {DATA}")
    root = tmp_path_factory.mktemp("dist")
    ckpts = [
        save_tiny_checkpoint(root / f"m{s}.pt", seed=s, input_size=32, meta={"seed": s})
        for s in (0, 1)
    ]
    reference = root / "reference"
    _one_process(ckpts, reference)
    return {"root": root, "reference": reference, "a": ckpts[0], "b": ckpts[1]}


def test_two_ranks_write_the_tables_of_one_process(study: dict[str, Path]) -> None:
    out = study["root"] / "two_ranks"
    done = _torchrun(2, _cli_args([study["a"], study["b"]], out))
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_tables(study["reference"], out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["invocations"][-1]["world_size"] == 2
    assert manifest["invocations"][-1]["batches_computed"] == 6
    parts = sorted(p.name.split("-")[0] for p in (out / "parts").glob("b*.parquet"))
    assert parts == [f"b{b:06d}" for b in range(6)]  # each batch once: no padded duplicates
    assert len({p.name.split("-")[1] for p in (out / "parts").glob("b*.parquet")}) == 2
    assert done.stdout.count("wrote ") == 1  # the summary is printed by rank 0 only


def test_a_dead_rank_stops_the_run_and_resume_completes_it(study: dict[str, Path]) -> None:
    out = study["root"] / "killed"
    args = _cli_args([study["a"], study["b"]], out)
    crashed = _torchrun(2, args, env={FAULT_ENV: "1:1"})  # rank 1 dies after its first batch
    assert crashed.returncode != 0
    # Named by rank 0 ("rank 1 died …") or by torchrun's summary ("rank      : 1 (local_rank: 1)").
    assert re.search(r"rank\s*:?\s*1\b", crashed.stderr), crashed.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] != "complete"
    done_batches = {p.name.split("-")[0] for p in (out / "parts").glob("b*.parquet")}
    assert "b000001" in done_batches and len(done_batches) < 6
    one_rank = study["root"] / "killed_then_one_rank"
    shutil.copytree(out, one_rank)

    resumed = _torchrun(2, [*args, "--resume"])  # same N
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_tables(study["reference"], out)
    _one_process([study["a"], study["b"]], one_rank, resume=True)  # another N: 1
    _assert_same_tables(study["reference"], one_rank)
    computed = json.loads((one_rank / "manifest.json").read_text())["invocations"][-1]
    assert computed["batches_computed"] == 6 - len(done_batches)


def test_ranks_shard_pending_batches_without_duplicates() -> None:
    todo = list(range(11))
    shards = [Ranks(rank=r, world_size=3).shard(todo) for r in range(3)]
    assert sorted(b for s in shards for b in s) == todo
    assert [len(s) for s in shards] == [4, 4, 3]


def test_one_process_joins_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with join_ranks("cpu") as ranks:
        assert (ranks.rank, ranks.world_size, ranks.group) == (0, 1, None)
    assert not torch.distributed.is_initialized()


def test_bad_launcher_variables_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(RunError, match="WORLD_SIZE='two' is not an integer"):
        with join_ranks("cpu"):
            pass


def test_each_rank_gets_its_own_gpu_only_when_several() -> None:
    assert rank_device("auto", Ranks()) == "auto"
    assert rank_device("cpu", Ranks(rank=1, world_size=2, local_rank=1)) == "cpu"
    assert rank_device("cuda:0", Ranks(rank=1, world_size=2, local_rank=1)) == "cuda:0"
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        assert rank_device("cuda", Ranks(rank=1, world_size=2, local_rank=1)) == f"cuda:{1 % n}"
    else:
        assert rank_device("auto", Ranks(rank=1, world_size=2, local_rank=1)) == "auto"
