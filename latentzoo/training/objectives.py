"""Losses of the paper's objectives (docs/training.md "Objectives and losses").

* distance, translation: squared error on z-scored positions (train-split statistics);
  translation = mean(Lx, Ly);
* rotation: squared error on sin and cos of each Euler angle; rotation = mean over the three
  angles of mean(Lsin, Lcos);
* category, identity: cross-entropy;
* an objective with several tasks: the arithmetic mean of its task losses.

Since every angle (and every position axis) has the same number of samples, the nested means
equal one mean squared error over the task's units, which is how they are computed here.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch.nn import functional as F

from latentzoo.latents import CLASS_LATENTS, Slot


def task_losses(outputs: torch.Tensor, targets: Mapping[str, torch.Tensor],
                layout: Sequence[Slot]) -> dict[str, torch.Tensor]:
    """Loss of every task of ``layout``: {task: scalar}.

    ``outputs`` is the network's (N, units) output; ``targets`` is what
    :func:`latentzoo.latents.encode_targets` returns, as tensors (class indices as int64).
    """
    outputs = outputs.float()
    losses = {}
    for slot in layout:
        block = outputs[:, slot.start:slot.stop]
        target = targets[slot.task]
        if slot.task in CLASS_LATENTS:
            losses[slot.task] = F.cross_entropy(block, target.long())
        else:
            losses[slot.task] = F.mse_loss(block, target.float())
    return losses


def objective_loss(outputs: torch.Tensor, targets: Mapping[str, torch.Tensor],
                   layout: Sequence[Slot]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective's loss (mean of its task losses) and the per-task losses."""
    losses = task_losses(outputs, targets, layout)
    if not losses:
        raise ValueError("the objective has no task to train (untrained/imagenet)")
    return torch.stack(list(losses.values())).mean(), losses
