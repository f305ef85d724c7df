"""Write a dataset directory (docs/datasets.md): sharded rendering, parallel workers, resume, finalisation.

The index range ``[0, images)`` is split into train images ``[0, n_train)`` and test images
``[n_train, images)``; each split into shards of ``shard_size`` consecutive indices. The global
shard list (train shards, then test shards) is what ``shards=(a, b)`` slices, so independent
machines render disjoint ranges with no coordinator. A shard is written to a temporary file and
renamed into place, so a shard on disk is always complete: a rerun renders only missing shards.
When every shard exists, ``latents.parquet`` and ``dataset.json`` are (re)built from the shards on
disk. ``render.json`` records the settings; a rerun with different settings is refused. A rerun of
a finished render re-renders shards whose sha256 no longer matches ``dataset.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from latentzoo.datasets import (FORMAT_VERSION, LATENTS_FILE, META_FILE, SHARD_DIR, RenderedDataset, iter_shard,
                                sample_key, shard_name)
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, sha256_file, write_json_atomic
from latentzoo.latents import ANGLE_LATENTS, LATENTS, POSITION_LATENTS
from latentzoo.rendering import Backend, Rendered, RenderSettings, generator_record, make_backend
from latentzoo.rendering.libraries import get_library
from latentzoo.rendering.sampler import DEFAULT_FOV_DEG, SamplerConfig, SceneSampler, Variability

PLAN_FILE = "render.json"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ShardSpec:
    """One shard: global image indices ``[start, stop)`` of ``split``, shard number ``index`` in it."""

    split: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


def plan_shards(images: int, test_images: int, shard_size: int) -> list[ShardSpec]:
    """All shards of a dataset: train shards over ``[0, images - test_images)``, then test shards."""
    n_train = images - test_images
    specs = []
    for split, lo, hi in (("train", 0, n_train), ("test", n_train, images)):
        for k, start in enumerate(range(lo, hi, shard_size)):
            specs.append(ShardSpec(split, k, start, min(start + shard_size, hi)))
    return specs


def parse_shard_range(text: str | Sequence[int] | None, n_shards: int) -> tuple[int, int]:
    """``"a:b"`` (either side optional, Python slice semantics, no step) -> ``(a, b)`` within range."""
    if text is None:
        return 0, n_shards
    if isinstance(text, str):
        lo, sep, hi = text.partition(":")
        try:
            a = int(lo) if lo.strip() else 0
            b = int(hi) if hi.strip() else n_shards
        except ValueError:
            sep = ""
        if not sep:
            raise UserError(f"--shards must look like A:B (shard indices, e.g. 0:8), got {text!r}")
    else:
        a, b = (int(v) for v in text)
    a, b = max(a, 0), min(b, n_shards)
    if a >= b:
        raise UserError(f"--shards {text} selects no shard; this dataset has shards 0:{n_shards}")
    return a, b


# ----------------------------------------------------------------------------- workers

@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to render shards (picklable)."""

    out: str
    backend: str
    settings: RenderSettings
    seed: int
    variability: Variability
    jpeg_quality: int
    blocks: tuple[int, ...]  # first indices of the balanced blocks: (0, n_train)


_worker_state: dict = {}


