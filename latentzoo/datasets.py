"""The rendered-dataset format (docs/datasets.md): paths, metadata and reading.

A dataset directory holds::

    dataset.json              metadata (see below)
    shards/{split}-{%06d}.tar WebDataset shards: <key>.jpg + <key>.json per sample
    latents.parquet           one row per image: key, split, shard, x, y, z, rot_x, rot_y, rot_z,
                              category, identity, + backend extras (qx, qy, qz, qw: the camera-frame
                              rotation quaternion; scene, background, scale, ...)

``dataset.json`` keys: ``name, format_version, backend, seed, images, splits {split: count},
shard_size, camera {fov_deg, width, height}, library {name, categories, identities,
identity_category}, variability {categories, centered, pose, balance}, category_counts {split:
{category: images}}, latent_stats {latent: {mean, std,
min, max}} (train split), shards [{name, split, index, start, stop, count, sha256}],
code_version``. Sample keys are the global image index as ``%09d``; image ``i`` is a pure
function of ``(seed, i)``.

Integrity: every read of a shard through :class:`RenderedDataset` (training, evaluation, analysis,
benchmarks, contact sheets) checks the shard's sha256 against ``dataset.json`` and refuses a
truncated or tampered shard with one line (reading a shard whole to hash it costs no more than
streaming it: benchmarks/integrity.py); :meth:`RenderedDataset.verify` checks every shard at once, and rerunning the ``latentzoo
render`` command that made the dataset re-renders corrupt shards. Writing lives in :mod:`latentzoo.rendering.writer`; this module only
defines the layout and reads it, so training and analysis never depend on the renderer.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from latentzoo.errors import UserError
from latentzoo.fileio import sha256_file

#: 2: rotation latents are the authors' ``rot_x, rot_y, rot_z`` (1 had latentzoo's own ``rxy, ryz, rzx``).
FORMAT_VERSION = 2
SPLITS = ("train", "test")
META_FILE = "dataset.json"
LATENTS_FILE = "latents.parquet"
SHARD_DIR = "shards"


def shard_name(split: str, index: int) -> str:
    """Relative path of shard ``index`` of ``split``: ``shards/train-000003.tar``."""
    return f"{SHARD_DIR}/{split}-{index:06d}.tar"


def sample_key(index: int) -> str:
    """Sample key of global image ``index``."""
    return f"{index:09d}"


class DatasetError(UserError):
    """A dataset directory is missing, incomplete or corrupt (the message says which)."""


@dataclass(frozen=True)
class Sample:
    """One decoded sample of a shard."""

    key: str
    image: Image.Image
    latents: dict


class RenderedDataset:
    """Read access to a rendered dataset directory.

    >>> ds = RenderedDataset("data/quick")            # doctest: +SKIP
    >>> ds.latents("test")[["x", "y", "z"]].describe() # doctest: +SKIP
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / META_FILE
        if not meta_path.is_file():
            raise DatasetError(f"no dataset at {self.root}: {META_FILE} is missing "
                               f"(render one with `latentzoo render --out {self.root}`)")
        self.meta: dict = json.loads(meta_path.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"{self.root} has dataset format {self.meta.get('format_version')}, this latentzoo reads "
                               f"format {FORMAT_VERSION} (rotation latents rot_x, rot_y, rot_z): render it again "
                               f"with this version (`latentzoo render --out NEW_DIR ...`)")
        self._latents: pd.DataFrame | None = None

    @property
    def categories(self) -> list[str]:
        return list(self.meta["library"]["categories"])

    @property
    def identities(self) -> list[str]:
        return list(self.meta["library"]["identities"])

    @property
    def camera(self) -> dict:
        return dict(self.meta["camera"])

    def shard_entries(self, split: str | None = None) -> list[dict]:
        """Shard records of dataset.json (optionally of one split), in index order."""
        return [s for s in self.meta["shards"] if split is None or s["split"] == split]

    def shard_paths(self, split: str | None = None) -> list[Path]:
        """Absolute paths of the shards of ``split`` (all splits when None)."""
        return [self.root / s["name"] for s in self.shard_entries(split)]

    def latents(self, split: str | None = None) -> pd.DataFrame:
        """latents.parquet as a DataFrame (one split, or all), ordered by key."""
        if self._latents is None:
            path = self.root / LATENTS_FILE
            if not path.is_file():
                raise DatasetError(f"{path} is missing: the render did not finish "
                                   f"(rerun the same `latentzoo render` command to resume)")
            self._latents = pd.read_parquet(path).sort_values("key").reset_index(drop=True)
        df = self._latents
        return df if split is None else df[df["split"] == split].reset_index(drop=True)

    def verify(self) -> None:
        """Check that every shard exists and matches its recorded sha256; raise DatasetError."""
        for s in self.shard_entries():
            path = self.root / s["name"]
            if not path.is_file():
                raise DatasetError(f"shard {path} is missing")
            if sha256_file(path) != s["sha256"]:
                raise DatasetError(f"shard {path} is corrupt (sha256 mismatch)")

    def read_shard(self, entry: dict) -> Iterator[tuple[str, bytes, dict]]:
        """:func:`iter_shard` of one ``dataset.json`` shard record, refused unless its sha256 matches."""
        return iter_shard(self.root / entry["name"], entry["sha256"])

    def raw_samples(self, split: str | None = None) -> Iterator[tuple[str, bytes, dict]]:
        """``(key, jpeg bytes, latents dict)`` of every sample of ``split`` (all when None), in shard
        order, each shard verified against its sha256."""
        for entry in self.shard_entries(split):
            yield from self.read_shard(entry)

    def samples(self, split: str, keys: Sequence[str] | None = None) -> Iterator[Sample]:
        """Iterate decoded samples of ``split`` in shard order (only ``keys`` when given)."""
        wanted = None if keys is None else set(keys)
        for key, jpg, meta in self.raw_samples(split):
            if wanted is None or key in wanted:
                yield Sample(key, Image.open(io.BytesIO(jpg)).convert("RGB"), meta)

    def images(self, keys: Sequence[str]) -> list[Image.Image]:
        """Decoded images for ``keys`` (any split), in the order given."""
        df = self.latents().set_index("key")
        missing = [k for k in keys if k not in df.index]
        if missing:
            raise DatasetError(f"{len(missing)} keys not in {self.root} (first: {missing[0]})")
        wanted, found = set(keys), {}
        entries = {s["name"]: s for s in self.shard_entries()}
        for shard in dict.fromkeys(df.loc[list(keys), "shard"]):
            for key, jpg, _ in self.read_shard(entries[shard]):
                if key in wanted:
                    found[key] = Image.open(io.BytesIO(jpg)).convert("RGB")
        return [found[k] for k in keys]


