"""Training latent networks: streamed shards, the paper's losses, DDP, checkpoints, export.

``train(TrainConfig(...))`` (or ``latentzoo train``) turns a rendered dataset into a model folder;
``evaluate(net, dataset)`` (or ``latentzoo evaluate``) computes the test metrics.
"""

from latentzoo.training.metrics import evaluate, latent_metrics
from latentzoo.training.objectives import objective_loss, task_losses
from latentzoo.training.trainer import TrainConfig, Trainer, train

__all__ = ["TrainConfig", "Trainer", "evaluate", "latent_metrics", "objective_loss", "task_losses", "train"]
