"""Model folder I/O: ``model.safetensors`` + timm-compatible ``config.json`` + Hugging Face model card.

A model folder (DESIGN.md) loads three ways with identical outputs::

    latentzoo.load_pretrained(folder)                      # LatentNet with predict()
    timm.create_model(f"local-dir:{folder}", pretrained=True)
    timm.create_model("hf-hub:org/repo", pretrained=True)  # after push_to_hub(folder, "org/repo")

Weights keep torchvision/timm ResNet key names (``conv1.weight`` ... ``fc.weight``); the
``latentzoo`` block of ``config.json`` is :meth:`LatentConfig.to_dict` (objective, layout,
normalisation, units, ...) with the card fields (dataset, seed, steps, metrics, layers, scores)
merged into its ``extra``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, write_bytes_atomic, write_json_atomic
from latentzoo.models.network import ARCHS, LatentConfig, LatentNet, build_backbone

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"

CITATION = """@inproceedings{xie2025vision,
  title={Vision CNNs trained to estimate spatial latents learned similar ventral-stream-aligned representations},
  author={Xie, Yudi and Alter, Weichen and Schwartz, Jeremy and DiCarlo, James J.},
  booktitle={International Conference on Learning Representations (ICLR)},
  year={2025}
}"""


def timm_config(cfg: LatentConfig) -> dict[str, Any]:
    """The ``config.json`` timm reads (``architecture``, ``num_classes``, ``pretrained_cfg``) + ``latentzoo``."""
    size = cfg.input_size
    pretrained_cfg = {
        "input_size": [3, size, size], "fixed_input_size": False,
        "interpolation": cfg.interpolation, "crop_pct": 1.0, "crop_mode": "center",
        "mean": list(cfg.mean), "std": list(cfg.std), "num_classes": cfg.head_size,
        "pool_size": [size // 32, size // 32], "first_conv": "conv1", "classifier": "fc",
    }
    return {"architecture": ARCHS.get(cfg.arch, cfg.arch), "num_classes": cfg.head_size,
            "global_pool": "avg", "pretrained_cfg": pretrained_cfg,
            "latentzoo": cfg.to_dict()}


def save_pretrained(net: LatentNet, folder: str | os.PathLike, **card_fields: Any) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` (model card) into ``folder``.

    ``card_fields`` (e.g. ``dataset``, ``seed``, ``steps``, ``metrics={name: value}``,
    ``layers={V1: ..., IT: ..., behavior: ...}``, ``scores={benchmark: value}``, ``license``,
    ``description``) are stored in the config's ``latentzoo.extra`` and shown on the card.
    Every file is written atomically; returns the folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    cfg = LatentConfig.from_dict(net.config.to_dict())
    cfg.extra = {**cfg.extra, **card_fields}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    config = timm_config(cfg)
    write_json_atomic(folder / CONFIG_NAME, config)
    write_bytes_atomic(folder / CARD_NAME, model_card(cfg).encode())
    return folder


def read_config(folder: str | os.PathLike) -> LatentConfig:
    """The :class:`LatentConfig` of a model folder (plain timm folders become ``imagenet``-style configs)."""
    path = Path(folder) / CONFIG_NAME
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{folder} is not a model folder: {CONFIG_NAME} is missing") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if "latentzoo" in config:
        try:
            return LatentConfig.from_dict(config["latentzoo"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}: bad 'latentzoo' block ({e})") from None
    pcfg = config.get("pretrained_cfg", {})
    return LatentConfig(arch=config["architecture"], objective="imagenet", layout=[],
                        num_classes=config.get("num_classes", pcfg.get("num_classes", 1000)),
                        input_size=pcfg.get("input_size", [3, 224, 224])[-1],
                        mean=pcfg.get("mean", LatentConfig.mean), std=pcfg.get("std", LatentConfig.std),
                        interpolation=pcfg.get("interpolation", "bilinear"))


def build_empty(cfg: LatentConfig) -> LatentNet:
    """A :class:`LatentNet` for ``cfg`` whose tensors live on the meta device (no init cost)."""
    with torch.device("meta"):
        return LatentNet(build_backbone(cfg.arch, cfg.head_size), cfg)


def load_state(net: LatentNet, state: dict[str, torch.Tensor], source: str) -> LatentNet:
    """Strictly load ``state`` into ``net`` (assigning tensors, so meta networks become real)."""
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise UserError(f"{source}: weights do not fit a {net.config.arch} with a "
                        f"{net.config.head_size}-unit head ({first})") from None
    return net.eval()


def load_pretrained(folder: str | os.PathLike) -> LatentNet:
    """Load a model folder written by :func:`save_pretrained` (strict: every tensor must match)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = read_config(folder)
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise UserError(f"{folder} is not a model folder: {WEIGHTS_NAME} is missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path}: unreadable safetensors file ({e})") from None
    return load_state(build_empty(cfg), state, str(path))