def _state(job: _Job) -> tuple[Backend, SceneSampler]:
    """This process's backend and sampler for ``job`` (built once per process; the output
    directory is not part of the key, so a backend is reused across datasets)."""
    key = (job.backend, job.settings, job.seed, job.variability, job.blocks)
    if _worker_state.get("key") != key:
        if "backend" in _worker_state:
            _worker_state["backend"].close()
        backend = make_backend(job.backend, job.settings)
        library = get_library(job.settings.library)
        config = SamplerConfig(fov_deg=job.settings.fov_deg, n_backgrounds=backend.background_count)
        sampler = SceneSampler(library.identity_category, library.categories, job.seed, job.variability, config,
                               job.blocks)
        _worker_state.update(key=key, backend=backend, sampler=sampler)
    return _worker_state["backend"], _worker_state["sampler"]


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an RGB uint8 image (deterministic for a given Pillow)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class TarWriter:
    """A minimal, fast USTAR writer for WebDataset shards (fixed mode/owner/mtime, so the bytes
    depend only on the names and contents) that hashes what it writes."""

    def __init__(self, file: BinaryIO):
        self.file, self.sha256 = file, hashlib.sha256()

    def _write(self, data: bytes) -> None:
        self.file.write(data)
        self.sha256.update(data)

    def add(self, name: str, data: bytes) -> None:
        """Append one regular file ``name`` (ASCII, < 100 bytes) holding ``data``."""
        header = bytearray(512)
        header[0:len(name)] = name.encode("ascii")
        header[100:148] = b"0000644\0" + b"0000000\0" * 2 + b"%011o\0" % len(data) + b"00000000000\0"
        header[148:156] = b" " * 8
        header[156:157] = b"0"
        header[257:265] = b"ustar\x0000"
        header[148:156] = b"%06o\0 " % sum(header)
        self._write(bytes(header))
        self._write(data + b"\0" * (-len(data) % 512))

    def close(self) -> None:
        """Write the end-of-archive marker (two zero blocks)."""
        self._write(b"\0" * 1024)


@dataclass
class ShardRecords:
    """What finalisation needs from a shard: its sha256 and its samples' JSON records."""

    sha256: str
    records: list[dict]


def _write_sample(tar: TarWriter, record: dict, rendered: Rendered, quality: int) -> None:
    tar.add(f"{record['key']}.jpg", rendered.jpeg if rendered.jpeg is not None else encode_jpeg(rendered.rgb, quality))
    tar.add(f"{record['key']}.json", json.dumps(record, sort_keys=True).encode())


def render_shard(job: _Job, spec: ShardSpec) -> tuple[ShardSpec, ShardRecords]:
    """Render one shard and move it into place atomically; returns its records.

    A helper thread encodes and writes image ``i`` while image ``i + 1`` is drawn.
    """
    backend, sampler = _state(job)
    records: list[dict] = []
    with atomic_path(Path(job.out) / spec.name) as tmp:
        with open(tmp, "wb") as f, ThreadPoolExecutor(1) as encoder:
            tar, pending = TarWriter(f), None
            for index in range(spec.start, spec.stop):
                rendered = backend.render(sampler(index))
                records.append({"key": sample_key(index), **rendered.latents, **rendered.extras})
                if pending is not None:
                    pending.result()
                pending = encoder.submit(_write_sample, tar, records[-1], rendered, job.jpeg_quality)
            pending.result()
            tar.close()
    return spec, ShardRecords(tar.sha256.hexdigest(), records)


def read_shard_records(path: Path) -> ShardRecords:
    """:class:`ShardRecords` of a shard on disk."""
    return ShardRecords(sha256_file(path), [record for _, _, record in iter_shard(path)])


def _render_in_process(job: _Job, specs: list[ShardSpec]) -> Iterator[tuple[ShardSpec, ShardRecords]]:
    for spec in specs:
        yield render_shard(job, spec)


def _render_with_pool(job: _Job, specs: list[ShardSpec], workers: int) -> Iterator[tuple[ShardSpec, ShardRecords]]:
    ctx = multiprocessing.get_context("spawn")  # each worker opens its own EGL context
    with ctx.Pool(workers) as pool:
        yield from pool.imap_unordered(_render_shard_args, [(job, s) for s in specs])


def _render_shard_args(args: tuple[_Job, ShardSpec]) -> tuple[ShardSpec, ShardRecords]:
    return render_shard(*args)


# ----------------------------------------------------------------------------- finalisation

