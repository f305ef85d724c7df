"""Rendered datasets are standard WebDataset shards: `webdataset` and Hugging Face `datasets` read
the same images and latents as latentzoo's own reader (and as latents.parquet)."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from latentzoo.datasets import iter_shard
from latentzoo.latents import ANGLE_LATENTS, LATENTS


def _ours(ds, split: str) -> dict[str, tuple[np.ndarray, dict]]:
    """latentzoo's own sha256-checked reader: {key: (RGB pixels, latents)}."""
    return {key: (np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")), latents)
            for entry in ds.shard_entries(split)
            for key, jpeg, latents in iter_shard(ds.root / entry["name"], entry["sha256"])}


def test_webdataset_reads_the_same_samples(tiny_dataset):
    import webdataset as wds

    ours = _ours(tiny_dataset, "train")
    urls = [str(p) for p in tiny_dataset.shard_paths("train")]
    theirs = {s["__key__"]: (np.asarray(Image.open(io.BytesIO(s["jpg"])).convert("RGB")), json.loads(s["json"]))
              for s in wds.WebDataset(urls, shardshuffle=False)}
    assert list(theirs) == list(ours) and len(ours) == 256
    for key, (image, latents) in ours.items():
        assert np.array_equal(theirs[key][0], image)
        assert theirs[key][1] == latents
    table = tiny_dataset.latents("train").set_index("key")
    for name in LATENTS:
        np.testing.assert_array_equal(table[name].to_numpy(), [theirs[k][1][name] for k in table.index])


def test_hugging_face_datasets_reads_the_same_samples(tiny_dataset, tmp_path):
    from datasets import load_dataset

    files = [str(p) for p in tiny_dataset.shard_paths("test")]
    hf = load_dataset("webdataset", data_files={"test": files}, split="test", cache_dir=str(tmp_path))
    ours = _ours(tiny_dataset, "test")
    assert hf.num_rows == len(ours) == 64
    for row in hf:
        image, latents = ours[row["__key__"]]
        assert np.array_equal(np.asarray(row["jpg"].convert("RGB")), image)
        for name in ("x", "y", "z", *ANGLE_LATENTS):
            assert row["json"][name] == latents[name]
        assert row["json"]["category"] == latents["category"]
