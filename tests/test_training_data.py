"""The streamed training data: global shuffle, deterministic order, split over ranks/workers, exact
resume, random access to sha256-checked shards."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare

from latentzoo.datasets import DatasetError, RenderedDataset, iter_shard
from latentzoo.fileio import write_json_atomic
from latentzoo.latents import output_layout
from latentzoo.models.network import LatentNet
from latentzoo.rendering.writer import TarWriter
from latentzoo.training.data import (EvalStream, SampleOrder, TrainStream, decode_image, loader,
                                     normalise_images, train_normalisation)
from latentzoo.training.shards import ShardIndex, tar_members


def test_every_epoch_visits_every_sample_once_in_a_seeded_order():
    order = SampleOrder(10, seed=7)
    epoch0 = order.at(0, 10)
    assert sorted(epoch0) == list(range(10))
    assert list(order.at(10, 20)) != list(epoch0) and sorted(order.at(10, 20)) == list(range(10))
    assert list(SampleOrder(10, seed=7).at(0, 20)) == list(order.at(0, 20))
    assert list(SampleOrder(10, seed=8).at(0, 10)) != list(epoch0)
    assert list(order.at(7, 13)) == list(order.at(0, 20)[7:13])  # a window that straddles two epochs
    assert list(order.at(5, 38)) == list(np.concatenate([order.at(0, 10), order.at(10, 20), order.at(20, 30),
                                                         order.at(30, 40)])[5:38])


def _stream(ds, **kw):
    layout = output_layout("all", len(ds.categories), len(ds.identities))
    args = dict(layout=layout, normalisation=train_normalisation(ds, "all"), size=32, global_batch=8,
                seed=3, start_step=0, steps=6)
    return TrainStream(ds, **{**args, **kw})


def _collect(stream, workers=0):
    return [(step, images.clone(), {t: v.clone() for t, v in targets.items()})
            for step, images, targets in loader(stream, workers)]


def test_ranks_split_each_global_batch_and_workers_keep_step_order(tiny_dataset):
    single = _collect(_stream(tiny_dataset))
    assert [s for s, _, _ in single] == list(range(6))
    assert single[0][1].dtype == torch.uint8 and single[0][1].shape == (8, 3, 32, 32)
    ranks = [_collect(_stream(tiny_dataset, rank=r, world_size=2)) for r in range(2)]
    workers = _collect(_stream(tiny_dataset), workers=2)
    for step in range(6):
        joined = torch.cat([ranks[0][step][1], ranks[1][step][1]])
        assert torch.equal(joined, single[step][1])
        assert workers[step][0] == step and torch.equal(workers[step][1], single[step][1])
        for task, target in single[step][2].items():
            assert torch.equal(torch.cat([ranks[0][step][2][task], ranks[1][step][2][task]]), target)


def test_resuming_at_a_step_reproduces_the_remaining_batches(tiny_dataset):
    full = _collect(_stream(tiny_dataset, steps=40))  # 40 x 8 = 320 > 256 train images: crosses an epoch
    resumed = _collect(_stream(tiny_dataset, start_step=29, steps=40))
    assert [s for s, _, _ in resumed] == list(range(29, 40))
    for (s1, im1, t1), (s2, im2, t2) in zip(full[29:], resumed):
        assert s1 == s2 and torch.equal(im1, im2) and torch.equal(t1["distance"], t2["distance"])
    stream = _stream(tiny_dataset)
    assert stream.batch_digest(3) == _stream(tiny_dataset, rank=1, world_size=2).batch_digest(3)
    assert stream.batch_digest(3) != stream.batch_digest(4)


def test_targets_are_z_scored_with_train_statistics(tiny_dataset):
    train = tiny_dataset.latents("train")
    norm = train_normalisation(tiny_dataset, "distance-translation")
    assert norm.mean["z"] == pytest.approx(train["z"].mean()) and norm.std["x"] == pytest.approx(train["x"].std(ddof=0))
    stream = _stream(tiny_dataset, layout=output_layout("distance-translation"), normalisation=norm,
                     global_batch=256, steps=1)
    _, _, targets = next(iter(stream))
    # one global batch of 256 = the whole train split: z-scores have mean 0, std 1
    assert targets["distance"].mean().item() == pytest.approx(0, abs=1e-5)
    assert targets["translation"].std(0, unbiased=False).tolist() == pytest.approx([1, 1], rel=1e-4)


def test_decoding_matches_the_networks_own_preprocessing(tiny_dataset):
    image = next(tiny_dataset.samples("test")).image
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95)
    net = LatentNet.create("test_resnet", "distance", input_size=24)
    ours = normalise_images(torch.from_numpy(decode_image(buf.getvalue(), 24))[None])
    theirs = net.preprocess([Image.open(io.BytesIO(buf.getvalue()))])
    assert ours.shape == (1, 3, 24, 24)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_eval_stream_covers_the_split_once(tiny_dataset):
    keys = [k for _, _, batch in loader(EvalStream(tiny_dataset, "test", 16, 10), workers=2) for k in batch]
    assert sorted(keys) == sorted(tiny_dataset.latents("test")["key"])
    capped = [k for _, _, batch in loader(EvalStream(tiny_dataset, "test", 16, 10, max_images=25), 0) for k in batch]
    assert len(capped) == 25
    assert np.isin(capped, keys).all()


def _one_category_per_shard(src: RenderedDataset, out) -> RenderedDataset:
    """A copy of ``src`` whose train shards each hold the images of one category (in key order)."""
    shutil.copytree(src.root, out)
    for old in (out / "shards").glob("train-*.tar"):
        old.unlink()
    by_category: dict[int, list] = {}
    for key, jpg, meta in src.raw_samples("train"):
        by_category.setdefault(meta["category"], []).append((key, jpg, meta))
    meta = json.loads((out / "dataset.json").read_text())
    entries = []
    for k, category in enumerate(sorted(by_category)):
        name = f"shards/train-{k:06d}.tar"
        with open(out / name, "wb") as f:
            tar = TarWriter(f)
            for key, jpg, record in by_category[category]:
                tar.add(f"{key}.jpg", jpg)
                tar.add(f"{key}.json", json.dumps(record, sort_keys=True).encode())
            tar.close()
        entries.append({"name": name, "split": "train", "index": k, "count": len(by_category[category]),
                        "sha256": tar.sha256.hexdigest()})
    meta["shards"] = entries + src.shard_entries("test")
    write_json_atomic(out / "dataset.json", meta)
    return RenderedDataset(out)


def test_every_batch_mixes_the_whole_dataset(tiny_dataset, tmp_path):
    ds = _one_category_per_shard(tiny_dataset, tmp_path / "sorted")
    shard_categories = [{m["category"] for _, _, m in ds.read_shard(e)} for e in ds.shard_entries("train")]
    assert len(shard_categories) == 8 and all(len(c) == 1 for c in shard_categories)
    n = len(ds.categories)
    frequencies = np.bincount(ds.latents("train")["category"], minlength=n) / len(ds.latents("train"))
    stream = _stream(ds, layout=output_layout("category", n, len(ds.identities)), normalisation=None, size=16,
                     global_batch=64, steps=20)  # 20 batches = 5 epochs of 256 images
    present = frequencies > 0  # the 8 rendered categories of the library's n
    frequencies = frequencies[present]
    counts = [np.bincount(t["category"].numpy(), minlength=n)[present] for _, _, t in _collect(stream)]
    p_values = [chisquare(c, 64 * frequencies).pvalue for c in counts]
    print(f"global shuffle: mean chi-square p = {np.mean(p_values):.3f}, "
          f"{np.mean([(c > 0).sum() for c in counts]):.1f} of 8 categories per batch of 64")
    assert np.mean(p_values) > 0.01
    assert min((c > 0).sum() for c in counts) >= 6
    # the same statistic rejects batches read shard after shard (a stream that does not mix)
    sequential = [m["category"] for path in ds.shard_paths("train") for _, _, m in iter_shard(path)]
    assert np.mean([chisquare(np.bincount(sequential[i:i + 64], minlength=n)[present], 64 * frequencies).pvalue
                    for i in range(0, 256, 64)]) < 1e-6


def test_shard_index_reads_any_sample_and_refuses_changed_bytes(tiny_dataset, tmp_path):
    index = ShardIndex.build(tiny_dataset, "train")
    everything = list(tiny_dataset.raw_samples("train"))
    assert len(index) == 256 and index.read(range(256)) == everything
    picks = [200, 3, 64, 63, 3]
    assert index.read(picks) == [everything[i] for i in picks]

    shutil.copytree(tiny_dataset.root, tmp_path / "ds")
    copy = RenderedDataset(tmp_path / "ds")
    index = ShardIndex.build(copy, "train")
    shard = copy.shard_paths("train")[1]
    data = bytearray(shard.read_bytes())
    data[index.table[70, 1] + 100] ^= 0xFF  # a byte of sample 70 (second shard), after the index was built
    shard.write_bytes(bytes(data))
    assert index.read([5, 130]) == [everything[5], everything[130]]
    with pytest.raises(DatasetError, match="changed after it was verified"):
        index.read([5, 70])
    with pytest.raises(DatasetError, match="is corrupt"):
        ShardIndex.build(copy, "train")


def test_tar_member_offsets_agree_with_pythons_tarfile(tiny_dataset, tmp_path):
    for path in tiny_dataset.shard_paths():
        with tarfile.open(path) as tar:
            expected = [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
        assert list(tar_members(path.read_bytes(), path)) == expected
    # an archive from tarfile itself: a directory, a name split into the ustar prefix field
    long_dir = "d" * 120
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("sub", None), (f"{long_dir}/000000001.jpg", b"\xff\xd8" * 300), (f"{long_dir}/000000001.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.type, info.size = (tarfile.DIRTYPE, 0) if data is None else (tarfile.REGTYPE, len(data))
            tar.addfile(info, None if data is None else io.BytesIO(data))
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
    assert list(tar_members(buf.getvalue(), tmp_path / "t.tar")) == expected and len(expected) == 2
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("é" * 120 + ".jpg")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DatasetError, match="tar feature this reader does not support"):
        list(tar_members(pax.getvalue(), tmp_path / "t.tar"))
