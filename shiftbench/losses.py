"""Spectral decoupling (SD): cross-entropy plus an L2 penalty on the logits.

Spectral decoupling (Pezeshki et al. 2021, "Gradient Starvation"; used for medical imaging by
Pohjonen et al. 2022) replaces weight decay on the parameters by a penalty on the network's
unnormalised outputs ŷ (logits), so that the gradient of an already well-fitted, dominant
feature does not starve the learning of the others.

Conventions (exact; also stored in checkpoint meta as ``sd_loss_convention``):

* **Eq. 1** (one λ)::

      loss = CE(ŷ, y) + λ/2 · mean_{b,c}(ŷ_bc²)

  ``mean`` runs over the batch *and* the classes (B·C numbers), as in the paper's Algorithm 1
  (``(logits ** 2).mean()``). The per-sample-norm form of Pezeshki et al.,
  ``λ'/2 · mean_b ||ŷ_b||²`` (sum over classes), is C times stronger for the same number:
  ``λ' = λ / C``. The gradient of the penalty is ``∂/∂ŷ_bc = λ · ŷ_bc / (B·C)``.

* **Eq. 2** (per-class λ_c, γ_c)::

      loss = CE(ŷ, y) + mean_{b,c}( λ_{y_b}/2 · (ŷ_bc − γ_{y_b})² )

  i.e. ``Σ_k λ_k/2 · ||ŷ_k − γ_k||²`` where ŷ_k is the logit block of the samples whose true
  class is k, normalised by B·C like Eq. 1. With all λ_k = λ and γ_k = 0 this is exactly Eq. 1.
  The paper's cutout experiment (§3.4) uses λ_neg = 0.01, γ_neg = 0, λ_pos = 0.001, γ_pos = 1.

  Caveat for softmax heads: γ moves every logit of a sample by the same target, and softmax
  cross-entropy does not depend on a common shift of the logits. So with C ≥ 2 logits, γ only
  acts on the mean logit (which a linear head with a bias can fit freely); the per-class λ_k is
  what changes the decision, by shrinking the logit *differences* of class-k samples with
  strength λ_k (negatives shrunk 10× harder than positives in the paper's setting, which moves
  borderline samples towards the positive class).

* **Binary head** (``head="binary-logit"``, 2 classes, one logit z per sample; probability of
  class 1 = σ(z), the paper's 0.5 cut-off on normalised predictions)::

      loss = BCE(σ(z), y) + mean_b( λ_{y_b}/2 · (z_b − γ_{y_b})² )

  Here γ does move the decision: γ_pos = 1 pulls positives towards σ = 0.73, γ_neg = 0 pulls
  negatives towards σ = 0.5. The model's one logit is fed to the loss as the two-class logits
  (0, z): softmax((0, z)) = (1 − σ(z), σ(z)), so CE((0, z), y) is exactly BCE(σ(z), y), and the
  penalty is taken on z alone (C = 1 in the B·C normalisation above).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from shiftbench.errors import UserInputError

__all__ = [
    "BINARY_SD_LOSS_CONVENTION",
    "SD_LOSS_CONVENTION",
    "BinarySpectralDecouplingLoss",
    "SpectralDecouplingLoss",
    "binary_sd_penalty",
    "binary_spectral_decoupling_loss",
    "sd_penalty",
    "spectral_decoupling_loss",
]

SD_LOSS_CONVENTION = (
    "CE + mean over batch*classes of lambda_y/2*(logit - gamma_y)^2 "
    "(Eq.1: gamma=0, one lambda; = per-sample-norm form with lambda/C)"
)

BINARY_SD_LOSS_CONVENTION = (
    "BCE(sigmoid(z), y) + mean over batch of lambda_y/2*(z - gamma_y)^2 "
    "(one logit z per sample; two-class logits (0, z))"
)


def _per_class(
    values: float | Sequence[float] | torch.Tensor, num_classes: int, name: str, ref: torch.Tensor
) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=ref.dtype, device=ref.device)
    if t.ndim == 0:
        return t.expand(num_classes)
    if t.ndim != 1 or t.numel() != num_classes:
        raise UserInputError(
            f"{name} needs one value or one per class ({num_classes}); got {t.numel()} values"
        )
    return t


def sd_penalty(
    logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    sd_lambda: float | Sequence[float] | torch.Tensor = 0.01,
    sd_gamma: float | Sequence[float] | torch.Tensor = 0.0,
) -> torch.Tensor:
    """The spectral-decoupling penalty alone (see the module docstring for the formula).

    Args:
        logits: ``[B, C]`` unnormalised outputs.
        targets: ``[B]`` true class indices; needed only when ``sd_lambda`` or ``sd_gamma`` is
            per class.
        sd_lambda: λ (Eq. 1) or one λ_k per class (Eq. 2).
        sd_gamma: γ target (default 0) or one γ_k per class.

    Returns:
        A scalar tensor ``mean_{b,c}(λ_{y_b}/2 · (ŷ_bc − γ_{y_b})²)``.
    """
    if logits.ndim != 2:
        raise UserInputError(f"logits must be [batch, classes]; got shape {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    lam = _per_class(sd_lambda, num_classes, "sd_lambda", logits)
    gamma = _per_class(sd_gamma, num_classes, "sd_gamma", logits)
    per_class = bool(torch.as_tensor(sd_lambda).ndim or torch.as_tensor(sd_gamma).ndim)
    if per_class:
        if targets is None:
            raise UserInputError("per-class sd_lambda/sd_gamma need the targets")
        lam_b = lam[targets].unsqueeze(1)  # [B, 1]: λ of each sample's true class
        gamma_b = gamma[targets].unsqueeze(1)
    else:
        lam_b, gamma_b = lam[0], gamma[0]
    return (lam_b / 2 * (logits - gamma_b).square()).mean()


def spectral_decoupling_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    sd_lambda: float | Sequence[float] | torch.Tensor = 0.01,
    sd_gamma: float | Sequence[float] | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Cross-entropy (mean over the batch) plus :func:`sd_penalty` (Eq. 1 or Eq. 2)."""
    return F.cross_entropy(logits, targets) + sd_penalty(
        logits, targets, sd_lambda=sd_lambda, sd_gamma=sd_gamma
    )


