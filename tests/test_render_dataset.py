"""The dataset writer: layout, splits, shards and latents of DESIGN.md's dataset directory."""

from __future__ import annotations

import json

import numpy as np

from latentzoo.datasets import RenderedDataset, iter_shard
from latentzoo.latents import LATENTS


def test_tiny_dataset_layout(tiny_dataset):
    ds = RenderedDataset(tiny_dataset.root)
    meta = ds.meta
    assert meta["splits"] == {"train": 256, "test": 64}
    assert meta["images"] == 320 and meta["backend"] == "embedded"
    assert meta["camera"] == {"fov_deg": 60.0, "width": 64, "height": 64}
    assert [s["name"] for s in meta["shards"]] == [f"shards/train-{k:06d}.tar" for k in range(4)] + ["shards/test-000000.tar"]
    ds.verify()
    df = ds.latents()
    assert list(df["key"]) == [f"{i:09d}" for i in range(320)]
    assert set(LATENTS) <= set(df.columns)
    used = {ds.categories[c] for c in df["category"]}
    assert used == set(meta["variability"]["categories"]) and len(used) == 8
    cats = np.asarray(meta["library"]["identity_category"])
    assert (cats[df["identity"]] == df["category"]).all()
    train = ds.latents("train")
    assert abs(meta["latent_stats"]["z"]["mean"] - train["z"].mean()) < 1e-9


def test_shard_samples_match_parquet(tiny_dataset):
    ds = RenderedDataset(tiny_dataset.root)
    df = ds.latents().set_index("key")
    for key, jpg, record in iter_shard(ds.shard_paths("test")[0]):
        assert jpg[:2] == b"\xff\xd8"
        for name in LATENTS:
            assert record[name] == df.loc[key, name]
    sample = next(ds.samples("train"))
    assert sample.image.size == (64, 64)
    assert json.loads((ds.root / "dataset.json").read_text())["shards"][0]["count"] == 64
