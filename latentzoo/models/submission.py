"""A Brain-Score leaderboard submission (plugin zip) for zoo models.

The zip holds ``models/<plugin>/`` in Brain-Score's plugin format:

* ``__init__.py``: one literal ``model_registry['<id>'] = lambda: commit_model('<id>')`` line
  per model (Brain-Score finds plugins by grepping for these lines);
* ``model.py``: ``get_model``/``get_layers``/``get_bibtex`` (networks come from latentzoo, resolved
  against the plugin's own ``registry.yaml`` holding exactly the submitted entries);
* ``region_layer_map/<id>.json``, ``metadata.yml`` (with ``huggingface_link``),
  ``requirements.txt`` and a ``test.py`` that loads every model through ``load_model``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Sequence

from latentzoo import __version__
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path
from latentzoo.registry import ModelEntry, Registry, load_registry

_INIT = '''"""latentzoo models (Xie et al., ICLR 2025 reproduction), written by `latentzoo submission`."""
from brainscore_vision import model_registry
from brainscore_vision.model_helpers.brain_transformation import ModelCommitment

from .model import BEHAVIOR_LAYERS, get_layers, get_model, get_region_layer_map


def commit_model(identifier):
    return ModelCommitment(identifier=identifier, activations_model=get_model(identifier),
                           layers=get_layers(identifier), behavioral_readout_layer=BEHAVIOR_LAYERS[identifier],
                           region_layer_map=get_region_layer_map(identifier), visual_degrees=8)


'''

_MODEL = '''"""Networks from latentzoo (https://huggingface.co, safetensors) for Brain-Score."""
import json
from pathlib import Path

from brainscore_vision.model_helpers.check_submission import check_models

HERE = Path(__file__).parent
LAYERS = {layers}
BEHAVIOR_LAYERS = {behavior}
BIBTEX = {bibtex}


def _registry():
    from latentzoo.registry import load_registry

    return load_registry([HERE / "registry.yaml"])


def get_model(name):
    from latentzoo.models.brainscore import wrap
    from latentzoo.weights import from_pretrained

    return wrap(from_pretrained(name, registry=_registry()), name)


def get_layers(name):
    return LAYERS[name]


def get_region_layer_map(name):
    return json.loads((HERE / "region_layer_map" / f"{{name}}.json").read_text())


def get_bibtex(model_identifier):
    return BIBTEX[model_identifier]


if __name__ == "__main__":
    check_models.check_base_models(__name__)
'''

_TEST = '''import pytest

import brainscore_vision

IDS = {ids}


@pytest.mark.parametrize("identifier", IDS)
def test_load_model(identifier):
    model = brainscore_vision.load_model(identifier)
    assert model.identifier == identifier
    assert model.visual_degrees() == 8
'''


def write_submission(ids: Sequence[str], out: str | os.PathLike, plugin: str = "latentzoo",
                     registry: Registry | None = None) -> Path:
    """Write the plugin zip for ``ids`` to ``out`` (atomically); returns its path."""
    registry = registry or load_registry()
    entries = [registry[i] for i in dict.fromkeys(ids)]
    if not plugin.isidentifier():
        raise UserError(f"--plugin must be a Python identifier (a folder under models/), got {plugin!r}")
    root = f"models/{plugin}/"
    files = {
        "__init__.py": _INIT + "".join(f"model_registry['{e.id}'] = lambda: commit_model('{e.id}')\n"
                                       for e in entries),
        "model.py": _MODEL.format(
            layers=_literal({e.id: list(dict.fromkeys([*e.region_layer_map.values(), e.layers["behavior"]]))
                             for e in entries}),
            behavior=_literal({e.id: e.layers["behavior"] for e in entries}),
            bibtex=_literal({e.id: e.citation for e in entries})),
        "registry.yaml": _plugin_registry(entries),
        "requirements.txt": f"latentzoo>={__version__}\ntorch\ntorchvision\n",
        "metadata.yml": _metadata(entries),
        "test.py": _TEST.format(ids=_literal([e.id for e in entries])),
    }
    files.update({f"region_layer_map/{e.id}.json": json.dumps(e.region_layer_map, indent=2) + "\n"
                  for e in entries})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(root + name, text)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return out


def _literal(value) -> str:
    """A Python literal for generated code (JSON of str/list/dict is valid Python)."""
    return json.dumps(value, indent=4)


def _plugin_registry(entries: list[ModelEntry]) -> str:
    """The submitted entries as a stand-alone registry file (expanded, overrides applied)."""
    import yaml

    families = []
    for e in entries:
        fam = {"id": e.id, "arch": e.arch, "objective": e.objective, "seed": e.seed, "dataset": e.dataset,
               "head": e.head, "units": e.units, "input_size": e.input_size, "weights": e.weights, "layers": e.layers,
               "description": e.description, "citation": e.citation, "attribution": e.attribution,
               "brainscore_id": e.brainscore_id}
        families.append({k: v for k, v in fam.items() if v not in (None, "")})
    return yaml.safe_dump({"version": 1, "families": families}, sort_keys=False, width=100)


def _metadata(entries: list[ModelEntry]) -> str:
    """Brain-Score ``metadata.yml``: architecture facts counted on a meta-device network."""
    import yaml

    from latentzoo.hub import build_empty
    from latentzoo.weights import entry_config

    models = {}
    for e in entries:
        net = build_empty(entry_config(e))
        params = sum(p.numel() for p in net.parameters())
        leaves = [m for m in net.modules() if not list(m.children())]
        hub = e.weights.get("hub")
        models[e.id] = {
            "architecture": "DCNN", "model_family": "resnet",
            "total_parameter_count": params, "trainable_parameter_count": params,
            "total_layers": len(leaves), "trainable_layers": sum(1 for m in leaves if list(m.parameters())),
            "model_size_mb": round(params * 4 / 1e6, 2),
            "training_dataset": None if e.objective in ("untrained",) else e.dataset,
            "task_specialization": e.objective,
            "brainscore_link": None,
            "huggingface_link": f"https://huggingface.co/{hub['repo']}" if hub else None,
            "extra_notes": e.attribution or e.description or None,
            "runnable": True,
        }
    return yaml.safe_dump({"models": models}, sort_keys=False, width=100)
