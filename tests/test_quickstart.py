"""The quickstart end to end at a tiny scale: render, train, register, score, reproduce report; rerun resumes."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import circmean
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import r2_score

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
from latentzoo.cli import brainscore_main  # noqa: E402
from latentzoo.datasets import RenderedDataset  # noqa: E402
from latentzoo.errors import UserError  # noqa: E402
from latentzoo.latents import ANGLE_LATENTS  # noqa: E402
from latentzoo.quickstart import CATEGORIES, OBJECTIVES, QuickstartConfig, model_id, run_quickstart  # noqa: E402
from latentzoo.registry import load_registry, shipped_registry_path  # noqa: E402
from latentzoo.weights import from_pretrained  # noqa: E402

SECTIONS = ("Run", "Dataset", "Training", "Spatial-latent benchmarks", "Models",
            "Table C.1 / C.2: Brain-Score by objective", "Figure 2: alignment vs number of supervised outputs",
            "Figure 4: Representational similarity (paper protocol)",
            "Figure 5 / E.1: non-target latents, full vs reduced variability", "Not computed")


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
    assert {"contact_sheet.png", "training_curves.png", "spatial_scores.png", "figure2.png", "cka_paper_heatmaps.png",
            "mds_paper.png", "figure5.png"} <= set(images)
    assert all((report / name).stat().st_size > 1000 for name in images)

    # every model trained its steps (rotation twice as many), on the paper's losses, and was scored on all 16 benchmarks
    for objective in OBJECTIVES:
        log = pd.read_csv(out / "models" / objective / "train" / "log.csv")
        steps = 8 if objective == "rotation" else 4
        assert list(log["step"]) == list(range(1, steps + 1)) and np.isfinite(log["loss"]).all()
    rotation = torch.load(out / "models" / "rotation" / "train" / "checkpoint.pt", weights_only=False)["config"]
    assert (rotation["steps"], rotation["batch_size"]) == (8, 32)
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
    timings = pd.read_csv(report / "timings.csv")
    assert {"render", "train distance", "register", f"score {model_id('untrained')}", "reproduce",
            "total"} <= set(timings["step"])

    # chance is the best constant guess from the training split, as sklearn's dummy estimators and
    # scipy's circular mean make it; only the quickstart's categories were rendered
    ds = RenderedDataset(out / "dataset")
    assert ds.meta["camera"]["fov_deg"] == 35.0  # the quickstart's narrower view: larger objects
    train, test = ds.latents("train"), ds.latents("test")
    assert {ds.categories[c] for c in pd.concat([train, test])["category"]} == set(CATEGORIES)
    learning = pd.read_csv(report / "learning.csv").set_index(["model", "metric"])
    chance = learning["chance"]
    for latent, objective in (("x", "translation"), ("y", "translation"), ("z", "distance")):
        guess = DummyRegressor().fit(train[[latent]], train[latent]).predict(test[[latent]])
        assert chance[model_id(objective), f"{latent}_r2"] == pytest.approx(r2_score(test[latent], guess), abs=1e-4)
    top1 = DummyClassifier(strategy="most_frequent").fit(train[["x"]], train["category"])
    assert chance[model_id("category"), "category_top1"] == pytest.approx(
        top1.score(test[["x"]], test["category"]), abs=1e-4)
    for angle in ANGLE_LATENTS:
        error = np.angle(np.exp(1j * (test[angle] - circmean(train[angle], high=np.pi, low=-np.pi))))
        assert chance[model_id("rotation"), f"{angle}_mae"] == pytest.approx(np.abs(error).mean(), abs=1e-4)
    metrics = pd.read_csv(report / "test_metrics.csv").set_index("model")
    assert len(learning) == 10  # x, y, z R^2; category top-1; rot_x, rot_y, rot_z error and circular R^2
    for (model, metric), row in learning.iterrows():
        assert row["trained"] == pytest.approx(metrics.at[model, metric], abs=1e-4)
        better = row["trained"] < row["chance"] if metric.endswith("_mae") else row["trained"] > row["chance"]
        assert row["beats_chance"] == better

    # the reproduce sections: Table C.2 averages the spatial scores above per region; CKA of a model with itself is 1
    table = pd.read_csv(report / "table_c1_c2.csv").set_index("group")
    v1 = scores[scores["region"] == "V1"].groupby("model")["score"].mean()
    for objective in (*OBJECTIVES, "untrained"):
        assert table.at[objective, "V1"] == pytest.approx(v1[model_id(objective)], abs=1e-6)
    cka = pd.read_csv(report / "cka_paper.csv")
    np.testing.assert_allclose(cka.loc[cka["model_a"] == cka["model_b"], "cka"], 1.0, atol=1e-6)
    decoding = pd.read_csv(report / "decoding_paper.csv")
    assert {"pixels", "untrained", *OBJECTIVES} == set(decoding["model"])

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
