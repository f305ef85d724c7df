"""The streamed training data: deterministic order, split over ranks/workers, exact resume."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from latentzoo.latents import output_layout
from latentzoo.models.network import LatentNet
from latentzoo.training.data import (EvalStream, SampleOrder, TrainStream, decode_image, loader,
                                     normalise_images, train_normalisation)


def test_every_epoch_visits_every_sample_once_in_a_seeded_order():
    order = SampleOrder([3, 5, 2], seed=7)
    epoch0 = order.at(0, 10)
    assert sorted(epoch0) == sorted((s, m) for s, n in enumerate([3, 5, 2]) for m in range(n))
    assert order.at(10, 20) != epoch0 and sorted(order.at(10, 20)) == sorted(epoch0)
    assert SampleOrder([3, 5, 2], seed=7).at(0, 20) == order.at(0, 20)
    assert SampleOrder([3, 5, 2], seed=8).at(0, 10) != epoch0
    # samples of one shard stay together within an epoch (streaming: one shard in memory)
    shards = [s for s, _ in epoch0]
    assert sum(a != b for a, b in zip(shards, shards[1:])) == 2


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
