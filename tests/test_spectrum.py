"""``shiftbench spectrum`` (learning priority): a known template, a slow numpy reference, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from _models import CLASS_NAMES, save_tiny_checkpoint, write_oral_folder
from conftest import one_error_line

from shiftbench.spectrum import priority_profiles, radial_profile, spectrum

S = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("spectrum")
    data = write_oral_folder(root / "data", n_per_class=3, size=S)
    a = save_tiny_checkpoint(
        root / "a.pt", seed=0, input_size=S, class_names=CLASS_NAMES,
        meta={"method": "wd", "seed": 0, "epoch": 1},
    )  # fmt: skip
    b = save_tiny_checkpoint(
        root / "b.pt", seed=1, input_size=S, class_names=CLASS_NAMES,
        meta={"method": "wd", "seed": 1, "epoch": 2},
    )  # fmt: skip
    return root, data, a, b


# ---------------------------------------------------------------------------------------------
# an independent slow reference (numpy, one image and one pixel at a time)
# ---------------------------------------------------------------------------------------------


def slow_profile(grad_chw: np.ndarray, amplitude: bool = False) -> np.ndarray:
    """Normalised radial profile of one gradient, written out pixel by pixel."""
    g = grad_chw.sum(0)
    size = g.shape[0]
    spec = np.abs(np.fft.fftshift(np.fft.fft2(g)))
    if not amplitude:
        spec = spec**2
    n_rings = math.floor(size / math.sqrt(2))
    sums = np.zeros(n_rings + 1)
    counts = np.zeros(n_rings + 1)
    c = size // 2
    for i in range(size):
        for j in range(size):
            k = int(np.round(math.hypot(i - c, j - c)))  # numpy rounds half to even
            if 1 <= k <= n_rings:
                sums[k] += spec[i, j]
                counts[k] += 1
    prof = sums[1:] / counts[1:]
    return (prof - prof.min()) / (prof.max() - prof.min())


class CosineLogit(torch.nn.Module):
    """Logits (0, ⟨T, x⟩), T a cosine grating on every channel with wave vector ``bins``/size.

    The default (5, 6)/32 has |f| = 0.244 cycles/pixel, i.e. ring round(7.81) = 8 = 0.25·32.
    """

    def __init__(self, size: int, bins: tuple[int, int] = (5, 6), phase: float = 0.3) -> None:
        super().__init__()
        yy, xx = torch.meshgrid(
            torch.arange(size, dtype=torch.float32),
            torch.arange(size, dtype=torch.float32),
            indexing="ij",
        )
        t = torch.cos(2 * math.pi * (bins[0] * yy + bins[1] * xx) / size + phase)
        self.register_buffer("template", t.expand(3, size, size).clone() / size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.template).sum((1, 2, 3))
        return torch.stack([torch.zeros_like(z), z], 1)


def test_cosine_template_peaks_at_its_frequency():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, S, S, generator=g)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    model = CosineLogit(S).eval()
    prof = priority_profiles(model, x, y)
    freqs = np.arange(1, prof.shape[1] + 1) / S
    peaks = freqs[prof.argmax(1).numpy()]
    assert np.all(np.abs(peaks - 0.25) <= 1 / S), peaks
    assert torch.allclose(prof.amax(1), torch.ones(6, dtype=torch.float64))


def test_profile_matches_slow_numpy_reference():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, S, S, generator=g)
    y = torch.tensor([0, 1, 1, 0])
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * S * S, 2),
    )  # fmt: skip
    torch.manual_seed(0)
    model.eval()
    for amplitude in (False, True):
        fast = priority_profiles(model, x, y, amplitude=amplitude).numpy()
        for b in range(4):
            xb = x[b : b + 1].clone().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[b : b + 1])
            (grad,) = torch.autograd.grad(loss, xb)
            ref = slow_profile(grad[0].double().numpy(), amplitude)
            np.testing.assert_allclose(fast[b], ref, rtol=1e-4, atol=1e-6)  # float32 grads


def test_radial_profile_odd_size_and_rings():
    # a spectrum equal to the ring index k gives back k on every ring
    size = 9
    c = size // 2
    ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    k = np.round(np.hypot(ii - c, jj - c))
    prof = radial_profile(torch.from_numpy(k)[None]).numpy()[0]
    np.testing.assert_allclose(prof, np.arange(1, math.floor(size / math.sqrt(2)) + 1))


def test_spectrum_api_equals_reference_and_leaves_model_alone(env):
    from shiftbench.checkpoint import load_checkpoint
    from shiftbench.data import open_dataset

    _root, data, a, _b = env
    rng_before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    res = spectrum(a, data, batch_size=4, device="cpu")  # batches of 4, 2 and a reference of 1
    assert torch.equal(rng_before, torch.random.get_rng_state())
    assert torch.get_num_threads() == threads
    table = res.table
    assert {"checkpoint", "method", "seed", "epoch", "frequency", "priority"} <= set(table)
    assert (table["n_images"] == 6).all()
    np.testing.assert_allclose(table["frequency"], np.arange(1, 23) / S)

    ck = load_checkpoint(a)
    ck.model.train()  # the caller's mode and flags must survive
    ck.model.fc.weight.requires_grad_(False)
    ds = open_dataset(data)
    prep = ck.preprocess()
    refs = []
    for i in range(len(ds)):
        img, label, _ = ds[i]
        x = prep(img[None]).clone().requires_grad_(True)
        ck.model.eval()
        loss = F.cross_entropy(ck.model(x), torch.tensor([label]))
        (grad,) = torch.autograd.grad(loss, x)
        ck.model.train()
        refs.append(slow_profile(grad[0].double().numpy()))
    refs = np.stack(refs)
    np.testing.assert_allclose(table["priority"], refs.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(table["priority_sd"], refs.std(0), rtol=1e-4, atol=1e-6)

    from shiftbench.spectrum import spectrum_of

    spectrum_of(ck, ds, device=torch.device("cpu"), batch_size=3)
    assert ck.model.training
    assert not ck.model.fc.weight.requires_grad
    assert all(p.grad is None for p in ck.model.parameters())


def test_artifact_overlay_matches_reference(env):
    from shiftbench.checkpoint import load_checkpoint
    from shiftbench.data import open_dataset
    from shiftbench.registry import get_shift

    _root, data, a, _b = env
    res = spectrum(a, data, artifact="cutout:2", device="cpu", batch_size=5, seed=3)
    ck = load_checkpoint(a)
    ds = open_dataset(data)
    prep = ck.preprocess()
    shift = get_shift("cutout")
    refs = []
    for i in range(len(ds)):
        img = ds[i][0][None]
        diff = prep(shift(img, 2, seed=3, sample_ids=[i])) - prep(img)
        refs.append(slow_profile(diff[0].double().numpy()))
    np.testing.assert_allclose(res.table["artifact_power"], np.mean(refs, 0), atol=1e-7)


def test_callable_module():
    import shiftbench
    import shiftbench.spectrum as mod

    assert callable(shiftbench.spectrum) and callable(mod)


def test_cli_writes_tables_figures_heatmap(cli, env, tmp_path):
    _root, data, a, b = env
    out = tmp_path / "spec"
    code, stdout, err = cli(
        "spectrum", "--ckpt", a, "--ckpt", b, "--data", data, "--out", out,
        "--heatmap-by", "epoch", "--device", "cpu", "--limit", "4", "--amplitude",
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(out / "spectrum.csv")
    assert set(table["checkpoint"]) == {"a", "b"} and (table["n_images"] == 4).all()
    curves = pd.read_csv(out / "spectrum_figure.csv")
    assert set(curves["method"]) == {"wd"} and (curves["n_checkpoints"] == 2).all()
    sd = table.pivot(index="frequency", columns="checkpoint", values="priority").std(axis=1, ddof=1)
    np.testing.assert_allclose(curves["priority_sd"], sd.to_numpy(), rtol=1e-4, atol=1e-6)
    heat = pd.read_csv(out / "heatmap_epoch.csv")
    assert sorted(heat["epoch"].unique()) == [1, 2]
    for f in ("spectrum.png", "spectrum.pdf", "heatmap_epoch.png", "heatmap_epoch.pdf"):
        assert (out / f).stat().st_size > 1000
    assert "spectrum.csv" in stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--artifact", "ring"], "SHIFT:MAGNITUDE"),
        (["--artifact", "ring:8", "--param", "nosuch=1"], "no parameter"),
        (["--param", "frequency=0.1"], "give --artifact"),
        (["--artifact", "ring:0"], "identity"),
        (["--artifact", "nosuch:1"], "unknown shift"),
        (["--artifact", "blur:-3"], "out of range"),
        (["--heatmap-by", "nosuch"], "not a meta key"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_bad_input_one_line(cli, env, tmp_path, extra, needle):
    _root, data, a, _b = env
    args = ["spectrum", "--ckpt", a, "--data", data, "--out", tmp_path / "o", "--limit", "2"]
    code, _, err = cli(*args, *extra)
    assert needle in one_error_line(code, err)


def test_cli_missing_checkpoint(cli, env, tmp_path):
    _root, data, _a, _b = env
    code, _, err = cli("spectrum", "--ckpt", tmp_path / "x.pt", "--data", data, "--out", tmp_path)
    assert "not found" in one_error_line(code, err)


def test_cli_ring_artifact_with_param_peaks_at_its_frequency(cli, env, tmp_path):
    _root, data, a, _b = env
    out = tmp_path / "ring"
    code, _, err = cli(
        "spectrum", "--ckpt", a, "--data", data, "--out", out, "--limit", "3",
        "--artifact", "ring:8", "--param", "frequency=0.125", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(out / "spectrum.csv")
    peak = table.loc[table["artifact_power"].idxmax(), "frequency"]
    assert abs(peak - 0.125) <= 1 / S
