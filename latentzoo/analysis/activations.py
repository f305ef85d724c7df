"""Layer activations of torch models on a stimulus set, streamed to disk and cached.

>>> stim = Stimuli.from_dataset("data/quick", split="test", n=2000)            # doctest: +SKIP
>>> acts = extract(net, stim, ["layer1.0.relu", "avgpool"], cache_dir="cache")  # doctest: +SKIP
>>> acts["avgpool"].shape                                                        # doctest: +SKIP
(2000, 512)

Forward hooks sit on named modules (layer names: docs/models.md). torchvision ResNets call the same
``relu`` module several times per block; the hook keeps the *last* call, i.e. the block output, as
Brain-Score does. Batches run under ``inference_mode`` in ``channels_last``; each layer is reduced
on the device (global/spatial average pooling or a sparse random projection) and written into a
``.npy`` memmap that is renamed into place when complete. The cache key is (model id, weights
hash, preprocessing, stimulus-set hash, pooling, dtype), one file per layer, so a rerun computes
only the layers that are missing: a run killed mid-extraction loses only the pass it was in (per
model), and leaves nothing half-written under a final name. ``manifest.json`` records each
layer file's sha256; a file that no longer matches (truncated, modified) is recomputed, never used.
A file lock per cache folder lets concurrent runs share one extraction and clear the temporary
files of killed runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from latentzoo.datasets import RenderedDataset
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, sha256_file, write_json_atomic
from latentzoo.images import image_files, load_image, to_rgb
from latentzoo.models.network import IMAGENET_MEAN, IMAGENET_STD, weights_hash

MANIFEST = "manifest.json"  # per cache folder: stimulus ids and each layer file's sha256


@dataclass
class Stimuli:
    """An ordered stimulus set: ``ids`` (dataset keys or file names), a batch loader and a content hash."""

    ids: list[str]
    identifier: str
    batches: Callable[[int], Iterator[list[Image.Image]]]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_dataset(cls, root: str | Path, split: str = "test", keys: Sequence[str] | None = None,
                     n: int | None = None) -> "Stimuli":
        """Images of a rendered dataset split, in key order (only ``keys`` / the first ``n`` when given)."""
        ds = RenderedDataset(root)
        available = ds.latents(split)["key"].tolist()
        if not available:
            raise UserError(f"split {split!r} of {root} has no images")
        if keys is not None:
            missing = sorted(set(keys) - set(available))
            if missing:
                raise UserError(f"{len(missing)} keys are not in split {split!r} of {root} (first: {missing[0]})")
            wanted = set(keys)
            ids = [k for k in available if k in wanted]
        else:
            ids = available
        ids = ids[:n] if n is not None else ids
        shards = {s["name"]: s["sha256"] for s in ds.shard_entries(split)}
        digest = _hash_json({"shards": shards, "keys": ids})

        def batches(batch_size: int) -> Iterator[list[Image.Image]]:
            wanted, batch, seen = set(ids), [], 0
            for key, jpg, _ in ds.raw_samples(split):
                if key not in wanted:
                    continue
                if key != ids[seen]:
                    raise UserError(f"shards of {root} are not in key order ({key} before {ids[seen]})")
                batch.append(_decode(jpg))
                seen += 1
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if seen != len(ids):
                raise UserError(f"{root}: {len(ids) - seen} images of split {split!r} are missing from its shards")
            if batch:
                yield batch

        return cls(ids, digest, batches)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Stimuli":
        """Every image file of ``folder`` (recursively, sorted) as RGB (:mod:`latentzoo.images`); any
        other file, hidden ones included, is refused by name."""
        folder = Path(folder)
        files = image_files(folder)
        ids = [p.relative_to(folder).as_posix() for p in files]
        digest = _hash_json({i: sha256_file(p) for i, p in zip(ids, files)})

        def batches(batch_size: int) -> Iterator[list[Image.Image]]:
            for i in range(0, len(files), batch_size):
                yield [load_image(p) for p in files[i:i + batch_size]]

        return cls(ids, digest, batches)


def _decode(jpg: bytes) -> Image.Image:
    return to_rgb(Image.open(io.BytesIO(jpg)))


def _hash_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def default_preprocess(size: int = 224) -> Callable[[Sequence[Image.Image]], torch.Tensor]:
    """ImageNet preprocessing for models without their own ``preprocess``: resize to ``size``, normalise."""

    def preprocess(images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = [np.asarray(to_rgb(im).resize((size, size), Image.Resampling.BILINEAR))
                  for im in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (batch - mean) / std

    return preprocess


def _preprocess_of(model: nn.Module) -> tuple[Callable[[Sequence[Image.Image]], torch.Tensor], dict]:
    """The model's own preprocessing (LatentNet) or ImageNet 224 px, plus a description for the cache key."""
    config = getattr(model, "config", None)
    if hasattr(model, "preprocess") and config is not None:
        desc = {k: getattr(config, k, None) for k in ("input_size", "mean", "std", "interpolation")}
        return model.preprocess, {k: list(v) if isinstance(v, tuple) else v for k, v in desc.items()}
    return default_preprocess(), {"input_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


class Reducer:
    """Per-layer reduction of a batch of activations: ``"none"`` (flatten), ``"avg"`` (global average
    over space) or an int ``k`` (adaptive average pooling to ``k x k``); then, when ``projection``
    is set and the layer is wider, a fixed sparse random projection to ``projection`` dimensions."""

    def __init__(self, pooling: str | int = "avg", projection: int | None = None, seed: int = 0):
        if pooling not in ("none", "avg") and not (isinstance(pooling, int) and pooling > 0):
            raise UserError(f"pooling must be 'none', 'avg' or a positive int, got {pooling!r}")
        self.pooling, self.projection, self.seed = pooling, projection, seed
        self._matrices: dict[str, torch.Tensor] = {}

    def __call__(self, layer: str, out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 4 and self.pooling == "avg":
            out = out.mean((2, 3))
        elif out.ndim == 4 and isinstance(self.pooling, int):
            out = nn.functional.adaptive_avg_pool2d(out, self.pooling)
        out = out.reshape(len(out), -1).float()
        if self.projection and out.shape[1] > self.projection:
            out = torch.sparse.mm(self._matrix(layer, out.shape[1], out.device), out.T).T
        return out

    def _matrix(self, layer: str, width: int, device: torch.device) -> torch.Tensor:
        """``projection x width`` sparse matrix, density 1/sqrt(width), entries ±sqrt(1/(density k))."""
        if layer not in self._matrices:
            k = self.projection
            per_row = max(1, round(math.sqrt(width)))
            rng = np.random.default_rng([self.seed, width, k])
            cols = np.stack([rng.choice(width, per_row, replace=False) for _ in range(k)]).ravel()
            rows = np.repeat(np.arange(k), per_row)
            vals = rng.choice([-1.0, 1.0], size=len(cols)) * math.sqrt(width / per_row / k)
            self._matrices[layer] = torch.sparse_coo_tensor(
                np.stack([rows, cols]), vals.astype(np.float32), (k, width),
                check_invariants=True).coalesce().to(device)
        return self._matrices[layer]

    def describe(self) -> dict:
        return {"pooling": self.pooling, "projection": self.projection, "seed": self.seed}


class Pixels(nn.Module):
    """The input itself as one layer, ``pixels``: images resized to ``size`` and ImageNet-normalised, as
    the authors' pixel-decoding baseline sees them; :func:`extract` caches it like any model's layer."""

    def __init__(self, size: int = 224):
        super().__init__()
        self.pixels = nn.Identity()
        self.config = SimpleNamespace(input_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                      interpolation="bilinear", id=f"pixels-{size}")
        self.preprocess = default_preprocess(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixels(x)


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Submodule by dotted name; UserError listing a few valid names when absent."""
    modules = dict(model.named_modules())
    if name not in modules:
        examples = ", ".join(n for n in list(modules)[1:8])
        raise UserError(f"layer {name!r} is not in {type(model).__name__} (layers look like: {examples}, ...)")
    return modules[name]


def cache_key(model: nn.Module, stimuli: Stimuli, reducer: Reducer, dtype: np.dtype,
              model_id: str | None = None) -> str:
    """Hex key of (model id, weights hash, preprocessing, stimulus hash, reduction, dtype)."""
    _, prep = _preprocess_of(model)
    return _hash_json({"model": model_id or type(model).__name__, "weights": weights_hash(model),
                       "preprocess": prep, "stimuli": stimuli.identifier, "reduce": reducer.describe(),
                       "dtype": np.dtype(dtype).name})[:20]


def extract(model: nn.Module, stimuli: Stimuli, layers: Sequence[str], *, pooling: str | int = "avg",
            projection: int | None = None, batch_size: int = 64, device: str | torch.device | None = None,
            dtype: type | np.dtype = np.float32, cache_dir: str | Path | None = None,
            model_id: str | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Activations ``{layer: n_stimuli x n_features}`` of ``model`` on ``stimuli``.

    With ``cache_dir`` the arrays are memory-mapped ``.npy`` files under
    ``cache_dir/<cache key>/<layer>.npy``; layers already there are not recomputed. Without it
    they are in-memory arrays.
    """
    dtype = np.dtype(dtype)
    reducer = Reducer(pooling, projection)
    modules = {name: get_module(model, name) for name in dict.fromkeys(layers)}
    if cache_dir is None:
        return _run(model, stimuli, modules, reducer, batch_size, device, dtype, {}, progress)
    from filelock import FileLock

    folder = Path(cache_dir) / cache_key(model, stimuli, reducer, dtype, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        for stale in folder.glob(".*.tmp"):  # left by a killed run (we hold the folder's lock)
            stale.unlink()
        manifest = _read_manifest(folder)
        todo = [n for n in modules if not _cached(folder / f"{n}.npy", manifest["layers"].get(n))]
        if todo:
            with contextlib.ExitStack() as stack:
                paths = {n: stack.enter_context(atomic_path(folder / f"{n}.npy")) for n in todo}
                for arr in _run(model, stimuli, {n: modules[n] for n in todo}, reducer, batch_size, device,
                                dtype, paths, progress).values():
                    arr.flush()
            manifest["layers"].update({n: sha256_file(folder / f"{n}.npy") for n in todo})
            write_json_atomic(folder / MANIFEST, {**manifest, "identifier": stimuli.identifier, "ids": stimuli.ids})
    return {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in modules}



def _read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        manifest = {}
    return {"layers": {}, **manifest}


def _cached(path: Path, sha256: str | None) -> bool:
    """True when ``path`` exists and hashes to the manifest's ``sha256``; warns when it does not."""
    if not path.is_file():
        return False
    if sha256 is not None and sha256_file(path) == sha256:
        return True
    warnings.warn(f"{path} does not match the sha256 in {MANIFEST} (truncated or modified); recomputing it",
                  stacklevel=3)
    return False


def _run(model: nn.Module, stimuli: Stimuli, modules: dict[str, nn.Module], reducer: Reducer,
         batch_size: int, device: str | torch.device | None, dtype: np.dtype,
         paths: dict[str, Path], progress: bool) -> dict[str, np.ndarray]:
    """One pass over the stimuli with hooks on ``modules``; returns arrays (memmaps when ``paths``)."""
    device = torch.device(device) if device else next(model.parameters(), torch.empty(0)).device
    preprocess, _ = _preprocess_of(model)
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def store(_module, _inputs, out):
            outputs[name] = out  # the last call wins: block output for ResNet's shared relu
        return store

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval().to(device, memory_format=torch.channels_last)
    arrays: dict[str, np.ndarray] = {}
    row = 0
    try:
        with torch.inference_mode(), ThreadPoolExecutor(1) as pool, \
                tqdm(total=len(stimuli), desc="activations", unit="img", disable=not progress) as bar:
            batches = stimuli.batches(batch_size)
            pending = pool.submit(_next_batch, batches, preprocess)
            while (x := pending.result()) is not None:
                pending = pool.submit(_next_batch, batches, preprocess)  # decode the next batch meanwhile
                outputs.clear()
                model(x.to(device, memory_format=torch.channels_last, non_blocking=True))
                for name in modules:
                    feats = reducer(name, outputs[name]).cpu().numpy()
                    if name not in arrays:
                        shape = (len(stimuli), feats.shape[1])
                        arrays[name] = (np.lib.format.open_memmap(paths[name], mode="w+", dtype=dtype, shape=shape)
                                        if name in paths else np.empty(shape, dtype))
                    arrays[name][row:row + len(feats)] = feats
                row += len(x)
                bar.update(len(x))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if row != len(stimuli):
        raise UserError(f"read {row} of {len(stimuli)} stimuli")
    return arrays


def _next_batch(batches: Iterator[list[Image.Image]], preprocess) -> torch.Tensor | None:
    batch = next(batches, None)
    return None if batch is None else preprocess(batch)
