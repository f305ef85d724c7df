"""A user's route through the zoo: predict/decode on any input, extract, local benchmarks, layermap,
and the clear one-line errors of the commands a new user tries first."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from latentzoo.cli import brainscore_main, main
from latentzoo.errors import UserError
from latentzoo.hub import load_pretrained, save_pretrained
from latentzoo.latents import Normalisation
from latentzoo.models.network import LatentNet
from zoo_helpers import TINY_MODEL as TINY_ID, TINY_REGISTRY


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))


def images(tmp_path, n: int = 3, size: int = 40) -> list:
    """``n`` random RGB JPEG files; returns their paths."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def distance_category_net() -> LatentNet:
    return LatentNet.create("r18", "all", n_categories=3, n_identities=4, seed=0, input_size=32,
                            normalisation=Normalisation({"x": 0.0, "y": 0.1, "z": 2.0}, {"x": 0.5, "y": 0.5, "z": 1.5}),
                            extra={"labels": {"category": ["mug", "car", "tree"],
                                              "identity": ["m1", "m2", "c1", "t1"]}})


# ---------------------------------------------------------------- predict / decode

def test_predict_takes_paths_pil_arrays_and_tensors_alike(tmp_path):
    net = distance_category_net()
    paths = images(tmp_path)
    arrays = [np.asarray(Image.open(p)) for p in paths]
    reference = net.predict([Image.open(p) for p in paths])
    for kind in (paths, [str(p) for p in paths], arrays, np.stack(arrays), torch.from_numpy(np.stack(arrays)),
                 [paths[0], Image.open(paths[1]), arrays[2]]):
        got = net.predict(kind)
        assert set(got) == set(reference)
        for name in reference:
            np.testing.assert_array_equal(got[name], reference[name]) if reference[name].dtype == object else \
                np.testing.assert_allclose(got[name], reference[name], atol=1e-4)
    one = net.predict(str(paths[0]))  # a single path (was: AttributeError)
    assert {k: v.shape for k, v in one.items()} == {k: (1,) for k in reference}
    np.testing.assert_allclose(net.predict(arrays[0])["z"], reference["z"][:1], atol=1e-4)
    with pytest.raises(UserError, match="cannot read image"):
        net.predict(str(tmp_path / "missing.jpg"))


def test_decode_turns_timm_raw_outputs_into_predict_units(tmp_path):
    import timm

    net = distance_category_net()
    folder = save_pretrained(net, tmp_path / "m")
    via_timm = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    paths = images(tmp_path, n=4)
    with torch.no_grad():
        raw = via_timm(net.preprocess(paths))  # what a timm user gets: the 674-unit... here 3+4+9-unit head
    assert raw.shape == (4, 3 + 4 + 1 + 2 + 6)
    loaded = load_pretrained(folder)
    decoded, predicted = loaded.decode(raw), loaded.predict(paths)
    for name in predicted:
        if predicted[name].dtype == object:
            np.testing.assert_array_equal(decoded[name], predicted[name])
        else:
            np.testing.assert_allclose(decoded[name], predicted[name], atol=1e-4)
    # physical units: z = raw * std + mean, angles from atan2(sin, cos), names from the config's labels
    np.testing.assert_allclose(decoded["z"], raw[:, 7].numpy() * 1.5 + 2.0, atol=1e-5)
    np.testing.assert_allclose(decoded["rot_x" if "rot_x" in decoded else "rxy"],
                               np.arctan2(raw[:, 10].numpy(), raw[:, 13].numpy()), atol=1e-6)
    assert list(decoded["category_name"]) == [["mug", "car", "tree"][i] for i in raw[:, :3].argmax(1)]
    assert list(decoded["identity_name"]) == [["m1", "m2", "c1", "t1"][i] for i in raw[:, 3:7].argmax(1)]
    np.testing.assert_allclose(loaded.decode(raw[0])["z"], decoded["z"][:1], atol=1e-6)  # one row
    with pytest.raises(ValueError, match="expected raw outputs N x 16"):
        loaded.decode(raw[:, :5])


def test_untrained_model_says_it_has_no_latents():
    net = LatentNet.create("r18", "untrained", seed=0, input_size=32, id="untrained-r18-s0")
    with pytest.raises(UserError, match="untrained-r18-s0 .* has no latent outputs"):
        net.predict(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="has no latent outputs"):
        net.decode(np.zeros((1, 1000), np.float32))


def test_trained_model_folder_records_its_class_names(tiny_dataset, tmp_path):
    from latentzoo.training.export import export_model

    net = LatentNet.create("r18", "category", n_categories=len(tiny_dataset.categories), seed=0, input_size=32)
    folder = export_model(net, tmp_path / "m", tiny_dataset, "0" * 64, seed=0, steps=1, metrics={})
    loaded = load_pretrained(folder)
    assert loaded.config.label_names == {"category": tiny_dataset.categories}
    out = loaded.predict(images(tmp_path, n=2))
    assert [tiny_dataset.categories[i] for i in out["category"]] == list(out["category_name"])


