"""The committed demo study (results/demo/) regenerates byte for byte from its stored run.

results/README.md promises that ``shiftbench figures benchmarks/demo.toml --root results/demo``
rebuilds ``results/demo/shiftbench-demo-report/`` from the stored run tables alone (no model,
no checkpoint). This test runs exactly that spec on a copy of the stored run in a temporary
folder and compares every committed report file with the regenerated one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STORED = REPO / "results" / "demo"
RUN = STORED / "shiftbench-demo" / "run"
REPORT = STORED / "shiftbench-demo-report"
SPEC = REPO / "benchmarks" / "demo.toml"

pytestmark = pytest.mark.skipif(
    not (RUN / "manifest.json").is_file(),
    reason=(
        f"the stored demo run is absent ({RUN.relative_to(REPO)}); it is committed with the "
        "repository, see results/README.md for how it is produced"
    ),
)


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_stored_demo_holds_tables_only():
    stored = _files(STORED)
    assert stored, "results/demo is empty"
    heavy = [name for name in stored if name.endswith((".pt", ".pth", ".safetensors", ".ckpt"))]
    assert heavy == [], f"checkpoints must not be committed: {heavy}"
    assert any(name.startswith("shiftbench-demo-report/") for name in stored)


def test_figures_regenerate_the_committed_report_byte_for_byte(cli, tmp_path):
    shutil.copytree(RUN, tmp_path / "shiftbench-demo" / "run")
    code, _, err = cli("figures", SPEC, "--root", tmp_path)
    assert code == 0, err

    committed = _files(REPORT)
    regenerated = _files(tmp_path / "shiftbench-demo-report")
    assert sorted(regenerated) == sorted(committed)
    differ = [
        name
        for name, path in committed.items()
        if path.read_bytes() != regenerated[name].read_bytes()
    ]
    assert differ == [], f"regenerated files differ from the committed ones: {differ}"
