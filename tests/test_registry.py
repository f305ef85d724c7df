"""registry.yaml: the shipped zoo, family expansion, validation errors, overrides, `latentzoo models`/`registry pin`."""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from latentzoo.cli import main
from latentzoo.errors import UserError
from latentzoo.registry import (list_models, load_registry, shipped_registry_path, write_override)
from zoo_helpers import FileServer, url_registry, use_registry

REPO = Path(__file__).resolve().parents[1]
OBJECTIVES = ["distance", "translation", "rotation", "distance-translation", "distance-rotation",
              "translation-rotation", "distance-translation-rotation", "category", "identity", "all",
              "imagenet", "untrained"]


@pytest.fixture(autouse=True)
def no_user_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTZOO_REGISTRY", str(tmp_path / "absent.yaml"))


def test_shipped_registry_is_the_repository_file():
    assert shipped_registry_path().resolve() == (REPO / "registry.yaml").resolve()


def test_authors_checkpoints_with_their_brainscore_layer_maps():
    import brainscore_vision

    registry = load_registry()
    plugins = Path(brainscore_vision.__file__).parent / "models"
    authors = [e for e in registry if e.brainscore_id]
    assert len(authors) == 24
    assert sorted(e.id for e in authors) == sorted(f"tdw-{o}-{a}" for o in OBJECTIVES for a in ("r18", "r50"))
    for e in authors:
        date = {"r18": "240719", "r50": "240908"}[e.arch]
        assert e.brainscore_id.startswith(f"yudixie_{ {'r18': 'resnet18', 'r50': 'resnet50'}[e.arch]}_")
        assert e.brainscore_id.endswith(f"_0_{date}")
        assert e.weights == {"url": {"href": f"https://yudi-brainscore-models.s3.amazonaws.com/{e.brainscore_id}.pth",
                                     "format": "authors-pth"}}
        assert (e.head, e.units, e.seed, e.layers["behavior"]) == (674, "zscore", 0, "avgpool")
        published, = glob.glob(str(plugins / "yudixie_*" / "region_layer_map" / f"{e.brainscore_id}.json"))
        assert e.region_layer_map == json.loads(Path(published).read_text())  # recorded as data, verbatim
        assert Path(published).parent.parent.name in e.attribution and "xie2025vision" in e.citation


def test_untrained_entries_build_from_their_seed_without_download(tmp_path, monkeypatch):
    import torch

    from latentzoo import from_pretrained

    monkeypatch.setenv("LATENTZOO_OFFLINE", "1")
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    assert list_models(objective="untrained", arch="r18") == ["tdw-untrained-r18"] + [
        f"untrained-r18-s{s}" for s in range(5)]
    a, b, c = (from_pretrained(i) for i in ("untrained-r18-s1", "untrained-r18-s1", "untrained-r18-s2"))
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)
    assert a.config.id == "untrained-r18-s1" and a.config.extra["layers"]["IT"] == "layer4"
    assert not (tmp_path / "cache").exists()


def test_folder_entries_load_local_model_folders_relative_to_their_registry_and_check_sha(tmp_path, monkeypatch):
    import torch

    from latentzoo import from_pretrained
    from latentzoo.fileio import sha256_file
    from latentzoo.hub import save_pretrained
    from latentzoo.models.network import LatentNet

    net = LatentNet.create("r18", "distance", seed=3, input_size=32)
    save_pretrained(net, tmp_path / "zoo" / "runs" / "d")
    sha = sha256_file(tmp_path / "zoo" / "runs" / "d" / "model.safetensors")
    (tmp_path / "zoo" / "registry.yaml").write_text(yaml.safe_dump({"families": [{
        "id": "my-{objective}-r18", "arch": "r18", "seed": 3, "dataset": "mine",
        "layers": {"V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4"},
        "members": {"distance": {"weights": {"folder": {"path": "runs/d", "sha256": sha}}},
                    "rotation": {"weights": {"folder": {"path": "runs/missing"}}}}}]}))
    use_registry(monkeypatch, tmp_path / "zoo" / "registry.yaml")
    monkeypatch.chdir(tmp_path)  # the path is relative to the registry file, not to the working directory
    loaded = from_pretrained("my-distance-r18")
    assert loaded.config.id == "my-distance-r18" and loaded.config.extra["layers"]["IT"] == "layer4"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(UserError, match="runs/missing has no model.safetensors"):
        from_pretrained("my-rotation-r18")
    (tmp_path / "zoo" / "runs" / "d" / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match the sha256 pinned"):
        from_pretrained("my-distance-r18")


def test_list_models_filters():
    assert len(list_models()) == 34
    assert list_models(objective="distance") == ["tdw-distance-r18", "tdw-distance-r50"]
    assert len(list_models(arch="r50", seed=0)) == 13
    assert list_models(seed=4, arch="r50") == ["untrained-r50-s4"]
    with pytest.raises(UserError, match="unknown objective 'distanse'; did you mean distance"):
        list_models(objective="distanse")  # a typo is an error, not an empty list
    with pytest.raises(UserError, match="unknown arch 'r34'"):
        list_models(arch="r34")


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.update(arch="r34"), r"family 0 \(x-\{objective\}\) member distance \[x-distance\]: field 'arch': "
                                     r"unknown 'r34'; choose one of r18, r50"),
    (lambda f: f.update(members={"distanse": {}}), r"field 'objective': unknown 'distanse'"),
    (lambda f: f.pop("seed"), r"field 'seed': expected int, got None"),
    (lambda f: f.update(weights={"url": {"href": "http://x/y.pth", "format": "pickle"}}), r"unknown format 'pickle'"),
    (lambda f: f.update(weights={"url": {"href": "h", "format": "authors-pth", "sha256": "abc"}}),
     r"'sha256' must be 64 lowercase hex digits"),
    (lambda f: f.update(weights={"hub": {"repo": "a/b"}}), r"field 'weights.hub': missing 'revision'"),
    (lambda f: f.update(weights={"url": {}, "init": "seed"}), r"expected exactly one of hub, url, folder, init"),
    (lambda f: f.update(layers={"V1": "layer1", "V5": "layer2"}), r"field 'layers': expected .* got V5: 'layer2'"),
    (lambda f: f.update(colour="red"), r"unknown field\(s\) \['colour'\]"),
    (lambda f: f.update(id="x-{objectiv}"), r"template 'x-\{objectiv\}' uses unknown field 'objectiv'"),
])
def test_validation_errors_name_file_entry_and_field(tmp_path, mutate, message):
    family = {"id": "x-{objective}", "arch": "r18", "seed": 0, "dataset": "d", "weights": {"init": "seed"},
              "layers": {"V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4"},
              "members": {"distance": {}}}
    mutate(family)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"families": [family]}))
    with pytest.raises(UserError, match=f"^{str(path)}: .*{message}"):
        load_registry([path])