def _latent_stats(df: pd.DataFrame) -> dict:
    cols = [c for c in (*POSITION_LATENTS, *ANGLE_LATENTS) if c in df]
    return {c: {"mean": float(df[c].mean()), "std": float(df[c].std(ddof=0)),
                "min": float(df[c].min()), "max": float(df[c].max())} for c in cols}


def finalise(out: Path, plan: dict, specs: list[ShardSpec],
             known: dict[str, ShardRecords] | None = None) -> RenderedDataset:
    """Build latents.parquet and dataset.json from the shards on disk (all must exist).

    ``known`` holds the records of shards this process has just written (by shard name), so
    only shards from earlier runs are read back.
    """
    known = known or {}
    rows, entries = [], []
    for spec in specs:
        path = out / spec.name
        shard = known.get(spec.name) or read_shard_records(path)
        keys = [r["key"] for r in shard.records]
        if keys != [sample_key(i) for i in range(spec.start, spec.stop)]:
            raise UserError(f"shard {path} does not hold images {spec.start}..{spec.stop - 1}; delete it and rerun")
        rows += [{**r, "split": spec.split, "shard": spec.name} for r in shard.records]
        entries.append({"name": spec.name, "split": spec.split, "index": spec.index, "start": spec.start,
                        "stop": spec.stop, "count": spec.stop - spec.start, "sha256": shard.sha256})
    df = pd.DataFrame(rows)
    front = ["key", "split", "shard", *LATENTS]
    df = df[front + sorted(c for c in df.columns if c not in front)].sort_values("key").reset_index(drop=True)
    with atomic_path(out / LATENTS_FILE) as tmp:
        df.to_parquet(tmp, index=False)
    train = df[df["split"] == "train"]
    library = get_library(plan["settings"]["library"])
    meta = {
        "name": plan["name"], "format_version": FORMAT_VERSION, "backend": plan["backend"], "seed": plan["seed"],
        "images": plan["images"], "splits": {s: int((df["split"] == s).sum()) for s in ("train", "test")},
        "shard_size": plan["shard_size"],
        "camera": {"fov_deg": plan["settings"]["fov_deg"], "width": plan["settings"]["size"],
                   "height": plan["settings"]["size"]},
        "library": {"name": library.name, "categories": list(library.categories),
                    "identities": list(library.identities),
                    "identity_category": [int(c) for c in library.identity_category],
                    "attribution": library.attribution},
        "variability": plan["variability"],
        "category_counts": {split: {library.categories[c]: int(n) for c, n in
                                    sorted(part["category"].value_counts().items())}
                            for split, part in df.groupby("split")},
        "latent_stats": _latent_stats(train if len(train) else df),
        "shards": entries,
        "render": plan,
        "code_version": _code_version(),
    }
    generator = generator_record(plan["backend"], plan["settings"])
    if generator:
        meta["generator"] = generator
    write_json_atomic(out / META_FILE, meta)
    return RenderedDataset(out)


def _code_version() -> str:
    from importlib.metadata import version

    return version("latentzoo")


# ----------------------------------------------------------------------------- entry point

def _check_writable(out: Path) -> None:
    try:
        (out / "shards").mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to output directory {out}: {e.strerror or e}") from e


def _check_plan(out: Path, plan: dict) -> None:
    """Refuse to mix two different renders in one directory; record the plan otherwise."""
    path = out / PLAN_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise UserError(f"{out} holds a different render (differs in: {', '.join(diff)}); "
                            f"use another --out or delete it")
    else:
        write_json_atomic(path, plan)


def _drop_corrupt_shards(out: Path, specs: Sequence[ShardSpec]) -> None:
    """Delete shards whose bytes no longer match the sha256 in dataset.json (truncated or modified
    since the render finished), so this run renders them again (identically: rendering is deterministic)."""
    meta = out / META_FILE
    recorded = {s["name"]: s["sha256"] for s in json.loads(meta.read_text())["shards"]} if meta.is_file() else {}
    for spec in specs:
        path = out / spec.name
        if spec.name in recorded and path.is_file() and sha256_file(path) != recorded[spec.name]:
            warnings.warn(f"{path} is corrupt (sha256 differs from {META_FILE}); rendering it again", stacklevel=3)
            path.unlink()


