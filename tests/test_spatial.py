"""Spatial-latent Brain-Score benchmarks: readout known answers, and scoring an in-tree Brain-Score
model (alexnet, random weights placed in torch's cache) and a zoo model through `brainscore score`."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
from latentzoo.cli import brainscore_main  # noqa: E402
from latentzoo.spatial import ideal_features, readout_score, task_targets  # noqa: E402

from zoo_helpers import TINY_MODEL as ZOO, TINY_REGISTRY as ZOO_REGISTRY  # noqa: E402


def _latents(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(dict(x=rng.normal(size=n), y=rng.normal(size=n), z=rng.uniform(1, 4, n),
                             rot_x=rng.uniform(-3, 3, n), rot_y=rng.uniform(-3, 3, n),
                             rot_z=rng.uniform(-1.5, 1.5, n), category=rng.integers(0, 6, n)))


def test_readout_recovers_linear_codes_and_rejects_noise():
    rng = np.random.default_rng(0)
    lat = _latents(300, rng)
    mixed = ideal_features(lat) @ rng.normal(size=(ideal_features(lat).shape[1], 64))  # a linear code
    noise = rng.normal(size=(300, 64))
    for task in ("Distance", "Translation", "Rotation", "Category"):
        cls = task == "Category"
        assert readout_score(ideal_features(lat), task_targets(task, lat), cls) > 0.99
        assert readout_score(mixed, task_targets(task, lat), cls) > 0.95
        assert readout_score(noise, task_targets(task, lat), cls) < 0.1


def test_spatial_benchmarks_are_registered_with_brainscore():
    import latentzoo.brainscore  # noqa: F401
    from brainscore_vision import benchmark_registry

    assert {"latentzoo.Distance-IT", "latentzoo.Category-V4"} <= set(benchmark_registry)
    assert benchmark_registry["latentzoo.Rotation-IT"]().identifier == "latentzoo.Rotation-IT"


@pytest.mark.slow
def test_brainscore_score_in_tree_and_zoo_models_on_spatial_benchmarks(tmp_path, monkeypatch, capsys):
    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME", "LATENTZOO_CACHE", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    (tmp_path / "registry.yaml").write_text(ZOO_REGISTRY)
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(tmp_path / "registry.yaml"))
    # Brain-Score's in-tree `alexnet` plugin asks torchvision for ImageNet weights; a file already in
    # torch's cache is used without a download, so random weights stand in for them offline.
    url = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), checkpoints / url.rsplit("/", 1)[1])
    benchmarks = ["latentzoo.Distance-IT", "latentzoo.Category-IT"]
    for model in ("alexnet", ZOO):
        out = tmp_path / f"scores-{model}"
        assert brainscore_main(["score", "--model", model, "--benchmark", *benchmarks, "--out", str(out)]) == 0
        table = pd.read_csv(out / "scores.csv")
        assert list(table["benchmark"]) == benchmarks and set(table["region"]) == {"IT"}
        assert (table["ceiling"] > 0.99).all()  # ground-truth latents are read out almost perfectly
        assert table["score"].between(0, 1).all()
        np.testing.assert_allclose(table["score"], np.clip(table["raw"] / table["ceiling"], 0, 1), rtol=1e-6)
    assert "latentzoo.Distance-IT" in capsys.readouterr().out
