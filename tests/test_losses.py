"""Spectral decoupling loss against a direct formula written here, and by gradient."""

from __future__ import annotations

import math

import pytest
import torch

from shiftbench.errors import UserInputError
from shiftbench.losses import SpectralDecouplingLoss, sd_penalty, spectral_decoupling_loss


def _direct_eq2(logits, targets, lambdas, gammas):
    """Σ_k λ_k/2 · ||ŷ_k − γ_k||² / (B·C) with explicit loops (ŷ_k: rows of class-k samples)."""
    b, c = logits.shape
    total = 0.0
    for k in range(c):
        for i in range(b):
            if int(targets[i]) != k:
                continue
            for j in range(c):
                total += lambdas[k] / 2 * (float(logits[i, j]) - gammas[k]) ** 2
    return total / (b * c)


def _direct_ce(logits, targets):
    b = logits.shape[0]
    s = 0.0
    for i in range(b):
        row = [float(v) for v in logits[i]]
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        s += lse - row[int(targets[i])]
    return s / b


def test_eq1_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 3, generator=g, dtype=torch.float64) * 3
    targets = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    lam = 0.37
    direct_pen = lam / 2 * sum(float(v) ** 2 for v in logits.flatten()) / logits.numel()
    assert float(sd_penalty(logits, sd_lambda=lam)) == pytest.approx(direct_pen, rel=1e-12)
    full = spectral_decoupling_loss(logits, targets, sd_lambda=lam)
    assert float(full) == pytest.approx(_direct_ce(logits, targets) + direct_pen, rel=1e-12)
    # The per-sample-norm form (sum over classes) with λ' = λ/C gives the same number.
    per_sample_norm = (lam / 3) / 2 * logits.square().sum(1).mean()
    assert float(sd_penalty(logits, sd_lambda=lam)) == pytest.approx(float(per_sample_norm))


def test_eq2_matches_direct_formula_and_reduces_to_eq1():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(9, 2, generator=g, dtype=torch.float64) * 2
    targets = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 1])
    lambdas, gammas = [0.01, 0.001], [0.0, 1.0]  # paper §3.4 (neg, pos)
    got = sd_penalty(logits, targets, sd_lambda=lambdas, sd_gamma=gammas)
    assert float(got) == pytest.approx(_direct_eq2(logits, targets, lambdas, gammas), rel=1e-12)
    same = sd_penalty(logits, targets, sd_lambda=[0.2, 0.2], sd_gamma=[0.0, 0.0])
    assert float(same) == pytest.approx(float(sd_penalty(logits, sd_lambda=0.2)), rel=1e-12)
    loss, ce, pen = SpectralDecouplingLoss(lambdas, gammas)(logits, targets)
    assert float(pen) == pytest.approx(float(got))
    assert float(ce) == pytest.approx(_direct_ce(logits, targets), rel=1e-12)
    assert float(loss) == pytest.approx(float(ce) + float(pen))


def test_gradient_is_lambda_logits_over_bc():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    lam = 0.5
    sd_penalty(logits, sd_lambda=lam).backward()
    analytic = lam * logits.detach() / (5 * 4)
    torch.testing.assert_close(logits.grad, analytic, rtol=1e-12, atol=1e-15)


def test_gradcheck_eq2():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 2, 1, 1, 0, 2])

    def f(x):
        return spectral_decoupling_loss(
            x, targets, sd_lambda=[0.3, 0.05, 1.0], sd_gamma=[0.0, 1.0, -1.0]
        )

    assert torch.autograd.gradcheck(f, (logits,))


def test_bad_arguments_are_user_errors():
    logits = torch.zeros(4, 2)
    with pytest.raises(UserInputError, match="one per class"):
        sd_penalty(logits, torch.zeros(4, dtype=torch.long), sd_lambda=[0.1, 0.2, 0.3])
    with pytest.raises(UserInputError, match="targets"):
        sd_penalty(logits, sd_lambda=[0.1, 0.2])
    with pytest.raises(UserInputError, match=">= 0"):
        SpectralDecouplingLoss(-1.0)


# ---------------------------------------------------------------------------------------------
# binary head: one logit z, BCE, Eq. 2 on z
# ---------------------------------------------------------------------------------------------


def _direct_binary(z, targets, lambdas, gammas):
    """BCE(σ(z), y) + mean_b λ_y/2 (z − γ_y)², written out with math.log and math.exp."""
    total_bce = 0.0
    total_pen = 0.0
    for zi, yi in zip(z.tolist(), targets.tolist(), strict=True):
        p = 1.0 / (1.0 + math.exp(-zi))
        total_bce += -(yi * math.log(p) + (1 - yi) * math.log(1 - p))
        total_pen += lambdas[yi] / 2 * (zi - gammas[yi]) ** 2
    n = len(targets)
    return total_bce / n, total_pen / n


def test_binary_loss_matches_direct_formula_in_every_input_shape():
    from shiftbench.losses import (
        BinarySpectralDecouplingLoss,
        binary_sd_penalty,
        binary_spectral_decoupling_loss,
    )

    g = torch.Generator().manual_seed(4)
    z = torch.randn(11, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0])
    lambdas, gammas = [0.01, 0.001], [0.0, 1.0]
    bce, pen = _direct_binary(z, y, lambdas, gammas)
    two = torch.stack([torch.zeros_like(z), z], 1)  # what BinaryLogitHead returns
    for logits in (z, z[:, None], two):
        got = binary_spectral_decoupling_loss(logits, y, sd_lambda=lambdas, sd_gamma=gammas)
        assert float(got) == pytest.approx(bce + pen, rel=1e-12)
    assert float(binary_sd_penalty(z, y, sd_lambda=lambdas, sd_gamma=gammas)) == pytest.approx(
        pen, rel=1e-12
    )
    _loss, b, p = BinarySpectralDecouplingLoss(lambdas, gammas)(two, y)
    assert float(b) == pytest.approx(bce, rel=1e-12) and float(p) == pytest.approx(pen, rel=1e-12)
    # the same BCE is the 2-class cross-entropy of (0, z)
    assert float(torch.nn.functional.cross_entropy(two, y)) == pytest.approx(bce, rel=1e-12)


def test_binary_loss_gradient_is_analytic():
    from shiftbench.losses import binary_spectral_decoupling_loss

    g = torch.Generator().manual_seed(5)
    z = (torch.randn(7, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    y = torch.tensor([1, 0, 1, 1, 0, 0, 1])
    lam = torch.tensor([0.3, 0.05], dtype=torch.float64)
    gam = torch.tensor([-0.5, 1.0], dtype=torch.float64)
    loss = binary_spectral_decoupling_loss(z, y, sd_lambda=lam, sd_gamma=gam)
    (grad,) = torch.autograd.grad(loss, z)
    # d/dz [BCE + λ_y/2 (z − γ_y)²] / B = (σ(z) − y + λ_y (z − γ_y)) / B
    expected = (torch.sigmoid(z) - y + lam[y] * (z - gam[y])) / len(y)
    torch.testing.assert_close(grad, expected.detach(), rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(
        lambda t: binary_spectral_decoupling_loss(t, y, sd_lambda=lam, sd_gamma=gam), (z,)
    )


def test_binary_bad_shapes_are_user_errors():
    from shiftbench.losses import binary_sd_penalty

    with pytest.raises(UserInputError, match="binary head"):
        binary_sd_penalty(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(UserInputError, match="one per class"):
        binary_sd_penalty(torch.zeros(4), torch.zeros(4, dtype=torch.long), sd_lambda=[1, 2, 3])
