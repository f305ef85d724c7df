"""Brain-Score protocols against the authors' installed plugin (the oracle): one synthetic checkpoint in
their ``.pth`` format, served on loopback, is loaded both by the plugin ``yudixie_resnet18_240719_0``
(its own code; only its download URL points at the loopback server) and by latentzoo through the
registry; ``leaderboard`` must give bitwise-equal activations for every region and for behaviour.
(The identity plugin: its map uses layer2/layer3, the cheapest of the ResNet-18 maps to record.)"""

from __future__ import annotations

import json
import os
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from latentzoo.cli import brainscore_main, main  # noqa: E402
from latentzoo.errors import UserError  # noqa: E402
from latentzoo.registry import REGIONS, load_registry  # noqa: E402
from latentzoo.fileio import sha256_file  # noqa: E402

from zoo_helpers import TINY_MODEL, TINY_REGISTRY, FileServer, authors_checkpoint  # noqa: E402

ZOO_ID = "tdw-identity-r18"
BRAINSCORE_ID = "yudixie_resnet18_object_class_0_240719"
S3 = "https://yudi-brainscore-models.s3.amazonaws.com"
#: Images whose mode Brain-Score's loader converts (alpha and palette transparency dropped).
READABLE = ("rgb", "rgba", "la", "p_transparent", "l", "rgb16", "jpeg")
#: Brain-Score caches activations and layer scores by model and stimulus-set identifier in
#: RESULTCACHING_HOME, read once when its modules are imported (maybe by an earlier test module):
#: this run's stimulus sets and benchmarks get identifiers of their own.
RUN = uuid.uuid4().hex[:12]
#: Opaque stimuli of the local benchmarks (PLS's 25 components need more than 25 training stimuli).
MORE = 30
OPAQUE = ("rgb", "l", "jpeg", *(f"more{i}" for i in range(MORE)))


def png16_rgb(path: Path, pixels: np.ndarray) -> None:
    """A 48-bit RGB PNG (PIL cannot write one): signature, IHDR (depth 16, colour type 2), IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_images(folder: Path) -> dict[str, Path]:
    """One small image per mode; colours under transparent pixels differ from white, so alpha handling shows."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    alpha = np.where(rng.random((30, 40)) < 0.5, 0, rng.integers(1, 256, (30, 40))).astype(np.uint8)
    paths = {name: folder / f"{name}.png" for name in ("rgb", "rgba", "la", "p_transparent", "l", "rgb16", "gray16")}
    Image.fromarray(rgb).save(paths["rgb"])
    Image.fromarray(np.dstack([rgb, alpha])).save(paths["rgba"])
    Image.fromarray(np.dstack([rgb[..., 0], alpha])).save(paths["la"])
    Image.fromarray(rgb).quantize(16).save(paths["p_transparent"], transparency=0)
    Image.fromarray(rgb[..., 1]).save(paths["l"])
    png16_rgb(paths["rgb16"], rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16))
    Image.fromarray(rng.integers(0, 65536, (30, 40), dtype=np.uint16)).save(paths["gray16"])
    paths["jpeg"] = folder / "jpeg.jpg"
    Image.fromarray(rgb[::-1]).save(paths["jpeg"], quality=90)
    for i in range(MORE):  # more opaque stimuli for the local benchmarks
        paths[f"more{i}"] = folder / f"more{i}.png"
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(paths[f"more{i}"])
    return paths


