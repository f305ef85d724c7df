"""A Brain-Score leaderboard submission (plugin zip) for published zoo models.

The zip holds ``models/<plugin>/`` in Brain-Score's plugin format and runs where latentzoo is not
installed: its requirements are PyPI packages only, and ``model.py`` builds each torchvision
ResNet itself and loads the model's ``model.safetensors`` from the Hugging Face Hub at the commit
``latentzoo publish`` pinned, refusing a file whose sha256 differs. Files:

* ``__init__.py``: one literal ``model_registry['<id>'] = lambda: commit_model('<id>')`` line per
  model (Brain-Score finds plugins by grepping for these lines);
* ``model.py``: ``MODELS`` (architecture, head width, true input size, normalisation, Hub repo,
  revision, sha256, layers, region map) and ``get_model``/``get_layers``/``get_bibtex``;
* ``test.py``: layer map, identifiers and one forward pass of a tiny image against the expected
  activation shapes; ``metadata.yml``; ``requirements.txt``.

Models whose weights are not on the Hub (model folders, seeded networks, the authors' ``.pth``
URLs) are refused with one line naming ``latentzoo publish``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

from latentzoo.citation import BIBTEX
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path
from latentzoo.hub import build_empty, read_config
from latentzoo.models.brainscore import LEADERBOARD_LAYERS, VISUAL_DEGREES
from latentzoo.models.network import ARCHS, LatentConfig
from latentzoo.registry import ModelEntry, Registry, load_registry
from latentzoo.weights import fetch, resolve, source_location

_INIT = '''"""latentzoo models for Brain-Score (Xie et al., ICLR 2025), written by `latentzoo submission`."""
from brainscore_vision import model_registry
from brainscore_vision.model_helpers.brain_transformation import ModelCommitment

from .model import MODELS, get_layers, get_model


def commit_model(identifier):
    spec = MODELS[identifier]
    return ModelCommitment(identifier=identifier, activations_model=get_model(identifier),
                           layers=get_layers(identifier), behavioral_readout_layer=spec["behavior"],
                           region_layer_map=dict(spec["region_layer_map"]), visual_degrees={degrees})


'''

_MODEL = '''"""Networks published with latentzoo: torchvision ResNets with safetensors weights on the Hugging Face Hub.

