"""The dataset writer: layout, splits, shards and latents of the dataset directory (docs/datasets.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from latentzoo.cli import main
from latentzoo.datasets import RenderedDataset, iter_shard
from latentzoo.latents import LATENTS
from latentzoo.rendering import render_dataset


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
    # the authors' balance, recorded: 256 train images over 8 categories = 32 each, 64 test = 8 each
    assert meta["variability"]["balance"] == "categories"
    assert meta["category_counts"] == {"test": {c: 8 for c in sorted(used)}, "train": {c: 32 for c in sorted(used)}}
    assert meta["format_version"] == 2 and {"qx", "qy", "qz", "qw"} <= set(df.columns)


def test_old_format_datasets_are_refused_with_one_line(tiny_dataset, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_dataset.root, old)
    meta = json.loads((old / "dataset.json").read_text())
    (old / "dataset.json").write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.raises(Exception, match=r"dataset format 1.*rot_x, rot_y, rot_z.*render it again") as info:
        RenderedDataset(old)
    assert "\n" not in str(info.value)


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


# ----------------------------------------------------------------------------- determinism, shards, resume

SMALL = dict(images=240, size=48, seed=7, shard_size=40, test_fraction=1 / 6, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    """Every non-hidden file of a dataset directory (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return render_dataset(tmp_path_factory.mktemp("ref") / "ds", **SMALL)


def test_reference_splits(reference):
    assert reference.meta["splits"] == {"train": 200, "test": 40}
    assert [s["name"] for s in reference.meta["shards"]][-1] == "shards/test-000000.tar"
    assert len(reference.meta["shards"]) == 6


def test_same_seed_same_bytes_with_two_workers(reference, tmp_path):
    again = render_dataset(tmp_path / "ds", workers=2, **SMALL)
    assert _files(again.root) == _files(reference.root)
    other = render_dataset(tmp_path / "other" / "ds", **{**SMALL, "seed": 8, "images": 40})
    assert other.meta["shards"][0]["sha256"] != reference.meta["shards"][0]["sha256"]


def test_shard_ranges_compose_to_the_full_dataset(reference, tmp_path):
    out = tmp_path / "ds"
    assert render_dataset(out, shards="0:2", **SMALL) is None
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["train-000000.tar", "train-000001.tar"]
    assert not (out / "dataset.json").exists()
    done = render_dataset(out, shards="2:", **SMALL)
    assert done is not None and _files(out) == _files(reference.root)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_render(tmp_path):
    args = ["--images", "600", "--size", "32", "--seed", "3", "--shard-size", "20", "--quiet"]
    out = tmp_path / "killed" / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "latentzoo.cli", "render", "--out", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "shards").glob("*.tar"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in (out / "shards").glob("*.tar"))
    assert proc.returncode == -signal.SIGKILL and 3 <= len(done_before) < 30, done_before
    assert not (out / "dataset.json").exists()
    assert main(["render", "--out", str(out), *args]) == 0
    reference = tmp_path / "clean" / "ds"
    assert main(["render", "--out", str(reference), *args]) == 0
    assert _files(out) == _files(reference)
    assert not list(out.rglob(".*.tmp"))  # the killed run's partial shard was cleaned up
    RenderedDataset(out).verify()


@pytest.mark.parametrize("argv, message", [
    (["--images", "10", "--library", "unicorns"], "unknown library 'unicorns'"),
    (["--images", "0"], "--images must be at least 1"),
    (["--images", "10", "--categories", "mug", "unicorn"], "unknown categories"),
    (["--images", "10", "--shards", "5:9"], "selects no shard"),
    (["--images", "10", "--shards", "x"], "--shards must look like A:B"),
    (["--images", "10", "--backgrounds", "clouds"], "unknown backgrounds"),
    (["--images", "10", "--backend", "povray"], "unknown backend"),
    (["--images", "10", "--library", "0ad"], "0ad"),
    (["--images", "10", "--models-per-category", "0"], "models per category must be at least 1"),
])
def test_bad_arguments_give_one_clear_line(argv, message, tmp_path, capsys, monkeypatch):
    from latentzoo.rendering.libraries import get_library

    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "empty-cache"))
    get_library.cache_clear()
    assert main(["render", "--out", str(tmp_path / "ds"), "--quiet", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("latentzoo render: error:") and message in err, err


def test_unwritable_output_and_changed_settings(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["render", "--out", str(blocker / "ds"), "--images", "5", "--quiet"]) == 1
    assert "cannot write to output directory" in capsys.readouterr().err
    out = str(tmp_path / "ds")
    assert main(["render", "--out", out, "--images", "5", "--size", "32", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["render", "--out", out, "--images", "5", "--size", "32", "--seed", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "holds a different render (differs in: seed)" in err and err.count("\n") == 1


def test_models_per_category_reaches_the_dataset(tmp_path):
    out = tmp_path / "two"
    assert main(["render", "--out", str(out), "--images", "40", "--size", "16", "--categories", "car", "chair",
                 "--models-per-category", "2", "--quiet"]) == 0
    ds = RenderedDataset(out)
    assert ds.meta["variability"]["models_per_category"] == 2
    latents = ds.latents()
    first_two = {i for c in ("car", "chair") for i in range(len(ds.identities))
                 if ds.identities[i] in (f"{c}_0", f"{c}_1")}
    assert set(latents["identity"]) == first_two
    assert latents["identity"].value_counts().tolist() == [10] * 4  # balanced: 9 train + 1 test image each