# ---------------------------------------------------------------- clear errors, file modes

def test_first_commands_fail_with_one_clear_line(tiny_dataset, tmp_path, capsys):
    assert main(["evaluate", "untrained-r18-s0", "--data", str(tiny_dataset.root), "--workers", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no latent outputs" in err[0] and "unexpected" not in err[0]
    common = ["train", "--data", str(tiny_dataset.root), "--objective", "distance", "--steps", "1",
              "--out", str(tmp_path / "m"), "--workers", "0", "--quiet"]
    with pytest.raises(SystemExit) as e:
        main([*common, "--size", "0"])
    assert e.value.code == 2 and "--size: must be at least 1" in capsys.readouterr().err
    assert main([*common, "--size", "32", "--arch", "r34"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown architecture 'r34'; use resnet34" in err[0] and "unexpected" not in err[0]
    from latentzoo.training import TrainConfig, train

    with pytest.raises(UserError, match="--size must be positive"):
        train(TrainConfig(data=str(tiny_dataset.root), objective="distance", out=str(tmp_path / "m"), steps=1, size=0))


def test_offline_hub_error_names_the_repo_not_a_missing_config(monkeypatch):
    from huggingface_hub import constants

    import latentzoo.weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub reads the variable at import
    monkeypatch.setattr(constants, "HF_HUB_CACHE", os.environ["LATENTZOO_CACHE"])
    with pytest.raises(UserError) as e:
        latentzoo.weights.from_pretrained("hf-hub:someone/not-cached")
    assert "someone/not-cached" in str(e.value) and "config.json" not in str(e.value)


def test_brainscore_list_shows_models_and_benchmarks(capsys):
    from brainscore_core.plugin_management.import_plugin import ImportPlugin

    from latentzoo.spatial import benchmark_factories

    assert brainscore_main(["list"]) == 0
    out = capsys.readouterr().out
    models, benchmarks = ([line.strip() for line in part.splitlines()[1:] if line.startswith("  ")]
                          for part in out.split("\nbenchmarks ("))
    assert "untrained-r18-s0" in models and set(benchmark_factories()) <= set(benchmarks)
    plugins = [b for b in benchmarks if not b.startswith("latentzoo.")]
    assert {"MajajHong2015public.IT-pls", "FreemanZiemba2013public.V1-pls", "Rajalingham2018public-i2n"} <= set(plugins)
    for b in plugins:  # Brain-Score's own plugin search finds exactly one registration of each listed id
        ImportPlugin("brainscore_vision", "benchmarks", b)


def test_written_files_are_group_readable(tmp_path):
    from latentzoo.fileio import write_json_atomic

    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"a": 1})
        folder = save_pretrained(LatentNet.create("r18", "distance", seed=0, input_size=32), tmp_path / "m")
    finally:
        os.umask(previous)
    for path in (tmp_path / "a.json", *folder.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# ---------------------------------------------------------------- local benchmarks, --images, layermap

@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    (tmp_path / "registry.yaml").write_text(TINY_REGISTRY)
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(tmp_path / "registry.yaml"))


def write_benchmark(d, n: int = 30, objects: list | None = None, splits: int = 10, **edits) -> None:
    """A local benchmark of ``n`` zero-padded stimulus ids ("0000"...) whose 6 neuroids are a random
    linear function of the pixels (2 noisy repetitions); ``objects`` per stimulus or None (no column)."""
    import json

    import pandas as pd

    (d / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    rows = []
    for i in range(n):
        Image.fromarray(pixels[i]).save(d / "images" / f"{i:04d}.png")
        rows.append({"stimulus_id": f"{i:04d}", "filename": f"images/{i:04d}.png",
                     **({"object_name": objects[i]} if objects else {})})
    signal = pixels.reshape(n, -1).astype(float) @ rng.normal(size=(16 * 16 * 3, 6))
    signal = (signal - signal.mean(0)) / signal.std(0)
    long = pd.DataFrame([{"stimulus_id": f"{i:04d}", "repetition": r, "neuroid_id": f"n{k}",
                          "response": signal[i, k] + rng.normal(0, 0.3)} for i in range(n) for r in range(2) for k in range(6)])
    for column, (row, value) in edits.items():
        long[column] = long[column].astype(object)
        long.loc[row, column] = value
    pd.DataFrame(rows).to_csv(d / "stimuli.csv", index=False)
    long.to_csv(d / "responses.csv", index=False)
    (d / "benchmark.json").write_text(json.dumps({"region": "IT", "splits": splits}))


def test_local_benchmark_keeps_text_ids_and_object_name_is_optional(tmp_path):
    from sklearn.model_selection import StratifiedShuffleSplit

    from latentzoo.models.local_benchmark import local_benchmark

    write_benchmark(tmp_path / "plain", objects=None)
    benchmark = local_benchmark(tmp_path / "plain")
    assert sorted(benchmark._assembly["stimulus_id"].values)[:2] == ["0000", "0001"]  # not 0, 1
    assert "object_name" not in benchmark._assembly.coords
    objects = ["lonely"] + [f"o{i % 3}" for i in range(29)]
    with pytest.raises(ValueError):  # the oracle: sklearn (Brain-Score's splitter) cannot stratify these
        next(StratifiedShuffleSplit(10, train_size=0.9, random_state=1).split(np.zeros(30), objects))
    write_benchmark(tmp_path / "single", objects=objects)
    with pytest.warns(UserWarning, match=r"not stratified by object_name \(object_name 'lonely' has a single stimulus\)"):
        benchmark = local_benchmark(tmp_path / "single")
    assert not benchmark._similarity_metric.cross_validation._split.do_stratify
    subset = local_benchmark(tmp_path / "plain", images=20)
    assert subset.identifier == "local.plain.IT-pls-images20" and len(subset._assembly["stimulus_id"]) == 20
    assert list(subset._assembly["stimulus_id"].values) == list(local_benchmark(tmp_path / "plain", images=20)
                                                              ._assembly["stimulus_id"].values)


@pytest.mark.parametrize("edits, message", [
    ({"response": (5, "n/a")}, "response of stimulus 0000, repetition 0, neuroid n5 is not a number ('n/a'; line 7)"),
    ({"response": (7, "")}, "is not a number"),
    ({"repetition": (0, 1)}, "has more than one response"),
    ({"stimulus_id": (3, "9999")}, "responses name 1 stimuli not in stimuli.csv, e.g. '9999'"),
])
def test_each_data_problem_is_one_line_before_any_model_runs(tmp_path, monkeypatch, capsys, tiny_registry,
                                                             edits, message):
    import latentzoo.models.brainscore as bs

    write_benchmark(tmp_path / "b", **edits)
    monkeypatch.setattr(bs, "resolve_model", lambda *a, **k: pytest.fail("a model ran before the data was checked"))
    assert brainscore_main(["score", "--model", TINY_ID, "--benchmark", "latentzoo.Distance-IT",
                            f"local:{tmp_path / 'b'}", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_more_data_problems_name_the_file(tmp_path):
    import pandas as pd

    from latentzoo.models.local_benchmark import local_benchmark

    write_benchmark(tmp_path / "a")
    (tmp_path / "a" / "images" / "0003.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"0003.png is not a readable image"):
        local_benchmark(tmp_path / "a")
    write_benchmark(tmp_path / "b")
    long = pd.read_csv(tmp_path / "b" / "responses.csv", dtype=str)
    long[long["repetition"] == "0"].to_csv(tmp_path / "b" / "responses.csv", index=False)
    with pytest.raises(UserError, match="has a single repetition"):
        local_benchmark(tmp_path / "b")
    write_benchmark(tmp_path / "c", n=10)
    with pytest.raises(UserError, match="10 stimuli are too few"):
        local_benchmark(tmp_path / "c")


def test_gram_pca_equals_sklearn_pca_up_to_sign():
    from sklearn.decomposition import PCA

    from latentzoo.models.layermap import GramPCA

    x = np.random.default_rng(0).normal(size=(30, 700)).astype(np.float32) @ np.diag(np.linspace(1, 3, 700)).astype(np.float32)
    ours, theirs = GramPCA(x, 30), PCA(n_components=29, random_state=0).fit(x)  # centred rank: 29
    assert ours.components_.shape == (29, 700)
    np.testing.assert_allclose(np.abs(ours.transform(x[:5])), np.abs(theirs.transform(x[:5])), atol=2e-3)
    np.testing.assert_allclose(np.abs(ours.components_ @ theirs.components_.T), np.eye(29), atol=1e-3)


def test_layer_selection_with_brainscores_pca_equals_raw_layer_scores(tmp_path, tiny_registry):
    from brainscore_vision.model_helpers.brain_transformation.neural import LayerScores

    from latentzoo.models.brainscore import VISUAL_DEGREES, load_benchmark, wrap
    from latentzoo.models.layermap import candidate_layers, pca_layer_scores
    from latentzoo.weights import from_pretrained

    write_benchmark(tmp_path / "b", n=30, objects=[f"o{i % 2}" for i in range(30)], splits=2)
    benchmark = load_benchmark(f"local:{tmp_path / 'b'}")
    net = from_pretrained(TINY_ID)
    layers = ["layer3.0.relu", "avgpool"]  # 4,096 features: reduced; 512: kept raw, as LayerPCA does
    raw = LayerScores(model_identifier="raw", activations_model=wrap(net, "raw", 8), visual_degrees=VISUAL_DEGREES)(
        benchmark=benchmark, layers=layers, prerun=True)  # Brain-Score's own, on the unreduced activations
    lines = []
    reduced = pca_layer_scores(wrap(net, "reduced", 8), "reduced", benchmark, layers, 8, lines.append)
    assert list(reduced) == layers
    for layer in layers:  # 30 stimuli: the components span them, PLS(scale=False) sees the same data
        assert reduced[layer] == pytest.approx(float(raw.sel(layer=layer)), abs=1e-4)
    assert "30 principal components per layer" in lines[0]
    assert "1/2 layer3.0.relu" in lines[-2] and "2/2 avgpool" in lines[-1] and "s left" in lines[-1]
    assert candidate_layers(net, "fine") == [
        "relu", "layer1.0.relu", "layer1.1.relu", "layer2.0.relu", "layer2.1.relu", "layer3.0.relu",
        "layer3.1.relu", "layer4.0.relu", "layer4.1.relu", "avgpool", "fc"]  # the paper's ResNet-18 list
    assert candidate_layers(net, "leaderboard") == ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"]
    with pytest.raises(UserError, match="unknown candidate list 'coarse'"):
        candidate_layers(net, "coarse")


def test_brainscore_score_images_caps_the_stimuli(tmp_path, tiny_registry, capsys):
    import pandas as pd

    write_benchmark(tmp_path / "b", n=40, splits=2)
    assert brainscore_main(["score", "--model", TINY_ID, "--benchmark", f"local:{tmp_path / 'b'}", "--images", "30",
                            "--out", str(tmp_path / "s"), "--batch-size", "10"]) == 0
    captured = capsys.readouterr()
    assert "score: 1/1 local.b.IT-pls-images30" in captured.err and "s left" in captured.err
    assert pd.read_csv(tmp_path / "s" / "scores.csv")["benchmark"].tolist() == ["local.b.IT-pls-images30"]
    assert brainscore_main(["score", "--model", TINY_ID, "--benchmark", "MajajHong2015public.IT-pls",
                            "--images", "30"]) == 1
    assert "--images works with local:DIR and latentzoo.* benchmarks" in capsys.readouterr().err


# ---------------------------------------------------------------- extract

def test_extract_writes_one_npy_per_layer_and_resumes(tmp_path, capsys):
    import json

    import timm

    net = LatentNet.create("r18", "distance", seed=0, input_size=32)
    folder = save_pretrained(net, tmp_path / "m")
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    paths = images(tmp_path / "imgs", n=3) + images(tmp_path / "imgs" / "sub", n=2)
    out = tmp_path / "feats"
    assert main(["extract", str(folder), "--images", str(tmp_path / "imgs"), "--layers", "layer4", "--out", str(out),
                 "--quiet"]) == 0
    rows = (out / "images.txt").read_text().splitlines()
    assert rows == ["img0.png", "img1.png", "img2.png", "sub/img0.png", "sub/img1.png"]
    order = [tmp_path / "imgs" / r for r in rows]
    features = timm.create_model(f"local-dir:{folder}", pretrained=True, features_only=True, out_indices=(4,)).eval()
    with torch.no_grad():  # the oracle: timm's own feature extraction of layer4
        expected = features(net.preprocess(order))[0].flatten(1).numpy()
    np.testing.assert_allclose(np.load(out / "layer4.npy"), expected, rtol=1e-4, atol=1e-5)
    inode = (out / "layer4.npy").stat().st_ino
    assert main(["extract", "local-dir:" + str(folder), "--images", str(tmp_path / "imgs"), "--layers", "layer4",
                 "global_pool", "--out", str(tmp_path / "timm"), "--pooling", "avg", "--quiet"]) == 0  # a timm model
    np.testing.assert_allclose(np.load(tmp_path / "timm" / "global_pool.npy"),
                               np.load(tmp_path / "timm" / "layer4.npy"), rtol=1e-5, atol=1e-6)
    assert main(["extract", str(folder), "--images", str(tmp_path / "imgs"), "--layers", "layer4", "fc",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "layer4.npy").stat().st_ino == inode  # the cached layer was not recomputed
    assert json.loads((out / "extract.json").read_text())["layers"] == {"layer4": [5, 512], "fc": [5, 1]}
    assert main(["extract", "no-such-model", "--images", str(tmp_path / "imgs"), "--out", str(out)]) == 1
    assert "unknown model id 'no-such-model'" in capsys.readouterr().err
