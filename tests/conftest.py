"""Shared fixtures: real H&E tiles from ../shared/data (beside the checkout, also in CI)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[2] / "shared"
ORAL = SHARED / "data" / "oral_oscc_224"
CRC = SHARED / "data" / "crc_val_he_7k_sample"
HE_IMAGES = SHARED / "data" / "he_images"
REFERENCE = SHARED / "reference"


def clean_oral_rows() -> list[dict[str, str]]:
    """Rows of oral_oscc_224/labels.csv without a quality flag, in file order."""
    with open(ORAL / "labels.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if not r["quality_flag"]]


def read_rgb(path: Path) -> np.ndarray:
    """HWC uint8 RGB (cv2 reads BGR: converting matters, see shared/notes)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_oral_tiles(n: int | None = None, stride: int = 1) -> torch.Tensor:
    """Real clean oral tiles as uint8 [N, 3, 224, 224] (every `stride`-th clean row, first n)."""
    if not ORAL.exists():
        pytest.skip(f"shared data not found at {ORAL}")
    rows = clean_oral_rows()[::stride]
    if n is not None:
        rows = rows[:n]
    arr = np.stack([read_rgb(ORAL / r["path"]) for r in rows])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="session")
def oral_tiles() -> torch.Tensor:
    """16 real tiles spread over both classes and magnifications."""
    return load_oral_tiles(16, stride=70)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared/ not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures(...)``).

    Tiny models gain nothing from 2 threads and lose a lot when other jobs share the CPU; the
    runner's tests also match what each torchrun rank uses. The caller's setting is restored.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: cli("shifts") -> (exit_code, stdout, stderr)."""
    from shiftbench.cli import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def one_error_line(code: int, err: str) -> str:
    """The CLI's user-error contract: exit code 2, one ``error:`` line ending stderr (warnings
    may precede it), no traceback. Returns that line."""
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert "Traceback" not in err
    return errors[0]
