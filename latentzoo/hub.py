"""Model folder I/O: ``model.safetensors`` + timm-compatible ``config.json`` + Hugging Face model card.

A model folder (docs/zoo.md) loads three ways with identical outputs::

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

from latentzoo.citation import BIBTEX as CITATION
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, write_bytes_atomic, write_json_atomic
from latentzoo.models.network import ARCHS, LatentConfig, LatentNet, build_backbone

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"



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
    _write_config_and_card(folder, cfg)
    return folder


def _write_config_and_card(folder: Path, cfg: LatentConfig) -> None:
    write_json_atomic(folder / CONFIG_NAME, timm_config(cfg))
    write_bytes_atomic(folder / CARD_NAME, model_card(cfg).encode())


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


def update_card_fields(folder: str | os.PathLike, **fields: Any) -> Path:
    """Merge card ``fields`` (e.g. ``layers``) into a model folder's ``config.json`` and rewrite its card;
    returns the config's path. The weights file is left as it is."""
    cfg = read_config(folder)
    cfg.extra = {**cfg.extra, **fields}
    _write_config_and_card(Path(folder), cfg)
    return Path(folder) / CONFIG_NAME


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
    """Hugging Face model card: YAML front matter (library_name, license, tags, datasets, metrics,
    model-index) and sections for outputs and labels, intended use, limitations, training data,
    evaluation, Brain-Score, usage (``from_pretrained``, timm, ``brainscore score``) and citation.

    ``cfg.extra`` supplies the facts (``dataset``, ``steps``, ``metrics``, ``scores``, ``layers``,
    ``labels``, ``description``, ``license``); ``repo`` (set by ``latentzoo publish``) is the Hub
    repo the usage lines name; without it they name the model folder's id.
    """
    import yaml

    extra = cfg.extra
    metrics, scores = dict(extra.get("metrics") or {}), dict(extra.get("scores") or {})
    name = cfg.id or f"{cfg.objective}-{cfg.arch}"
    dataset = extra.get("dataset") or "none"
    results = [{"task": {"type": "image-feature-extraction", "name": task},
                "dataset": {"name": source, "type": source},
                "metrics": [{"type": k, "name": k, "value": float(v)} for k, v in table.items()]}
               for task, source, table in (("test metrics", dataset, metrics), ("Brain-Score", "brain-score", scores))
               if table]
    front = {
        "library_name": "timm",
        "pipeline_tag": "image-feature-extraction",
        "license": extra.get("license", "mit"),
        "tags": ["latentzoo", "brain-score", "timm", "image-feature-extraction", cfg.arch,
                 f"objective-{cfg.objective}"],
        "datasets": [dataset] if extra.get("dataset") else [],
        "metrics": sorted({*metrics, *scores}),
        **({"model-index": [{"name": name, "results": results}]} if results else {}),
    }
    arch = ARCHS.get(cfg.arch, cfg.arch)
    units = "z-scores (the training statistics were not published)" if cfg.units == "zscore" else "metres"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {name}", "",
             extra.get("description") or (f"A {arch} trained on 3D-rendered images of single objects for the "
                                          f"`{cfg.objective}` objective (Xie et al., ICLR 2025)."), "",
             "## Outputs", "", f"Input: RGB {cfg.input_size} x {cfg.input_size} px, resized "
             f"({cfg.interpolation}) and normalised with mean {list(cfg.mean)}, std {list(cfg.std)}. "
             f"Output: {cfg.head_size} units.", "", "| latent | head units | meaning |", "|---|---|---|"]
    meaning = {"distance": f"z, depth along the optical axis ({units})",
               "translation": f"x (right), y (up) of the object centre ({units})",
               "rotation": "sin then cos of rot_x, rot_y, rot_z (radians)",
               "category": "category logits", "identity": "object identity logits"}
    lines += [f"| {s.task} | [{s.start}, {s.stop}) | {meaning.get(s.task, '')} |" for s in cfg.layout] \
        or ["| (none: a reference network) | | |"]
    for task, names in cfg.label_names.items():
        lines += ["", f"<details><summary>{task} labels ({len(names)}, in head order)</summary>", "",
                  ", ".join(f"{i}: {n}" for i, n in enumerate(names)), "", "</details>"]
    lines += ["", "## Intended use", "",
              "Research on models of the primate ventral visual stream: comparing representations "
              "(CKA, RSA, decoding) and scoring neural and behavioural alignment with Brain-Score. "
              "The latent head estimates the position, pose and class of one object in a rendered image.",
              "", "## Limitations", "",
              "Trained only on synthetic renderings of single objects; estimates on natural photographs, "
              "scenes with several objects or other image statistics are not validated. Not for "
              "deployment in safety-relevant or real-world measurement settings.", "",
              "## Training data", "", "| | |", "|---|---|", f"| dataset | {dataset} |"]
    for key, label in (("dataset_sha256", "dataset sha256"), ("steps", "training steps"), ("seed", "seed")):
        if extra.get(key) is not None:
            lines.append(f"| {label} | {extra[key]} |")
    lines += [f"| input size | {cfg.input_size} px |", ""]
    for title, table in (("Test metrics", metrics), ("Brain-Score", scores)):
        if table:
            lines += [f"## {title}", "", "| name | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in table.items()] + [""]
    if extra.get("layers"):
        lines += ["## Brain-Score layer map", "", "| region | layer |", "|---|---|"]
        lines += [f"| {k} | `{v}` |" for k, v in extra["layers"].items()] + [""]
    source = f"hf-hub:{extra['repo']}" if extra.get("repo") else name
    lines += ["## Usage", "", "```python", "import latentzoo", "",
              f'net = latentzoo.from_pretrained("{source}")', 'latents = net.predict(["image.jpg"])', ""]
    if extra.get("repo"):
        lines += ["import timm", "", f'model = timm.create_model("{source}", pretrained=True)',
                  "raw = model(x)  # the head's raw units; net.decode(raw) gives the latents above"]
    lines += ["```", ""]
    if all(r in (extra.get("layers") or {}) for r in ("V1", "V2", "V4", "IT")):
        lines += ["```bash", f"brainscore score --model {source}", "```", ""]
    lines += ["## Citation", "", "```bibtex", extra.get("citation") or CITATION, "```", ""]
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
