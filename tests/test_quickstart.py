"""The quickstart end to end at a tiny scale: render, train, register, score, analyze, report; rerun resumes."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
from latentzoo.cli import brainscore_main  # noqa: E402
from latentzoo.errors import UserError  # noqa: E402
from latentzoo.quickstart import OBJECTIVES, QuickstartConfig, model_id, run_quickstart  # noqa: E402
from latentzoo.registry import load_registry, shipped_registry_path  # noqa: E402
from latentzoo.weights import from_pretrained  # noqa: E402

SECTIONS = ("Run", "Dataset", "Training", "Spatial-latent benchmarks", "Representational similarity",
            "Linear decoding", "Brain alignment vs task performance", "Layer assignment")


@pytest.mark.slow
def test_quickstart_runs_every_step_writes_one_report_and_resumes(tmp_path, monkeypatch, capsys):
    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME", "LATENTZOO_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(tmp_path / "absent.yaml"))
    cfg = QuickstartConfig(out=str(tmp_path / "qs"), images=200, render_size=32, size=32, steps=4,
                           batch_size=16, benchmark_images=120, progress=False)
    index = run_quickstart(cfg)
    out = tmp_path / "qs"
    report = out / "report"
    assert index == report / "index.html"
    page = index.read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == list(SECTIONS)
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"contact_sheet.png", "training_curves.png", "spatial_scores.png", "cka_heatmaps.png", "mds.png",
            "decoding.png", "alignment.png"} <= set(images)
    assert all((report / name).stat().st_size > 1000 for name in images)

    # every model trained its steps, on the paper's losses, and was scored on all 16 benchmarks
    for objective in OBJECTIVES:
        log = pd.read_csv(out / "models" / objective / "train" / "log.csv")
        assert list(log["step"]) == [1, 2, 3, 4] and np.isfinite(log["loss"]).all()
    scores = pd.read_csv(report / "spatial_scores.csv")
    assert sorted(set(scores["model"])) == sorted(cfg.model_ids)
    assert len(scores) == 5 * 16 and set(scores["region"]) == {"V1", "V2", "V4", "IT"}
    # the ground-truth latents are read out almost perfectly (35 categories in 120 images: a few misses)
    category = scores["benchmark"].str.startswith("latentzoo.Category")
    assert (scores.loc[~category, "ceiling"] > 0.99).all() and (scores.loc[category, "ceiling"] > 0.9).all()
    np.testing.assert_allclose(scores["score"], np.clip(scores["raw"] / scores["ceiling"], 0, 1), atol=1e-4)
    # a region mapped to the same layer gets the same readout (distance: V1 = V2 = V4 = layer1)
    distance = scores[scores["model"] == model_id("distance")].set_index("benchmark")["raw"]
    assert distance["latentzoo.Rotation-V1"] == distance["latentzoo.Rotation-V4"]
    similarity = pd.read_csv(report / "similarity.csv")
    self_cka = similarity[similarity["model_a"] == similarity["model_b"]]["cka"]
    np.testing.assert_allclose(self_cka, 1.0, atol=1e-6)
    timings = pd.read_csv(report / "timings.csv")
    assert {"render", "train distance", "register", f"score {model_id('untrained')}", "analyze",
            "total"} <= set(timings["step"])

    # registered: ids resolve to the folders (sha256-pinned), and `brainscore score` takes them
    registry = load_registry([shipped_registry_path(), out / "registry.yaml"])
    assert set(cfg.model_ids) <= set(registry.ids)
    assert registry[model_id("category")].layers["V2"] == "layer3"  # the authors' category map
    net = from_pretrained(model_id("rotation"), registry=registry)
    assert net.config.id == model_id("rotation") and net.config.input_size == 32
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(out / "registry.yaml"))
    assert brainscore_main(["score", "--model", model_id("distance"), "--benchmark", "latentzoo.Distance-IT",
                            "--out", str(tmp_path / "cli")]) == 0
    cli = pd.read_csv(tmp_path / "cli" / "scores.csv")
    assert cli["model"].tolist() == [model_id("distance")] and cli["ceiling"].iloc[0] > 0.99

    # a rerun trains and scores nothing again and rewrites the same scores
    weights = {o: (out / "models" / o / "model.safetensors").stat().st_mtime_ns for o in OBJECTIVES}
    capsys.readouterr()
    run_quickstart(cfg)
    again = pd.read_csv(report / "timings.csv").set_index("step")["seconds"]
    assert all(again[f"train {o}"] < 1 for o in OBJECTIVES)
    assert weights == {o: (out / "models" / o / "model.safetensors").stat().st_mtime_ns for o in OBJECTIVES}
    pd.testing.assert_frame_equal(pd.read_csv(report / "spatial_scores.csv"), scores)

    # a model file changed after registration is refused by its pinned sha256
    path = out / "models" / "distance" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the sha256 pinned"):
        from_pretrained(model_id("distance"), registry=registry)
