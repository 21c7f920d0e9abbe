"""The run-directory schema module: reserved names, atomic writes, the lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from _models import save_tiny_checkpoint, tiny_model, write_oral_folder

from shiftbench import open_dataset
from shiftbench.errors import CheckpointError, DataError, RunError
from shiftbench.run.rundir import (
    METRIC_NAMES,
    atomic_write,
    atomic_write_text,
    check_reserved,
    locked,
)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize(
    "key",
    ["auroc", "accuracy_ci_low", "recall_ci_high", "n", "checkpoint", "checkpoint_index", "checkpoint_sha256",
     "shift", "magnitude", "sample_id", "label", "pred", "prob_OSCC", "run", "group", "dataset",
     "path", "checkpoint_arch"],
)  # fmt: skip
def test_reserved_meta_key_is_refused_at_save(tmp_path, model, key):
    with pytest.raises(CheckpointError, match=f"{key!r} is a reserved name") as e:
        save_tiny_checkpoint(tmp_path / "m.pt", model=model, meta={"method": "sd", key: 0.91})
    assert "\n" not in str(e.value)
    assert not (tmp_path / "m.pt").exists()


def test_ordinary_meta_keys_are_accepted(tmp_path):
    meta = {"method": "sd", "seed": 3, "lr": 0.1, "arch": "resnet18", "batch_size": 64}
    save_tiny_checkpoint(tmp_path / "m.pt", meta=meta)  # as shiftbench train writes


@pytest.mark.parametrize("column", ["pred", "auroc", "balanced_accuracy_ci_low", "prob_x", "run"])
def test_reserved_csv_column_is_refused_when_opening(tmp_path, column):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text(f"path,label,{column}\na.png,0,1\n")
    with pytest.raises(DataError, match=f"{column!r} is a reserved name"):
        open_dataset(tmp_path / "labels.csv")


def test_reserved_data_column_is_refused_at_run_time(tmp_path):
    """A data set opened (or built) in Python with a reserved extra column: refused by run()."""
    from shiftbench.runner import run

    data = write_oral_folder(tmp_path / "data", n_per_class=2)
    ds = open_dataset(data)
    ds.extras = pd.DataFrame({"auroc": [0.5] * len(ds)})
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt")
    with pytest.raises(DataError, match="'auroc' is a reserved name"):
        run([ckpt], ds, "blur", out=tmp_path / "out", workers=0, n_boot=0)
    assert not (tmp_path / "out").exists()


def test_reserved_meta_key_of_a_loaded_checkpoint_is_refused_at_run_time(tmp_path):
    """Meta that did not go through save_checkpoint (edited after loading) is checked by run()."""
    from shiftbench import load_checkpoint
    from shiftbench.runner import run

    data = write_oral_folder(tmp_path / "data", n_per_class=2)
    ck = load_checkpoint(save_tiny_checkpoint(tmp_path / "m.pt"))
    ck.meta["auroc"] = 0.91
    with pytest.raises(CheckpointError, match="checkpoint m: meta key: 'auroc' is a reserved"):
        run([ck], data, "blur", out=tmp_path / "out", workers=0, n_boot=0)
    assert not (tmp_path / "out").exists()


def test_check_reserved_lets_other_names_through():
    check_reserved(["method", "seed", "magnification", "lr", 3], "meta")
    with pytest.raises(ValueError, match="'auroc_ci_low'"):
        check_reserved(["method", "auroc_ci_low"], "meta")


def test_metric_names_match_the_metrics_module():
    from shiftbench.metrics import METRICS

    assert tuple(METRIC_NAMES) == tuple(METRICS)


def test_atomic_write_honours_the_umask_and_leaves_it_alone(tmp_path):
    """In a child process with umask 027: new files are 0640 and the umask stays 027."""
    code = textwrap.dedent(
        f"""
        import os, stat
        os.umask(0o027)
        from shiftbench.run.rundir import atomic_write_text
        atomic_write_text({str(tmp_path / "x.txt")!r}, "hi")
        mode = stat.S_IMODE(os.stat({str(tmp_path / "x.txt")!r}).st_mode)
        now = os.umask(0)
        print(oct(mode), oct(now))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["0o640", "0o27"]


def test_atomic_write_keeps_the_old_file_and_no_temp_on_failure(tmp_path):
    target = tmp_path / "t.txt"
    atomic_write_text(target, "old")

    def fail(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_lock_refuses_a_second_holder(tmp_path):
    with locked(tmp_path / "run"):
        with pytest.raises(RunError, match="in use by another shiftbench process"):
            with locked(tmp_path / "run"):
                pass
    with locked(tmp_path / "run"):  # released
        pass


def test_saved_checkpoint_bytes_do_not_depend_on_the_temp_file(tmp_path, model):
    """The SHA-256 identifies cells for --resume: saving the same model twice gives one hash."""
    from shiftbench.checkpoint import sha256_file

    a = save_tiny_checkpoint(tmp_path / "a" / "m.pt", model=model)
    b = save_tiny_checkpoint(tmp_path / "b" / "m.pt", model=model)
    assert sha256_file(a) == sha256_file(b)