class SpectralDecouplingLoss(torch.nn.Module):
    """Module form of :func:`spectral_decoupling_loss`; ``forward`` returns (loss, ce, penalty).

    Args:
        sd_lambda: λ (Eq. 1) or per-class λ_k (Eq. 2).
        sd_gamma: γ or per-class γ_k (Eq. 2); default 0.
    """

    def __init__(
        self,
        sd_lambda: float | Sequence[float] = 0.01,
        sd_gamma: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__()
        for name, v in (("sd_lambda", sd_lambda), ("sd_gamma", sd_gamma)):
            vals = [v] if isinstance(v, (int, float)) else list(v)
            if not all(isinstance(x, (int, float)) and x == x for x in vals):
                raise UserInputError(f"{name} must be numbers; got {v!r}")
        if any(x < 0 for x in ([sd_lambda] if isinstance(sd_lambda, (int, float)) else sd_lambda)):
            raise UserInputError(f"sd_lambda must be >= 0; got {sd_lambda!r}")
        self.sd_lambda = sd_lambda if isinstance(sd_lambda, (int, float)) else list(sd_lambda)
        self.sd_gamma = sd_gamma if isinstance(sd_gamma, (int, float)) else list(sd_gamma)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ce = F.cross_entropy(logits, targets)
        pen = sd_penalty(logits, targets, sd_lambda=self.sd_lambda, sd_gamma=self.sd_gamma)
        return ce + pen, ce, pen


def _single_logit(logits: torch.Tensor) -> torch.Tensor:
    """z from ``[B]``, ``[B, 1]`` or two-class logits ``(0, z)`` of shape ``[B, 2]``."""
    if logits.ndim == 1:
        return logits
    if logits.ndim == 2 and logits.shape[1] == 1:
        return logits[:, 0]
    if logits.ndim == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]  # = z for (0, z); softmax only sees the difference
    raise UserInputError(
        f"a binary head needs [batch], [batch, 1] or (0, z) [batch, 2] logits; got shape "
        f"{tuple(logits.shape)}"
    )


def binary_sd_penalty(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    sd_lambda: float | Sequence[float] | torch.Tensor = 0.01,
    sd_gamma: float | Sequence[float] | torch.Tensor = 0.0,
) -> torch.Tensor:
    """``mean_b(λ_{y_b}/2 · (z_b − γ_{y_b})²)`` on the single logit z (see the module docstring).

    Args:
        logits: z as ``[B]``/``[B, 1]``, or the two-class logits ``(0, z)`` ``[B, 2]``.
        targets: ``[B]`` class indices in {0, 1}.
        sd_lambda: one λ or (λ_0, λ_1).
        sd_gamma: one γ or (γ_0, γ_1).
    """
    z = _single_logit(logits)
    lam = _per_class(sd_lambda, 2, "sd_lambda", z)
    gamma = _per_class(sd_gamma, 2, "sd_gamma", z)
    return (lam[targets] / 2 * (z - gamma[targets]).square()).mean()


def binary_spectral_decoupling_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    sd_lambda: float | Sequence[float] | torch.Tensor = 0.01,
    sd_gamma: float | Sequence[float] | torch.Tensor = 0.0,
) -> torch.Tensor:
    """BCE with logits (mean over the batch) plus :func:`binary_sd_penalty`."""
    z = _single_logit(logits)
    bce = F.binary_cross_entropy_with_logits(z, targets.to(z.dtype))
    return bce + binary_sd_penalty(z, targets, sd_lambda=sd_lambda, sd_gamma=sd_gamma)


class BinarySpectralDecouplingLoss(SpectralDecouplingLoss):
    """Module form of :func:`binary_spectral_decoupling_loss`; returns (loss, bce, penalty).

    Takes the two-class logits ``(0, z)`` (as the training loop sees them) or z itself.
    """

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = _single_logit(logits)
        bce = F.binary_cross_entropy_with_logits(z, targets.to(z.dtype))
        pen = binary_sd_penalty(z, targets, sd_lambda=self.sd_lambda, sd_gamma=self.sd_gamma)
        return bce + pen, bce, pen