def stimulus_set(paths: dict[str, Path], names, identifier: str):
    from brainscore_vision import StimulusSet

    stimuli = StimulusSet(pd.DataFrame({"stimulus_id": list(names)}))
    stimuli.stimulus_paths = {name: str(paths[name]) for name in names}
    stimuli.identifier = f"{identifier}-{RUN}"
    return stimuli


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The plugin's ModelCommitment and latentzoo's (default protocol) on one served checkpoint, and stimuli."""
    import brainscore_vision
    import brainscore_vision.models.yudixie_resnet18_240719_8.model as plugin_model

    from latentzoo.models.brainscore import commit

    tmp = tmp_path_factory.mktemp("protocols")
    weights = tmp / "srv" / f"{BRAINSCORE_ID}.pth"
    authors_checkpoint(weights, seed=7)
    server = FileServer(weights.parent)
    registry = tmp / "registry.yaml"  # the shipped entry, its download pointed at the loopback server
    registry.write_text(yaml.safe_dump({"version": 1, "overrides": {ZOO_ID: {"weights": {"url": {
        "href": f"{server.url}/{weights.name}", "sha256": sha256_file(weights)}}}}}))
    (tmp / "tiny.yaml").write_text(TINY_REGISTRY)
    real_urlretrieve = plugin_model.urlretrieve
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME", "LATENTZOO_CACHE"):
            mp.setenv(var, str(tmp / var.lower()))
        mp.setenv("LATENTZOO_REGISTRY", os.pathsep.join([str(registry), str(tmp / "tiny.yaml")]))
        mp.chdir(tmp)  # the plugin writes `<id>_weights.pth` into the working directory
        mp.setattr(plugin_model, "urlretrieve",
                   lambda url, filename: real_urlretrieve(url.replace(S3, server.url), filename))
        theirs = brainscore_vision.load_model(BRAINSCORE_ID)
        ours = commit(ZOO_ID)
        paths = write_images(tmp / "images")
        yield {"ours": ours, "theirs": theirs, "paths": paths, "tmp": tmp,
               "stimuli": stimulus_set(paths, READABLE, "latentzoo.protocols-test"),
               "requests": server.requests}
    server.close()


def test_leaderboard_equals_the_authors_plugin_bitwise(zoo):
    from brainscore_vision import BrainModel

    ours, theirs, stimuli = zoo["ours"], zoo["theirs"], zoo["stimuli"]
    assert zoo["requests"].count(f"/{BRAINSCORE_ID}.pth") == 2  # both downloaded the served file
    assert ours.identifier == ZOO_ID and ours.visual_degrees() == theirs.visual_degrees() == 8
    assert list(ours.layers) == list(theirs.layers) == ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"]
    mapped = {r: theirs.layer_model.region_layer_map[r] for r in REGIONS}  # from the plugin's JSON
    assert {r: ours.layer_model.region_layer_map[r] for r in REGIONS} == mapped
    readouts = [m.behavior_model.mapping[BrainModel.Task.probabilities].readout for m in (ours, theirs)]
    assert readouts[0] == readouts[1] == ["fc"]
    for model in (ours, theirs):  # one forward pass per model (batches of 64, as the plugin) fills the cache
        model.activations_model(stimuli, layers=[*sorted(set(mapped.values())), "fc"])
    for region in REGIONS:
        recorded = []
        for model in (ours, theirs):
            model.start_recording(region, [(70, 170)])
            recorded.append(model.look_at(stimuli))
        assert list(recorded[0]["stimulus_id"].values) == list(READABLE)
        assert set(recorded[0]["layer"].values) == {mapped[region]} and recorded[0].shape == recorded[1].shape
        assert np.array_equal(recorded[0].values, recorded[1].values), region
    features = [m.activations_model(stimuli, layers=readouts[0]) for m in (ours, theirs)]
    assert features[0].shape == (len(READABLE), 674) and np.array_equal(features[0].values, features[1].values)


def test_paper_reads_avgpool_and_composites_alpha_on_white(zoo):
    from brainscore_vision import BrainModel
    from brainscore_vision.model_helpers.activations.pytorch import load_preprocess_images

    from latentzoo.models.brainscore import commit

    paper = commit(ZOO_ID, protocol="paper")
    assert paper.behavior_model.mapping[BrainModel.Task.probabilities].readout == ["avgpool"]
    assert {r: paper.layer_model.region_layer_map[r] for r in REGIONS} == \
        {r: zoo["theirs"].layer_model.region_layer_map[r] for r in REGIONS}
    preprocess = paper.activations_model._extractor.preprocess  # what the model is fed
    same = {n: np.array_equal(preprocess([str(zoo["paths"][n])]),
                              load_preprocess_images([str(zoo["paths"][n])], image_size=224)) for n in READABLE}
    # opaque images load identically; where pixels are transparent, Brain-Score keeps the colour underneath
    assert same == {"rgb": True, "l": True, "rgb16": True, "jpeg": True,
                    "rgba": False, "la": False, "p_transparent": False}
    gray16 = preprocess([str(zoo["paths"]["gray16"])])[0]  # read: three equal channels before normalisation
    pixels = gray16 * np.array([0.229, 0.224, 0.225])[:, None, None] + np.array([0.485, 0.456, 0.406])[:, None, None]
    assert gray16.shape == (3, 224, 224) and np.allclose(pixels[0], pixels[1], atol=1e-6) and 0.2 < pixels.mean() < 0.8


def test_modes_brainscore_cannot_read_are_one_line(zoo, capsys):
    from latentzoo.models.brainscore import leaderboard_preprocess

    gray16 = str(zoo["paths"]["gray16"])
    assert Image.open(gray16).mode == "I;16"
    broken = stimulus_set(zoo["paths"], ["rgb", "gray16"], "latentzoo.protocols-gray16")
    with pytest.raises(TypeError):  # the plugin itself fails on it
        zoo["theirs"].activations_model(broken, layers=["fc"])
    with pytest.raises(UserError) as error:
        zoo["ours"].activations_model(broken, layers=["fc"])
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{gray16}: Brain-Score's image loader")
    assert "I;16" in message and "--protocol paper" in message
    cmyk = zoo["tmp"] / "cmyk.jpg"
    Image.open(zoo["paths"]["rgb"]).convert("CMYK").save(cmyk)
    with pytest.raises(UserError, match=r"cannot read this CMYK image \(RuntimeError"):
        leaderboard_preprocess([str(cmyk)])

    bench = local_benchmark(zoo["tmp"] / "bench-gray16", zoo["paths"], [*OPAQUE[:11], "gray16"])
    assert brainscore_main(["score", "--model", ZOO_ID, "--benchmark", f"local:{bench}", "--out",
                            str(zoo["tmp"] / "never")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not progress bars
    assert len(errors) == 1 and errors[0].startswith(f"brainscore score: error: {gray16}: ") and "I;16" in errors[0]


def local_benchmark(folder: Path, paths: dict[str, Path], names, seed: int = 0) -> Path:
    """A local:DIR benchmark (IT, 2 repetitions, 3 neuroids of noise) over ``names``."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    pd.DataFrame({"stimulus_id": names, "filename": [str(paths[n]) for n in names]}).to_csv(
        folder / "stimuli.csv", index=False)
    pd.DataFrame([{"stimulus_id": n, "repetition": r, "neuroid_id": f"n{k}", "response": rng.normal()}
                  for n in names for r in range(2) for k in range(3)]).to_csv(folder / "responses.csv", index=False)
    (folder / "benchmark.json").write_text(json.dumps({"region": "IT", "splits": 2,
                                                       "identifier": f"protocols.{folder.name}-{RUN}.IT-pls"}))
    return folder


