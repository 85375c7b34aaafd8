"""Early exit: stop simulating a sample once its predicted class has been stable for k steps.

The prediction at step t is the argmax of the output summed over steps 1..t (spike counts for
a spiking output). A step *counts* for a sample when that sum has a unique maximum (so a
sample with no output spike yet, all counts tied at 0, never exits on class 0) and the class
is the one of the previous step. A sample exits at the step where k such steps in a row are
reached; its prediction is then final.
"""

from __future__ import annotations

import torch

#: Default k for early exit. Measured on the seed CNN (1,000 test images, T = 50, 99.9 % mode,
#: full accuracy 98.4 %): k = 5 gave 90.9 % in 12.0 steps on average, k = 10 96.4 % in 17.7,
#: k = 15 97.8 % in 23.0, k = 20 98.2 % in 28.0. k = 20 keeps the accuracy within 0.2 % of
#: the full run while using 56 % of the steps.
DEFAULT_STABLE_STEPS = 20


class StablePrediction:
    """Tracks, per sample, how long its prediction has been stable.

    Args:
        k: steps of stable prediction needed to exit (>= 1).
        batch: number of samples.
        device: where the tracking tensors live (no host synchronisation in :meth:`update`).
        cumulative: sum the outputs over steps (spike counts); False when each output already
            is the running total (membrane readout: the potential).

    Raises:
        ValueError: ``k < 1``.
    """

    def __init__(self, k: int, batch: int, device: torch.device, cumulative: bool = True) -> None:
        if k < 1:
            raise ValueError(f"early_exit must be >= 1 step, got {k}")
        self.k = k
        self.cumulative = cumulative  # False: the outputs are already totals (membrane potentials)
        self.total: torch.Tensor | None = None  # [b, classes] output summed so far
        self.pred = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.streak = torch.zeros(batch, dtype=torch.long, device=device)
        self.exit_step = torch.zeros(batch, dtype=torch.long, device=device)  # 0: not yet

    def update(self, out: torch.Tensor, t0: int) -> torch.Tensor:
        """Feed the outputs ``[steps, b, ...]`` of steps ``t0 + 1 .. t0 + steps``.

        Returns:
            ``[b]`` int64: the step (1-based) at which each sample exited, 0 if it has not.
        """
        flat = out.flatten(2)
        if self.total is None:
            self.total = torch.zeros_like(flat[0])
        for i in range(flat.shape[0]):
            self.total = self.total + flat[i] if self.cumulative else flat[i]
            pred = self.total.argmax(1)
            if self.total.shape[1] > 1:
                top = self.total.topk(2, dim=1).values
                unique = top[:, 0] > top[:, 1]
            else:
                unique = torch.ones_like(pred, dtype=torch.bool)
            self.streak = torch.where(unique & (pred == self.pred), self.streak + 1, unique.long())
            self.pred = pred
            done = (self.streak >= self.k) & (self.exit_step == 0)
            self.exit_step = torch.where(done, torch.full_like(self.exit_step, t0 + i + 1), self.exit_step)
        return self.exit_step

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the samples ``index``."""
        self.total = None if self.total is None else self.total[index]
        self.pred, self.streak, self.exit_step = self.pred[index], self.streak[index], self.exit_step[index]


def hold_after_exit(outputs: torch.Tensor, steps_used: torch.Tensor) -> torch.Tensor:
    """``outputs`` ``[T, B, ...]`` with each sample's outputs after its exit step replaced by
    the output at that step (membrane readout: the potential, and so the class, stays)."""
    t = torch.arange(outputs.shape[0], device=outputs.device).view(-1, 1)
    index = torch.minimum(t, steps_used.view(1, -1) - 1)
    index = index.view(*index.shape, *([1] * (outputs.dim() - 2))).expand_as(outputs)
    return outputs.gather(0, index)


def mask_after_exit(out: torch.Tensor, exit_step: torch.Tensor, t0: int) -> torch.Tensor:
    """``out`` ``[steps, b, ...]`` with the outputs after each sample's exit step set to 0, so
    that the summed output, and so the prediction, stays what it was at the exit."""
    t = torch.arange(t0 + 1, t0 + out.shape[0] + 1, device=out.device).view(-1, 1)
    after = (exit_step.view(1, -1) > 0) & (t > exit_step.view(1, -1))
    return out.masked_fill(after.view(*after.shape, *([1] * (out.dim() - 2))), 0)
