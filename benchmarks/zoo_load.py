"""Loading a cached zoo ResNet-50 (674-unit head) vs the authors' Brain-Score plugin way, beyond torch's import.

Baseline ("authors' plugin"): ``import torchvision``, ``resnet50()`` with random init, replace
``fc``, ``torch.load`` the ``.pth`` (``weights_only=True``), strip ``_orig_mod.``, ``load_state_dict``.
Ours: ``latentzoo.from_pretrained(id)`` with the converted safetensors folder already in the cache
(registry lookup, meta-device build, safetensors load, strict assign).

Each side runs in a fresh interpreter that has already imported torch and then imports
torchvision (timed separately: both sides need it, and it imports ``torch._dynamo``); the load
time starts after those imports. Run: ``python benchmarks/zoo_load.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
import yaml

ID = "bench-all-r50"

BASELINE = """
import time, torch
t = time.perf_counter()
import torchvision
imported = time.perf_counter() - t
t = time.perf_counter()
model = torchvision.models.resnet50()
model.fc = torch.nn.Linear(model.fc.in_features, 674)
state = torch.load({pth!r}, map_location="cpu", weights_only=True)
model.load_state_dict({{k.removeprefix("_orig_mod."): v for k, v in state.items()}}, strict=True)
print(imported, time.perf_counter() - t)
"""

OURS = """
import time, torch
t = time.perf_counter()
import torchvision  # latentzoo's network builds torchvision ResNets
imported = time.perf_counter() - t
t = time.perf_counter()
import latentzoo
net = latentzoo.from_pretrained({id!r})
first = time.perf_counter() - t
t = time.perf_counter()
latentzoo.from_pretrained({id!r})
print(imported, first, time.perf_counter() - t)
"""


def child(code: str, env: dict) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return [float(v) for v in out.stdout.split()]


def main() -> None:
    import latentzoo

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pth = tmp / "authors.pth"
        model = torchvision.models.resnet50(num_classes=674)
        torch.save({f"_orig_mod.{k}": v for k, v in model.state_dict().items()}, pth)
        family = {"id": ID, "arch": "r50", "objective": "all", "seed": 0, "dataset": "bench", "head": 674,
                  "units": "zscore", "weights": {"url": {"href": pth.as_uri(), "format": "authors-pth"}},
                  "layers": {"V1": "layer1", "V2": "layer2", "V4": "layer2", "IT": "layer3"}}
        (tmp / "registry.yaml").write_text(yaml.safe_dump({"families": [family]}))
        env = {**os.environ, "LATENTZOO_REGISTRY": str(tmp / "registry.yaml"), "LATENTZOO_CACHE": str(tmp / "cache"),
               "LATENTZOO_OFFLINE": "", "PYTHONWARNINGS": "ignore"}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(latentzoo.__path__[0]).parent), env.get("PYTHONPATH", "")])
        child(OURS.format(id=ID), env)  # first run downloads (file://) and converts into the cache
        env["LATENTZOO_OFFLINE"] = "1"  # from now on a request would be an error
        runs = 3
        base = [child(BASELINE.format(pth=str(pth)), env) for _ in range(runs)]
        ours = [child(OURS.format(id=ID), env) for _ in range(runs)]
    torchvision_import = min(r[0] for r in base + ours)
    baseline, first, again = min(r[1] for r in base), min(r[1] for r in ours), min(r[2] for r in ours)
    print(json.dumps({"torchvision_import_s": round(torchvision_import, 3),
                      "baseline_authors_plugin_s": round(baseline, 3), "latentzoo_cached_load_s": round(first, 3),
                      "latentzoo_second_load_same_process_s": round(again, 3)}))
    print(f"cached ResNet-50 load beyond torch+torchvision import: {first:.3f} s "
          f"({baseline / first:.2f}x faster than the authors' plugin way: {baseline:.3f} s); torchvision's own "
          f"import (which imports torch._dynamo) adds {torchvision_import:.3f} s to both; best of {runs}")


if __name__ == "__main__":
    main()
