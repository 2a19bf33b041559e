"""Which action steps of a training window count in the loss: the store's ``imitate`` flag, where it has one.

Stores of perturbed demonstrations (``--quality recovery``) hold steps whose recorded command was an injected
perturbation, not the expert's. Their windows still condition on what the robot saw and still teach the expert's
recovery that follows; only the perturbation's own actions are left out of the loss. A denoiser still sees a
flagged step's noised value as input context for its neighbours, as LeRobot's padding mask (``action_is_pad``) does.
"""

from __future__ import annotations

import torch

from robostack.data.schema import IMITATE_KEY


def imitated_mean(err: torch.Tensor, batch: dict[str, torch.Tensor], start: int = 0) -> torch.Tensor:
    """Mean of per-element ``err`` (B, T, ...) over the steps flagged to imitate (``batch[IMITATE_KEY][:, start:start+T]``);
    the plain mean when the batch carries no flag."""
    mask = batch.get(IMITATE_KEY)
    if mask is None:
        return err.mean()
    w = mask[:, start : start + err.shape[1]].to(err.dtype)
    w = w.reshape(*w.shape, *([1] * (err.dim() - 2)))
    per_step = err[0, 0].numel()
    # An all-perturbation batch (vanishingly rare) contributes zero loss rather than NaN.
    return (err * w).sum() / (w.sum() * per_step).clamp_min(1.0)
