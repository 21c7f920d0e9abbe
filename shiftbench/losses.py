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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from shiftbench.errors import UserInputError

__all__ = [
    "SD_LOSS_CONVENTION",
    "SpectralDecouplingLoss",
    "sd_penalty",
    "spectral_decoupling_loss",
]

SD_LOSS_CONVENTION = (
    "CE + mean over batch*classes of lambda_y/2*(logit - gamma_y)^2 "
    "(Eq.1: gamma=0, one lambda; = per-sample-norm form with lambda/C)"
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