def iter_shard(path: str | Path, sha256: str | None = None) -> Iterator[tuple[str, bytes, dict]]:
    """Yield ``(key, jpeg bytes, latents dict)`` from one WebDataset tar shard.

    With ``sha256`` the shard is read whole and refused (DatasetError) unless it hashes to it; a
    missing or unreadable shard is a DatasetError too.
    """
    try:
        if sha256 is None:
            tar = tarfile.open(path, "r")
        else:
            tar = tarfile.open(fileobj=io.BytesIO(read_shard_bytes(path, sha256)), mode="r")
        pending: dict[str, dict] = {}
        with tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition("/")[2].partition(".")
                entry = pending.setdefault(key, {})
                entry[ext] = tar.extractfile(member).read()
                if "jpg" in entry and "json" in entry:
                    del pending[key]
                    yield key, entry["jpg"], json.loads(entry["json"])
    except FileNotFoundError:
        raise DatasetError(f"shard {path} is missing; rerun the `latentzoo render` command that made it") from None
    except (tarfile.TarError, EOFError, json.JSONDecodeError) as e:
        raise DatasetError(f"shard {path} is not a readable WebDataset tar ({e}); delete it and rerun "
                           "the `latentzoo render` command that made it") from None


def read_shard_bytes(path: str | Path, sha256: str) -> bytes:
    """The bytes of a shard, refused (DatasetError) when missing or not hashing to ``sha256``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"shard {path} is missing; rerun the `latentzoo render` command that made it") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetError(f"shard {path} is corrupt (truncated or modified: its sha256 differs from "
                           f"{META_FILE}); rerun the `latentzoo render` command that made it to re-render it")
    return data


def latent_array(df: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Columns of a latents DataFrame as {name: numpy array}."""
    return {n: df[n].to_numpy() for n in names}
