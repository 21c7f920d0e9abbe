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