Each file is downloaded at its pinned commit (``hf_hub_download``; ``HF_ENDPOINT`` is honoured) and
refused unless its sha256 matches. Images go through Brain-Score's own ``load_preprocess_images``
at the model's input size.
"""
import functools
import hashlib

import torchvision
from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper, load_preprocess_images
from brainscore_vision.model_helpers.check_submission import check_models

MODELS = {models}
BIBTEX = {bibtex}


@functools.lru_cache(maxsize=None)
def load_network(name):
    """The torchvision network of ``name`` with its published weights (strictly loaded)."""
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    spec = MODELS[name]
    path = hf_hub_download(spec["repo"], "model.safetensors", revision=spec["revision"])
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != spec["sha256"]:
        raise ValueError(f"{{spec['repo']}}@{{spec['revision']}}: model.safetensors has sha256 "
                         f"{{digest.hexdigest()}}, expected {{spec['sha256']}}")
    network = getattr(torchvision.models, spec["architecture"])(weights=None, num_classes=spec["num_classes"])
    network.load_state_dict(load_file(path), strict=True)
    return network.eval()


def get_model(name):
    spec = MODELS[name]
    preprocessing = functools.partial(load_preprocess_images, image_size=spec["input_size"],
                                      normalize_mean=tuple(spec["mean"]), normalize_std=tuple(spec["std"]))
    wrapper = PytorchWrapper(identifier=name, model=load_network(name), preprocessing=preprocessing)
    wrapper.image_size = spec["input_size"]
    return wrapper


def get_layers(name):
    return list(MODELS[name]["layers"])


def get_bibtex(model_identifier):
    return BIBTEX[model_identifier]


if __name__ == "__main__":
    check_models.check_base_models(__name__)
'''

_TEST = '''"""Checks of the submitted models: identifiers, layer maps, and activation shapes of one tiny image."""
import pytest
from PIL import Image

import brainscore_vision
from brainscore_vision.models.{plugin}.model import MODELS


@pytest.mark.parametrize("identifier", sorted(MODELS))
def test_identifier_and_layer_map(identifier):
    model = brainscore_vision.load_model(identifier)
    assert model.identifier == identifier
    assert model.visual_degrees() == {degrees}
    assert dict(model.layer_model.region_layer_map) == MODELS[identifier]["region_layer_map"]
    network = model.activations_model._model
    modules = dict(network.named_modules())
    assert all(layer in modules for layer in MODELS[identifier]["layers"])


@pytest.mark.parametrize("identifier", sorted(MODELS))
def test_tiny_image_activations_have_the_expected_shapes(identifier, tmp_path):
    spec = MODELS[identifier]
    path = tmp_path / "tiny.png"
    Image.new("RGB", (7, 5), (200, 30, 90)).save(path)
    model = brainscore_vision.load_model(identifier)
    for layer, features in spec["features"].items():
        activations = model.activations_model([str(path)], layers=[layer])
        assert activations.shape == (1, features), (layer, activations.shape)
'''


def write_submission(ids: Sequence[str], out: str | os.PathLike, plugin: str = "latentzoo",
                     registry: Registry | None = None) -> Path:
    """Write the plugin zip for ``ids`` (zoo ids, model folders or Hub repos, all published) to ``out``."""
    if not plugin.isidentifier():
        raise UserError(f"--plugin must be a Python identifier (a folder under models/), got {plugin!r}")
    registry = registry or load_registry()
    entries = list({e.id: e for e in (resolve(i, registry) for i in ids)}.values())
    for e in entries:
        if e.weights_kind != "hub":
            raise UserError(f"{e.id}: a submission loads its weights from the Hugging Face Hub, but they come "
                            f"from {source_location(e)}; publish them first: "
                            f"`latentzoo publish {e.id} --repo ORG/NAME`")
    configs = {e.id: read_config(fetch(e)) for e in entries}  # the pushed config.json, sha256-checked
    specs = {e.id: model_spec(e, configs[e.id]) for e in entries}
    files = {
        "__init__.py": _INIT.format(degrees=VISUAL_DEGREES)
        + "".join(f"model_registry['{e.id}'] = lambda: commit_model('{e.id}')\n" for e in entries),
        "model.py": _MODEL.format(models=_literal(specs),
                                  bibtex=_literal({e.id: e.citation or BIBTEX for e in entries})),
        "requirements.txt": "torch\ntorchvision\nhuggingface_hub\nsafetensors\n",
        "metadata.yml": _metadata(entries, configs),
        "test.py": _TEST.format(degrees=VISUAL_DEGREES, plugin=plugin),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(f"models/{plugin}/{name}", text)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return out


def model_spec(entry: ModelEntry, cfg: LatentConfig) -> dict[str, Any]:
    """What ``model.py`` records of a published model with config ``cfg``: torchvision architecture, head
    width, input size, normalisation, Hub pin, layers and each layer's flattened activation width."""
    region_map = entry.region_layer_map
    if entry.protocol == "leaderboard":  # as the authors' plugins: their layers, the last one read out
        layers, behavior = list(LEADERBOARD_LAYERS), LEADERBOARD_LAYERS[-1]
    else:
        behavior = entry.layers["behavior"]
        layers = list(dict.fromkeys([*region_map.values(), behavior]))
    hub = entry.weights["hub"]
    return {"architecture": ARCHS.get(cfg.arch, cfg.arch), "num_classes": cfg.head_size,
            "input_size": cfg.input_size, "mean": list(cfg.mean), "std": list(cfg.std),
            "repo": hub["repo"], "revision": hub["revision"], "sha256": hub["sha256"],
            "layers": layers, "region_layer_map": region_map, "behavior": behavior,
            "features": layer_widths(cfg, layers)}


def layer_widths(cfg: LatentConfig, layers: Sequence[str]) -> dict[str, int]:
    """Flattened activation width of each layer for one ``cfg.input_size`` image (a meta-device pass)."""
    import math

    import torch

    net = build_empty(cfg).eval()
    widths: dict[str, int] = {}
    hooks = [net.get_submodule(name).register_forward_hook(
        lambda module, inputs, output, name=name: widths.__setitem__(name, math.prod(output.shape[1:])))
        for name in layers]
    net(torch.zeros(1, 3, cfg.input_size, cfg.input_size, device="meta"))
    for hook in hooks:
        hook.remove()
    return widths


def _literal(value) -> str:
    """A Python literal for generated code (JSON of str/int/float/list/dict is valid Python)."""
    return json.dumps(value, indent=4)


def _metadata(entries: list[ModelEntry], configs: dict[str, LatentConfig]) -> str:
    """Brain-Score ``metadata.yml``: architecture facts counted on a meta-device network."""
    import yaml

    models = {}
    for e in entries:
        net = build_empty(configs[e.id])
        params = sum(p.numel() for p in net.parameters())
        leaves = [m for m in net.modules() if not list(m.children())]
        models[e.id] = {
            "architecture": "DCNN", "model_family": "resnet",
            "total_parameter_count": params, "trainable_parameter_count": params,
            "total_layers": len(leaves), "trainable_layers": sum(1 for m in leaves if list(m.parameters())),
            "model_size_mb": round(params * 4 / 1e6, 2),
            "training_dataset": None if e.objective in ("untrained",) else e.dataset,
            "task_specialization": e.objective,
            "brainscore_link": None,
            "huggingface_link": f"https://huggingface.co/{e.weights['hub']['repo']}",
            "extra_notes": e.attribution or e.description or None,
            "runnable": True,
        }
    return yaml.safe_dump({"models": models}, sort_keys=False, width=100)
