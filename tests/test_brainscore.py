"""Brain-Score: commitments from the registry, scoring on a local NeuralBenchmark via `brainscore score`, layermap."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from latentzoo.cli import brainscore_main, main  # noqa: E402
from latentzoo.errors import UserError  # noqa: E402
from latentzoo.registry import load_registry  # noqa: E402

from zoo_helpers import TINY_MODEL as MODEL, TINY_REGISTRY as TINY, no_network  # noqa: E402


@pytest.fixture(autouse=True)
def brainscore_home(tmp_path, monkeypatch):
    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    (tmp_path / "user-registry.yaml").write_text(TINY)
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(tmp_path / "user-registry.yaml"))
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))


def layer_features(paths, layer: str) -> np.ndarray:
    """The zoo model's own activations at ``layer``, through Brain-Score's preprocessing."""
    from latentzoo.models.brainscore import wrap
    from latentzoo.weights import load_entry

    net = load_entry(load_registry()[MODEL])
    images = torch.from_numpy(wrap(net, MODEL)._extractor.preprocess([str(p) for p in paths]))
    captured = {}
    handle = dict(net.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.update(x=o))
    with torch.no_grad():
        net(images)
    handle.remove()
    return captured["x"].flatten(1).numpy()


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory):
    registry = tmp_path_factory.mktemp("registry") / "tiny.yaml"
    registry.write_text(TINY)
    os.environ["LATENTZOO_REGISTRY"], previous = str(registry), os.environ.get("LATENTZOO_REGISTRY")
    """40 images; 16 'IT' neuroids = a random projection of the model's layer4 + noise, 2 repetitions."""
    d = tmp_path_factory.mktemp("bench")
    (d / "images").mkdir()
    rng = np.random.default_rng(0)
    paths, rows = [], []
    for i in range(40):
        colour = rng.uniform(0, 255, 3)
        pixels = np.clip(rng.normal(colour, 40, size=(32, 32, 3)), 0, 255).astype(np.uint8)
        paths.append(d / "images" / f"im{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
        rows.append({"stimulus_id": f"im{i:02d}", "filename": f"images/im{i:02d}.png", "object_name": f"o{i % 4}"})
    pd.DataFrame(rows).to_csv(d / "stimuli.csv", index=False)
    features = layer_features(paths, "layer4")
    signal = (features - features.mean(0)) @ rng.normal(size=(features.shape[1], 16))
    signal /= signal.std(0)
    long = [{"stimulus_id": f"im{i:02d}", "repetition": r, "neuroid_id": f"n{n}",
             "response": signal[i, n] + rng.normal(0, 0.3)} for i in range(40) for r in range(2) for n in range(16)]
    pd.DataFrame(long).to_csv(d / "responses.csv", index=False)
    (d / "benchmark.json").write_text(json.dumps({"region": "IT", "splits": 2, "identifier": "toy.IT-pls"}))
    if previous is None:
        del os.environ["LATENTZOO_REGISTRY"]
    else:
        os.environ["LATENTZOO_REGISTRY"] = previous
    return d


def test_commitment_uses_the_registry_layer_map():
    from brainscore_vision import BrainModel, model_registry
    from brainscore_vision.model_helpers.brain_transformation import ModelCommitment

    import latentzoo.brainscore  # noqa: F401  (registers every id)
    from latentzoo.models.brainscore import commit

    from latentzoo.models import register

    registry = load_registry()
    assert set(registry.ids) <= set(model_registry) and register() == registry.ids
    assert MODEL in model_registry  # the user registry's ids too
    model = commit("untrained-r18-s0")
    assert isinstance(model, ModelCommitment) and model.identifier == "untrained-r18-s0"
    mapped = model.layer_model.region_layer_map
    assert dict(mapped) == {"V1": "layer1", "V2": "layer2", "V4": "layer1", "IT": "layer4"}
    assert model.behavior_model.mapping[BrainModel.Task.probabilities].readout == ["avgpool"]
    assert model.visual_degrees() == 8
    # Brain-Score caches activations on disk by the activations model's identifier: it names the weights
    cached = model.layer_model.activations_model.identifier
    assert cached.startswith("untrained-r18-s0-w") and cached == commit("untrained-r18-s0").layer_model.activations_model.identifier
    assert commit("untrained-r18-s1").layer_model.activations_model.identifier.split("-w")[-1] != cached.split("-w")[-1]


def test_brainscore_score_on_a_local_benchmark(benchmark_dir, tmp_path, capsys):
    assert load_registry()[MODEL].layers["IT"] == "layer4"  # the layer the data came from
    out = tmp_path / "scores"
    assert brainscore_main(["score", "--model", MODEL, "--benchmark", f"local:{benchmark_dir}",
                            "--out", str(out), "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "toy.IT-pls" in printed and "neural mean:" in printed
    table = pd.read_csv(out / "scores.csv")
    row = table.iloc[0]
    assert (row["model"], row["benchmark"], row["region"]) == (MODEL, "toy.IT-pls", "IT")
    assert 0.6 < row["ceiling"] <= 1.0  # 2 noisy repetitions of a unit-variance signal
    assert row["raw"] > 0.6 and row["score"] == pytest.approx(row["raw"] ** 2 / row["ceiling"], rel=1e-6)
    assert json.loads((out / "scores.json").read_text())["neural_mean"] == pytest.approx(row["score"])


def test_layermap_picks_the_layer_the_data_came_from(benchmark_dir, tmp_path, capsys):
    user = tmp_path / "user-registry.yaml"
    user.write_text(TINY + f"overrides:\n  {MODEL}:\n    layers: {{IT: layer2}}\n")
    assert load_registry()[MODEL].layers["IT"] == "layer2"
    assert main(["layermap", MODEL, "--benchmarks", f"local:{benchmark_dir}", "--layers", "layer2", "layer4",
                 "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "IT -> layer4" in printed and "IT: layer4 " in printed  # best first, with its score
    assert load_registry()[MODEL].layers["IT"] == "layer4"  # written to the user registry's overrides
    assert yaml.safe_load(user.read_text())["overrides"][MODEL]["layers"] == {"IT": "layer4"}


def test_public_benchmark_unreachable_is_one_clear_line(monkeypatch, capsys):
    no_network(monkeypatch)
    assert brainscore_main(["score", "--model", MODEL, "--benchmark", "MajajHong2015public.IT-pls"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MajajHong2015public.IT-pls: its data could not be downloaded" in err[0]


def test_local_benchmark_errors_name_the_file(tmp_path):
    from latentzoo.models.local_benchmark import local_benchmark

    with pytest.raises(UserError, match="benchmark.json is missing"):
        local_benchmark(tmp_path)
    (tmp_path / "benchmark.json").write_text('{"region": "MT"}')
    with pytest.raises(UserError, match="'region' must be one of V1, V2, V4, IT"):
        local_benchmark(tmp_path)
    (tmp_path / "benchmark.json").write_text('{"region": "V4"}')
    (tmp_path / "stimuli.csv").write_text("stimulus_id,filename\na,missing.png\n")
    with pytest.raises(UserError, match="1 stimulus file"):
        local_benchmark(tmp_path)


def test_netcdf_responses_equal_csv_responses(benchmark_dir, tmp_path):
    import shutil

    import xarray as xr

    from latentzoo.models.local_benchmark import local_benchmark

    nc_dir = tmp_path / "nc"
    shutil.copytree(benchmark_dir, nc_dir)
    long = pd.read_csv(nc_dir / "responses.csv").sort_values(["stimulus_id", "repetition", "neuroid_id"])
    wide = long.pivot_table(index=["stimulus_id", "repetition"], columns="neuroid_id", values="response")
    xr.DataArray(wide.values, dims=["presentation", "neuroid"], coords={
        "stimulus_id": ("presentation", wide.index.get_level_values(0).values),
        "repetition": ("presentation", wide.index.get_level_values(1).values),
        "neuroid_id": ("neuroid", wide.columns.values)}).to_netcdf(nc_dir / "responses.nc")
    (nc_dir / "responses.csv").unlink()
    from_csv, from_nc = local_benchmark(benchmark_dir)._assembly, local_benchmark(nc_dir)._assembly
    assert from_nc.shape == from_csv.shape == (40, 16)
    order = lambda a: a.sortby(["stimulus_id", "neuroid_id"])  # noqa: E731
    np.testing.assert_allclose(order(from_nc).values, order(from_csv).values)
    assert set(from_nc["object_name"].values) == {"o0", "o1", "o2", "o3"} and set(from_nc["region"].values) == {"IT"}
