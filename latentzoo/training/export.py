"""Export a trained network as a model folder (through :func:`latentzoo.hub.save_pretrained`)."""

from __future__ import annotations

from pathlib import Path

from latentzoo.datasets import RenderedDataset
from latentzoo.hub import save_pretrained
from latentzoo.models.network import LatentNet


def export_model(net: LatentNet, folder: str | Path, dataset: RenderedDataset, dataset_sha256: str,
                 seed: int, steps: int, metrics: dict[str, float]) -> Path:
    """Write ``net`` to ``folder`` with the card fields of a trained model.

    ``config.json``'s ``latentzoo`` block gets: dataset (name), dataset_sha256 (of its
    ``dataset.json``, which pins every shard's sha256), seed, steps, test metrics and the
    candidate layers for Brain-Score layer selection, and ``labels``: the dataset's class names of the
    objective's class tasks ({"category": [...]}), which ``predict`` returns as ``category_name``.
    """
    names = {"category": dataset.categories, "identity": dataset.identities}
    labels = {s.task: names[s.task] for s in net.config.layout if s.task in names}
    return save_pretrained(net, folder, dataset=dataset.meta.get("name", dataset.root.name),
                           dataset_sha256=dataset_sha256, seed=seed, steps=steps,
                           metrics={k: round(v, 6) for k, v in metrics.items()},
                           candidate_layers=net.layers, **({"labels": labels} if labels else {}))