def render_dataset(out: str | os.PathLike, images: int, size: int = 64, seed: int = 0,
                   library: str = "procedural", backend: str = "embedded", backgrounds: str = "procedural",
                   categories: Sequence[str] | None = None, centered: bool = False, pose: str = "face-camera",
                   balance: str = "categories", models_per_category: int | None = None, workers: int = 1,
                   shards: str | Sequence[int] | None = None, shard_size: int = 1000,
                   test_fraction: float = 0.1, msaa: int = 4, fov_deg: float = DEFAULT_FOV_DEG,
                   jpeg_quality: int = JPEG_QUALITY, name: str | None = None,
                   options: dict | None = None, progress: bool = True) -> RenderedDataset | None:
    """Render ``images`` labelled images into the dataset directory ``out`` (resuming if present).

    Returns the finished :class:`~latentzoo.datasets.RenderedDataset`, or None when ``shards``
    selected only part of the shards and others are still missing (render them, then rerun
    without ``shards`` or let the last part finish to finalise).
    """
    out = Path(out)
    if images < 1:
        raise UserError(f"--images must be at least 1, got {images}")
    if size < 8:
        raise UserError(f"--size must be at least 8 pixels, got {size}")
    if workers < 1 or shard_size < 1:
        raise UserError("--workers and --shard-size must be at least 1")
    if not 0 <= test_fraction < 1:
        raise UserError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    lib = get_library(library)
    variability = Variability(tuple(categories) if categories else None, bool(centered), pose, balance,
                              models_per_category)
    if backend == "tdw" and pose != "face-camera":
        raise UserError("the tdw backend poses objects the paper's way: use --pose face-camera")
    try:
        SceneSampler(lib.identity_category, lib.categories, seed, variability)
    except ValueError as e:
        raise UserError(str(e)) from e
    settings = RenderSettings(size=int(size), fov_deg=float(fov_deg), library=library, backgrounds=backgrounds,
                              msaa=int(msaa), options=tuple(sorted((options or {}).items())))
    test_images = int(round(images * test_fraction))
    specs = plan_shards(images, test_images, shard_size)
    a, b = parse_shard_range(shards, len(specs))
    plan = {"name": name or out.resolve().name, "backend": backend, "seed": int(seed), "images": int(images),
            "test_images": test_images, "shard_size": int(shard_size), "jpeg_quality": int(jpeg_quality),
            "variability": variability.to_dict(), "settings": settings.to_dict()}
    _check_writable(out)
    _check_plan(out, plan)
    _drop_corrupt_shards(out, specs[a:b])
    todo = [s for s in specs[a:b] if not (out / s.name).is_file()]
    job = _Job(str(out), backend, settings, int(seed), variability, int(jpeg_quality), (0, images - test_images))
    known: dict[str, ShardRecords] = {}
    if todo:
        from tqdm import tqdm

        total = sum(s.stop - s.start for s in specs[a:b])
        done = total - sum(s.stop - s.start for s in todo)
        if workers == 1:
            _state(job)  # open the backend before the progress bar, so its errors come first
        run = _render_in_process(job, todo) if workers == 1 else _render_with_pool(job, todo, min(workers, len(todo)))
        with tqdm(total=total, initial=done, unit="img", disable=not progress, desc=f"render {out.name}") as bar:
            for spec, shard in run:
                known[spec.name] = shard
                bar.update(spec.stop - spec.start)
    if all((out / s.name).is_file() for s in specs):
        for stale in (out / SHARD_DIR).glob(".*.tmp"):  # left by killed runs; every shard is complete now
            stale.unlink(missing_ok=True)
        return finalise(out, plan, specs, known)
    return None