def test_file_level_errors(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("families: [\n")
    with pytest.raises(UserError, match=r"r.yaml: not valid YAML"):
        load_registry([path])
    path.write_text("familys: []\n")
    with pytest.raises(UserError, match=r"unknown top-level field\(s\) \['familys'\]"):
        load_registry([path])
    path.write_text("overrides: {nope-r18: {seed: 1}}\n")
    with pytest.raises(UserError, match="overrides: unknown model id 'nope-r18'"):
        load_registry([shipped_registry_path(), path])
    path.write_text(yaml.safe_dump({"families": [{"id": "tdw-all-r18", "arch": "r18", "objective": "all", "seed": 0,
                                                  "dataset": "d", "weights": {"init": "seed"},
                                                  "layers": {r: "layer1" for r in ("V1", "V2", "V4", "IT")}}]}))
    with pytest.raises(UserError, match="id 'tdw-all-r18' is already defined in .*registry.yaml"):
        load_registry([shipped_registry_path(), path])


def test_overrides_are_validated_and_rewritten_alone_keeping_the_rest_of_the_file(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("# my zoo\nversion: 1  # keep\noverrides: {}\ncitations: {mine: '@misc{x}'}  # after\n")
    write_override(user, "tdw-distance-r18", {"layers": {"IT": "layer4.1.relu"}})
    write_override(user, "tdw-distance-r18", {"weights": {"url": {"sha256": "a" * 64}}})
    text = user.read_text()
    assert text.startswith("# my zoo\nversion: 1  # keep\noverrides:\n") and text.endswith("'@misc{x}'}  # after\n")
    entry = load_registry([shipped_registry_path(), user])["tdw-distance-r18"]
    assert entry.layers == {"V1": "layer1", "V2": "layer1", "V4": "layer1", "IT": "layer4.1.relu", "behavior": "avgpool"}
    assert entry.weights["url"]["sha256"] == "a" * 64 and entry.weights["url"]["format"] == "authors-pth"
    write_override(user, "tdw-distance-r18", {"weights": {"url": {"sha256": "xyz"}}})
    with pytest.raises(UserError, match=r"overrides: tdw-distance-r18: field 'weights.url': 'sha256' must be"):
        load_registry([shipped_registry_path(), user])


def test_models_command_and_registry_pin_over_loopback(tmp_path, monkeypatch, capsys):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "w.pth").write_bytes(b"weights bytes")
    server = FileServer(tmp_path / "srv")
    try:
        use_registry(monkeypatch, url_registry(tmp_path / "reg.yaml", "t-distance-r18", f"{server.url}/w.pth"))
        monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
        assert main(["models", "--objective", "distance"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines[:-1]] == ["tdw-distance-r18", "tdw-distance-r50", "t-distance-r18"]
        assert lines[0].endswith("unpinned") and lines[-1] == "3 models"

        target = tmp_path / "pins.yaml"
        assert main(["registry", "pin", "t-distance-r18", "--registry", str(target)]) == 0
        sha = hashlib.sha256(b"weights bytes").hexdigest()
        assert f"t-distance-r18 {sha}" in capsys.readouterr().out
        assert yaml.safe_load(target.read_text())["overrides"]["t-distance-r18"] == {"weights": {"url": {"sha256": sha}}}
        assert not any((tmp_path / "cache" / "downloads").iterdir())  # pinning keeps nothing
        assert main(["registry", "pin", "untrained-r18-s0", "--registry", str(target)]) == 1
        assert "nothing to pin" in capsys.readouterr().err
    finally:
        server.close()


def test_every_authors_entry_cites_the_paper_with_its_six_authors():
    from latentzoo.citation import BIBTEX

    registry = load_registry([shipped_registry_path()])
    authors = [i for i in registry.ids if i.startswith("tdw-")]
    assert len(authors) == 24
    assert {registry[i].citation.strip() for i in authors} == {BIBTEX}
    assert "Xie, Yudi and Huang, Weichen and Alter, Esther and Schwartz, Jeremy and Tenenbaum, Joshua B. and " \
           "DiCarlo, James J." in BIBTEX


def test_the_citation_has_one_home_in_the_package():
    import latentzoo

    root = Path(latentzoo.__file__).parent
    holders = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                     if p.suffix in (".py", ".yaml") and "@inproceedings{xie" in p.read_text())
    assert holders == ["citation.py", "registry.yaml"]