def model_card(cfg: LatentConfig) -> str:
    """Hugging Face model card: YAML front matter (library_name, tags, license, datasets, metrics) + text."""
    import yaml

    extra = cfg.extra
    metrics = dict(extra.get("metrics") or {})
    scores = dict(extra.get("scores") or {})
    front = {
        "library_name": "timm",
        "pipeline_tag": "image-classification",
        "license": extra.get("license", "mit"),
        "tags": ["latentzoo", "brain-score", "image-classification", "timm", cfg.arch,
                 f"objective-{cfg.objective}"],
        "datasets": [extra["dataset"]] if extra.get("dataset") else [],
        "metrics": sorted({*metrics, *scores}),
    }
    name = cfg.id or f"{cfg.objective}-{cfg.arch}"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {name}", "",
             extra.get("description") or
             (f"A {ARCHS.get(cfg.arch, cfg.arch)} trained on 3D-rendered images for the "
              f"`{cfg.objective}` objective (Xie et al., ICLR 2025)."), "",
             "## Outputs", "", "| task | units |", "|---|---|"]
    lines += [f"| {s.task} | [{s.start}, {s.stop}) |" for s in cfg.layout] or ["| (none) | |"]
    lines += ["", f"Positions are returned as {'z-scores' if cfg.units == 'zscore' else 'metres'}; "
              "angles in radians; classes as indices.", ""]
    for title, table in (("Metrics", metrics), ("Brain-Score", scores)):
        if table:
            lines += [f"## {title}", "", "| name | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in table.items()] + [""]
    if extra.get("layers"):
        lines += ["## Brain-Score layer map", "", "| region | layer |", "|---|---|"]
        lines += [f"| {k} | `{v}` |" for k, v in extra["layers"].items()] + [""]
    lines += ["## Usage", "", "```python", "import latentzoo", "",
              f'net = latentzoo.from_pretrained("{name}")', "latents = net.predict(images)  # PIL images",
              "", "import timm", "", 'model = timm.create_model("hf-hub:<repo>", pretrained=True)', "```",
              "", "## Citation", "", "```bibtex", extra.get("citation", CITATION), "```", ""]
    return "\n".join(lines)


def push_to_hub(model: LatentNet | str | os.PathLike, repo_id: str, revision: str | None = None,
                message: str = "Upload latentzoo model", api: Any = None, **card_fields: Any) -> str:
    """Upload a network or a model folder to the Hugging Face Hub (``HfApi.upload_folder``); returns the commit id.

    A network is first written with :func:`save_pretrained` (``card_fields`` go to its card).
    """
    import tempfile

    from huggingface_hub import HfApi

    if isinstance(model, LatentNet):
        with tempfile.TemporaryDirectory() as tmp:
            return push_to_hub(save_pretrained(model, tmp, **card_fields), repo_id, revision, message, api)
    folder = Path(model)
    read_config(folder)  # refuse to upload something that is not a model folder
    api = api or HfApi()
    api.create_repo(repo_id, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                             commit_message=message, allow_patterns=[WEIGHTS_NAME, CONFIG_NAME, CARD_NAME])
    return info.oid
