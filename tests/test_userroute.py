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
