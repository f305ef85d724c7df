"""Activation extraction: hooks keep the block output, pooling/projection shapes, stimuli sources, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from latentzoo.analysis.activations import Stimuli, extract
from latentzoo.errors import UserError
from latentzoo.models.network import LatentNet


@pytest.fixture(scope="module")
def net():
    return LatentNet.create("r18", "translation", seed=0, input_size=32)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    for i in range(10):
        path = root / ("sub" if i % 3 == 0 else ".") / f"im{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return root


def _block_outputs(net, images):
    """layer1.0's output (after its second relu call) computed by hand."""
    net.eval()
    with torch.no_grad():
        x = net.preprocess(images)
        return net.layer1[0](net.maxpool(net.relu(net.bn1(net.conv1(x))))).numpy()


def test_hook_keeps_last_call_of_shared_relu(net, folder):
    stim = Stimuli.from_folder(folder)
    images = next(stim.batches(len(stim)))
    block = _block_outputs(net, images)
    full = extract(net, stim, ["layer1.0.relu"], pooling="none", batch_size=4, progress=False)["layer1.0.relu"]
    np.testing.assert_allclose(full, block.reshape(len(block), -1), atol=1e-5)
    net.train()
    pooled = extract(net, stim, ["layer1.0.relu", "avgpool", "fc"], batch_size=3, progress=False)
    np.testing.assert_allclose(pooled["layer1.0.relu"], block.mean((2, 3)), atol=1e-5)
    assert pooled["avgpool"].shape == (10, 512) and pooled["fc"].shape == (10, 2)
    assert net.training  # training mode restored


def test_spatial_pooling_and_random_projection_shapes(net, folder):
    stim = Stimuli.from_folder(folder)
    acts = extract(net, stim, ["layer1.0.relu", "fc"], pooling=2, progress=False)
    assert acts["layer1.0.relu"].shape == (10, 64 * 4)
    proj = extract(net, stim, ["layer1.0.relu", "fc"], pooling="none", projection=100, progress=False)
    assert proj["layer1.0.relu"].shape == (10, 100) and proj["fc"].shape == (10, 2)  # narrow layers kept
    again = extract(net, stim, ["layer1.0.relu"], pooling="none", projection=100, batch_size=7, progress=False)
    np.testing.assert_allclose(again["layer1.0.relu"], proj["layer1.0.relu"], rtol=1e-4, atol=1e-4)
    full = extract(net, stim, ["layer1.0.relu"], pooling="none", progress=False)["layer1.0.relu"]
    d_full = np.linalg.norm(full[0] - full[1])
    d_proj = np.linalg.norm(proj["layer1.0.relu"][0] - proj["layer1.0.relu"][1])
    assert d_proj == pytest.approx(d_full, rel=0.35)  # Johnson-Lindenstrauss: distances roughly kept
    with pytest.raises(UserError, match="pooling"):
        extract(net, stim, ["fc"], pooling="max")


def test_folder_stimuli_order_and_non_images_refused(folder):
    stim = Stimuli.from_folder(folder)
    assert stim.ids[:2] == ["im01.png", "im02.png"] and stim.ids[-1] == "sub/im09.png"
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="notes.txt is not an image"):
        Stimuli.from_folder(folder)
    with pytest.raises(UserError, match="does not exist"):
        Stimuli.from_folder(folder / "nope")


def test_dataset_stimuli_follow_key_order(tiny_dataset):
    test_keys = tiny_dataset.latents("test")["key"].tolist()
    stim = Stimuli.from_dataset(tiny_dataset.root, "test", n=10)
    assert stim.ids == test_keys[:10]
    images = [im for batch in stim.batches(4) for im in batch]
    expected = tiny_dataset.images(test_keys[:10])
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, expected))
    picked = Stimuli.from_dataset(tiny_dataset.root, "test", keys=[test_keys[5], test_keys[2]])
    assert picked.ids == [test_keys[2], test_keys[5]]
    assert picked.identifier != stim.identifier
    with pytest.raises(UserError, match="not in split"):
        Stimuli.from_dataset(tiny_dataset.root, "test", keys=["nonexistent"])


def test_cache_reuses_layers_and_computes_only_missing_ones(net, folder, tmp_path):
    stim = Stimuli.from_folder(folder)
    calls = []
    handle = net.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        first = extract(net, stim, ["layer2.0.relu"], cache_dir=tmp_path / "c", model_id="n", progress=False)
        assert len(calls) == 1 and isinstance(first["layer2.0.relu"], np.memmap)
        extract(net, stim, ["layer2.0.relu"], cache_dir=tmp_path / "c", model_id="n", progress=False)
        assert len(calls) == 1  # all cached: no forward pass
        both = extract(net, stim, ["layer2.0.relu", "fc"], cache_dir=tmp_path / "c", model_id="n",
                       batch_size=5, progress=False)
        assert len(calls) == 3  # one pass (two batches) for the missing layer only
        np.testing.assert_array_equal(both["layer2.0.relu"], first["layer2.0.relu"])
        other = LatentNet.create("r18", "translation", seed=1, input_size=32)
        extract(other, stim, ["fc"], cache_dir=tmp_path / "c", model_id="n", progress=False)
        assert len(list((tmp_path / "c").iterdir())) == 2  # different weights, different key
        half = extract(net, stim, ["fc"], dtype=np.float16, cache_dir=tmp_path / "c", model_id="n", progress=False)
        assert half["fc"].dtype == np.float16
    finally:
        handle.remove()


def test_interrupted_extraction_leaves_no_cache_file(net, folder, tmp_path):
    stim = Stimuli.from_folder(folder)
    good = stim.batches

    def failing(batch_size):
        it = good(batch_size)
        yield next(it)
        raise KeyboardInterrupt

    broken = Stimuli(stim.ids, stim.identifier, failing)
    with pytest.raises(KeyboardInterrupt):
        extract(net, broken, ["fc"], batch_size=4, cache_dir=tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").rglob("*.npy")) and not list((tmp_path / "c").rglob("*.tmp"))
    acts = extract(net, stim, ["fc"], batch_size=4, cache_dir=tmp_path / "c", progress=False)
    assert acts["fc"].shape == (10, 2)


def test_unknown_layer_is_a_user_error(net, folder):
    with pytest.raises(UserError, match="layer 'layer9.relu' is not in LatentNet"):
        extract(net, Stimuli.from_folder(folder), ["layer9.relu"])
