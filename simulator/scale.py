"""A fixed element-wise gain: the reconciling factor of a residual join (NIR's ``Scale`` node)."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """Multiply by a fixed ``scale`` (dimensionless; a float or a tensor broadcastable to the input
    without its batch axis). Stateless, so it runs on ``[steps * B, ...]`` like any linear layer.

    The converter puts one on a residual edge whose spikes have scale ``λ_in`` where the join
    needs ``λ_out``: ``scale = λ_in / λ_out`` (Rueckauer et al. 2017, Front. Neurosci. 11:682).

    Example:
        >>> Scale(0.25)(torch.tensor([[1.0, 0.0, 1.0]])).tolist()  # [B=1, 3]
        [[0.25, 0.0, 0.25]]
    """

    scale: torch.Tensor

    def __init__(self, scale: float | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        s = self.scale
        return f"scale={s.item():g}" if s.numel() == 1 else f"scale=[{tuple(s.shape)}]"
