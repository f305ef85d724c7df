"""``latentzoo extract``: layer activations of any model on an image folder, one ``.npy`` per layer.

Output folder (the layout thingsvision users know: one features file per layer, rows in the order of
a file list)::

    OUT/<layer>.npy     n_images x n_features float32 (C x H x W flattened in that order, or pooled)
    OUT/images.txt      the image files, relative to the image folder, one per line = the rows' order
    OUT/extract.json    model, layers, pooling, image folder, image count
    OUT/cache/          :func:`latentzoo.analysis.activations.extract`'s cache (per-layer sha256 manifest)

Each ``OUT/<layer>.npy`` is a hard link to the cached file (a copy where links are impossible), so
a rerun recomputes only the layers that are missing or damaged, and an interrupted run resumes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from torch import nn

from latentzoo.analysis.activations import Stimuli, extract
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, write_bytes_atomic, write_json_atomic


def load_any(name: str) -> nn.Module:
    """A timm model name that is no zoo id (``resnet50.a1_in1k``, ``timm/...``, ``local-dir:FOLDER``) through
    ``timm.create_model(name, pretrained=True)`` in eval mode; anything else (zoo id, model folder,
    ``hf-hub:ORG/NAME``) through :func:`latentzoo.weights.from_pretrained`."""
    import timm

    from latentzoo.registry import load_registry
    from latentzoo.weights import from_pretrained

    if not (name.startswith(("local-dir:", "timm/")) or (timm.is_model(name) and name not in load_registry())):
        return from_pretrained(name)
    try:
        return timm.create_model(name, pretrained=True).eval()
    except Exception as e:  # timm/huggingface_hub raise many types: offline, 404, bad folder
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"cannot build timm model {name} with its pretrained weights ({type(e).__name__}: "
                        f"{first})") from None


def extract_folder(model: str | nn.Module, images: str | os.PathLike, layers: Sequence[str] | None,
                   out: str | os.PathLike, pooling: str | int = "none", batch_size: int = 64,
                   device: str | None = None, progress: bool = True) -> dict[str, Path]:
    """Write ``OUT/<layer>.npy`` (+ ``images.txt``, ``extract.json``) for every image under ``images``
    (recursive, sorted; see module doc); returns {layer: path}. ``layers`` default to the model's
    candidate layers (zoo models). ``pooling``: ``none`` (flattened), ``avg`` (global average) or ``K``
    (K x K average pooling)."""
    out = Path(out)
    net = load_any(model) if isinstance(model, str) else model
    if not layers and not hasattr(net, "layers"):
        raise UserError("--layers is required for a model without latentzoo's candidate layers "
                        "(e.g. --layers layer4 global_pool)")
    layers = list(layers or net.layers)
    model_id = str(model) if isinstance(model, str) else getattr(getattr(net, "config", None), "id", None)
    stimuli = Stimuli.from_folder(images)
    arrays = extract(net, stimuli, layers, pooling=pooling, batch_size=batch_size, device=device,
                     cache_dir=out / "cache", model_id=model_id, progress=progress)
    written = {layer: publish(Path(array.filename), out / f"{layer}.npy") for layer, array in arrays.items()}
    write_bytes_atomic(out / "images.txt", "".join(f"{i}\n" for i in stimuli.ids).encode())
    write_json_atomic(out / "extract.json", {
        "model": model_id, "images": str(Path(images).resolve()), "n_images": len(stimuli),
        "layers": {layer: list(array.shape) for layer, array in arrays.items()}, "pooling": pooling,
        "rows": "images.txt"})
    return written


def publish(cached: Path, target: Path) -> Path:
    """Put ``cached`` at ``target`` atomically: a hard link (no copy), or a copy across file systems."""
    if target.exists() and os.path.samefile(cached, target):
        return target
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(cached, tmp)
        except OSError:
            shutil.copyfile(cached, tmp)
    return target
