"""Quantised activations of the ANNs that are converted to SNNs."""

from __future__ import annotations

import torch
from torch import nn


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """floor(x) forward, identity gradient backward (straight-through estimator)."""
    return x + (torch.floor(x) - x).detach()


class QCFS(nn.Module):
    """Quantisation clip-floor-shift activation (Bu et al.), L levels, learnable threshold θ:
    ``y = θ · floor(clamp(x/θ, 0, 1) · L + 0.5) / L``.

    An IF neuron with soft reset, threshold θ and initial membrane θ/2 reproduces its mean
    output over time, which is why a QCFS ANN converts to an SNN with little loss at low T.
    """

    def __init__(self, levels: int = 4, theta: float = 1.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"QCFS levels must be >= 1, got {levels}")
        self.levels = levels
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    MIN_THETA = 1e-4  # θ is kept positive: a learnt threshold can otherwise cross zero

    @property
    def threshold(self) -> torch.Tensor:
        """The effective (positive) threshold θ."""
        return self.theta.clamp(min=self.MIN_THETA)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.threshold
        y = torch.clamp(x / theta, 0, 1) * self.levels
        return floor_ste(y + 0.5) * (theta / self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, theta={self.threshold.item():.4g}"