def test_protocol_defaults_scores_files_and_layermap(zoo, capsys):
    from latentzoo.models.brainscore import default_protocol, resolve_model

    registry = load_registry()
    assert default_protocol(ZOO_ID, registry) == "leaderboard" and registry[ZOO_ID].protocol == "leaderboard"
    assert default_protocol(TINY_MODEL, registry) == default_protocol("untrained-r18-s0", registry) == "paper"
    with pytest.raises(UserError, match="--protocol applies to zoo ids and model folders"):
        resolve_model("alexnet", registry, protocol="paper")
    with pytest.raises(UserError, match="unknown protocol 'leaderbord'; did you mean leaderboard"):
        resolve_model(TINY_MODEL, registry, protocol="leaderbord")
    bad = zoo["tmp"] / "bad.yaml"
    bad.write_text(TINY_REGISTRY.replace("    seed: 0\n", "    seed: 0\n    protocol: leaderbord\n"))
    with pytest.raises(UserError, match="field 'protocol': expected one of leaderboard, paper, got 'leaderbord'"):
        load_registry([bad])

    bench = local_benchmark(zoo["tmp"] / "bench", zoo["paths"], [*OPAQUE, "rgba"])
    out = zoo["tmp"] / "scores"
    assert brainscore_main(["score", "--model", TINY_MODEL, "--protocol", "leaderboard", "--benchmark",
                            f"local:{bench}", "--out", str(out)]) == 0
    assert "leaderboard" in capsys.readouterr().out
    assert list(pd.read_csv(out / "scores.csv")["protocol"]) == ["leaderboard"]
    assert [row["protocol"] for row in json.loads((out / "scores.json").read_text())["scores"]] == ["leaderboard"]

    assert main(["layermap", TINY_MODEL, "--benchmarks", f"local:{bench}", "--protocol", "leaderboard",
                 "--registry", str(zoo["tmp"] / "tiny.yaml")]) == 0
    printed = capsys.readouterr().out
    scored = printed.split("IT: ")[1].splitlines()[0]  # every plugin layer scored, best first
    assert sorted(item.split()[0] for item in scored.split(", ")) == sorted(
        ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"])
    assert "under protocol leaderboard" in printed
    assert load_registry()[TINY_MODEL].protocol == "leaderboard"  # the map's protocol becomes the default
