"""Test-split metrics of a latent network (the paper's "performance" is the negative test loss).

Per latent of the objective: ``<x|y|z>_r2`` and ``<x|y|z>_rmse`` (metres), ``<angle>_mae``
(mean absolute angular error in radians, wrapped to [0, pi]) and ``<angle>_r2`` (circular R^2: 1 - the
sum of squared wrapped errors over that of the wrapped deviations from the circular mean, so a constant
guess of the mean direction scores 0), ``<category|identity>_top1``;
plus ``loss``, ``loss_<task>`` and ``performance = -loss``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from latentzoo.datasets import RenderedDataset
from latentzoo.errors import UserError
from latentzoo.latents import (ANGLE_LATENTS, CLASS_LATENTS, POSITION_LATENTS, Normalisation, circular_mean,
                               decode_outputs, encode_targets, objective_latents, wrap_angle)
from latentzoo.models.network import LatentNet
from latentzoo.training.data import EvalStream, loader, normalise_images, train_normalisation
from latentzoo.training.objectives import objective_loss


def latent_metrics(predicted: Mapping[str, np.ndarray], true: Mapping[str, np.ndarray]) -> dict[str, float]:
    """R^2/RMSE for positions, wrapped mean absolute error and circular R^2 for angles, top-1 for classes."""
    out = {}
    for name, pred in predicted.items():
        y, p = np.asarray(true[name], dtype=np.float64), np.asarray(pred, dtype=np.float64)
        if name in POSITION_LATENTS:
            ss_tot = float(((y - y.mean()) ** 2).sum())
            out[f"{name}_r2"] = 1 - float(((y - p) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
            out[f"{name}_rmse"] = float(np.sqrt(((y - p) ** 2).mean()))
        elif name in ANGLE_LATENTS:
            error = wrap_angle(p - y)
            spread = wrap_angle(y - circular_mean(y))
            out[f"{name}_mae"] = float(np.abs(error).mean())
            out[f"{name}_r2"] = 1 - float((error ** 2).sum() / (spread ** 2).sum()) if spread.any() else float("nan")
        elif name in CLASS_LATENTS:
            out[f"{name}_top1"] = float((p == y).mean())
    return out


def check_compatible(net: LatentNet, dataset: RenderedDataset) -> None:
    """Raise UserError when the model has no latent outputs, the dataset lacks a latent of the model's
    objective, or its class counts differ."""
    net.require_latents()
    cfg = net.config
    columns = set(dataset.latents("test").columns)
    missing = [n for n in objective_latents(cfg.objective) if n not in columns]
    if missing:
        raise UserError(f"{dataset.root} has no {', '.join(missing)} labels needed by objective {cfg.objective!r}")
    for task, n_model, n_data in (("category", cfg.n_categories, len(dataset.categories)),
                                  ("identity", cfg.n_identities, len(dataset.identities))):
        if any(s.task == task for s in cfg.layout) and n_model != n_data:
            raise UserError(f"the model has {n_model} {task} classes, {dataset.root} has {n_data}")


@torch.no_grad()
def evaluate(net: LatentNet, dataset: RenderedDataset, split: str = "test", batch_size: int = 128,
             workers: int = 0, max_images: int | None = None,
             normalisation: Normalisation | None = None) -> dict[str, float]:
    """Metrics and loss of ``net`` on ``split`` of ``dataset`` (all images, or the first ``max_images``).

    ``normalisation`` z-scores positions for the loss and de-normalises predictions; by default the
    model's own, or the dataset's train-split statistics for models without one (``units: zscore``).
    """
    check_compatible(net, dataset)
    cfg = net.config
    norm = normalisation or cfg.normalisation or train_normalisation(dataset, cfg.objective)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    outputs, latents = [], []
    stream = EvalStream(dataset, split, cfg.input_size, batch_size, max_images, cfg.interpolation)
    for images, batch_latents, _ in loader(stream, workers):
        x = normalise_images(images.to(device), cfg.mean, cfg.std)
        outputs.append(net(x).float().cpu())
        latents.append(batch_latents)
    net.train(was_training)
    if not outputs:
        raise UserError(f"{dataset.root} has no {split!r} images")
    out = torch.cat(outputs)
    true = {n: np.concatenate([b[n] for b in latents]) for n in latents[0]}
    targets = {t: torch.from_numpy(v) for t, v in encode_targets(true, cfg.layout, norm).items()}
    loss, losses = objective_loss(out, targets, cfg.layout)
    metrics = latent_metrics(decode_outputs(out.numpy(), cfg.layout, norm), true)
    metrics.update({f"loss_{t}": float(v) for t, v in losses.items()})
    metrics.update(loss=float(loss), performance=-float(loss), images=int(len(out)))
    return metrics
