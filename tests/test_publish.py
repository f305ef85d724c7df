"""Folders and Hub repos as ids, `registry add`, `publish` to a loopback Hub, `download` for offline use."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
import yaml

import latentzoo
from latentzoo.cli import main
from latentzoo.errors import UserError
from latentzoo.hub import save_pretrained
from latentzoo.models.network import LatentNet
from latentzoo.publish import publish
from latentzoo.registry import load_registry
from latentzoo.weights import resolve
from loopback_hub import hub  # noqa: F401  (the loopback Hub fixture)
from zoo_helpers import FileServer, authors_checkpoint, url_registry, use_registry

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
LAYERS = {"V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4", "behavior": "avgpool"}


def raw(model: torch.nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture
def trained(tmp_path):
    """A model folder like `latentzoo train` writes (32 px, 8 named categories, metrics, no layer map)."""
    net = LatentNet.create("r18", "category", n_categories=8, seed=7, input_size=32).eval()
    folder = save_pretrained(net, tmp_path / "runs" / "dc", dataset="tiny-8", seed=7, steps=200,
                             metrics={"test_loss": 0.75, "category_top1": 0.5},
                             labels={"category": [f"cat{i}" for i in range(8)]})
    return net, folder


def local_benchmark(folder, region: str):
    """A local benchmark folder: 12 random stimuli, 4 neuroids, 2 repetitions."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
    pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(12)],
                  "filename": [f"images/{i}.png" for i in range(12)]}).to_csv(folder / "stimuli.csv", index=False)
    pd.DataFrame([{"stimulus_id": f"s{i}", "repetition": r, "neuroid_id": f"n{n}", "response": rng.normal()}
                  for i in range(12) for r in range(2) for n in range(4)]).to_csv(folder / "responses.csv", index=False)
    (folder / "benchmark.json").write_text(json.dumps({"region": region, "splits": 2}))
    return folder


def test_registry_add_writes_a_complete_pinned_entry_from_the_folder(trained, tmp_path, monkeypatch, capsys):
    net, folder = trained
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    user = tmp_path / "user.yaml"
    use_registry(monkeypatch, user)
    assert main(["registry", "add", str(folder), "--id", "my-dc-r18"]) == 0
    assert "my-dc-r18: r18 category seed 7, tiny-8, 32 px, layers: none yet" in capsys.readouterr().out
    family = yaml.safe_load(user.read_text())["families"][0]
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert family["weights"] == {"folder": {"path": "runs/dc", "sha256": sha}}  # relative to the registry file
    assert {k: family[k] for k in ("arch", "objective", "seed", "dataset", "input_size", "head")} == {
        "arch": "r18", "objective": "category", "seed": 7, "dataset": "tiny-8", "input_size": 32,
        "head": 8}
    loaded = latentzoo.from_pretrained("my-dc-r18")
    assert torch.equal(raw(loaded), raw(net)) and loaded.config.id == "my-dc-r18"
    assert resolve(folder).id == resolve(str(folder) + "/").id == "my-dc-r18"  # the folder resolves to its entry
    with pytest.raises(UserError, match="has no layer for V1, V2, V4, IT; choose them with `latentzoo layermap"):
        resolve("my-dc-r18").region_layer_map
    with pytest.raises(UserError, match="runs/dd: no such model folder .*hf-hub:ORG/NAME"):
        resolve(str(folder.parent / "dd"))  # a mistyped folder is not taken for a Hub repo

    # an IT-only map (layermap on one IT benchmark) commits; a V1 benchmark is refused before any model runs
    from latentzoo.models.brainscore import commit, score
    from latentzoo.registry import write_override

    write_override(user, "my-dc-r18", {"layers": {"IT": "layer4"}})
    assert dict(commit(str(folder)).layer_model.region_layer_map) == {"IT": "layer4"}
    v1 = f"local:{local_benchmark(tmp_path / 'v1', 'V1')}"
    with pytest.raises(UserError, match=rf"my-dc-r18 has no V1 layer for local\.v1\.V1-pls; choose one with "
                                        rf"`latentzoo layermap my-dc-r18 --benchmarks {re.escape(v1)}`"):
        score("my-dc-r18", [v1])
    write_override(user, "my-dc-r18", {"layers": {}})

    # a layer map in the folder's config (what `layermap FOLDER` writes) is picked up on re-adding
    from latentzoo.hub import update_card_fields

    update_card_fields(folder, layers=LAYERS)
    assert main(["registry", "add", str(folder), "--id", "my-dc-r18"]) == 0
    assert load_registry()["my-dc-r18"].region_layer_map == {r: LAYERS[r] for r in ("V1", "V2", "V4", "IT")}
    assert len(yaml.safe_load(user.read_text())["families"]) == 1  # replaced, not duplicated
    assert main(["registry", "add", str(folder), "--id", "untrained-r18-s0"]) == 1
    assert "id 'untrained-r18-s0' already names a model" in capsys.readouterr().err
    assert main(["registry", "pin", str(folder)]) == 0  # a registered folder is its id
    assert capsys.readouterr().out.splitlines()[0] == f"my-dc-r18 {sha}"


def test_publish_a_folder_then_every_usage_line_of_its_card_works(hub, trained, tmp_path, monkeypatch):
    import timm

    net, folder = trained
    (tmp_path / "scores.json").write_text(json.dumps({"scores": [
        {"benchmark": "local.it.IT-pls", "region": "IT", "score": 0.123456}]}))
    from latentzoo.hub import update_card_fields

    update_card_fields(folder, layers=LAYERS)
    assert main(["registry", "add", str(folder), "--id", "my-dc-r18"]) == 0
    assert main(["publish", str(folder), "--repo", "lab/dc-r18", "--scores", str(tmp_path / "scores.json")]) == 0

    entry = load_registry()["my-dc-r18"]
    pushed = hub.repos["lab/dc-r18"]["commits"][hub.repos["lab/dc-r18"]["main"]]
    assert entry.weights == {"hub": {"repo": "lab/dc-r18", "revision": hub.repos["lab/dc-r18"]["main"],
                                     "sha256": hashlib.sha256(pushed["model.safetensors"]).hexdigest()}}
    assert sorted(pushed) == ["README.md", "config.json", "model.safetensors"]
    card = pushed["README.md"].decode()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "timm" and "brain-score" in front["tags"] and front["datasets"] == ["tiny-8"]
    results = {r["task"]["name"]: {m["name"]: m["value"] for m in r["metrics"]}
               for r in front["model-index"][0]["results"]}
    assert results == {"test metrics": {"test_loss": 0.75, "category_top1": 0.5},
                       "Brain-Score": {"local.it.IT-pls": 0.1235}}
    assert "0: cat0, 1: cat1" in card and "| training steps | 200 |" in card and "| input size | 32 px |" in card
    for section in ("## Intended use", "## Limitations", "## Training data"):
        assert section in card
    bibtex = card.split("```bibtex\n")[1].split("```")[0]
    assert "author={Xie, Yudi and Huang, Weichen and Alter, Esther and Schwartz, Jeremy and Tenenbaum, Joshua B. " \
           "and DiCarlo, James J.}" in bibtex and "Vision CNNs trained to estimate spatial latents" in bibtex

    # the card's usage lines name real ids: run them as written (weights from the loopback Hub)
    from_pretrained_id, = re.findall(r'latentzoo\.from_pretrained\("([^"]+)"\)', card)
    timm_id, = re.findall(r'timm\.create_model\("([^"]+)"', card)
    score_id, = re.findall(r"brainscore score --model (\S+)", card)
    assert from_pretrained_id == timm_id == score_id == "hf-hub:lab/dc-r18"
    assert torch.equal(raw(latentzoo.from_pretrained(from_pretrained_id)), raw(net))
    assert torch.equal(raw(timm.create_model(timm_id, pretrained=True)), raw(net))
    assert resolve(score_id).id == "my-dc-r18" and resolve(score_id).region_layer_map["IT"] == "layer4"
    assert torch.equal(raw(latentzoo.from_pretrained("my-dc-r18")), raw(net))  # the registered id, now from the Hub


def test_publish_an_authors_pth_id_converts_it_and_repins_the_id(hub, tmp_path, monkeypatch):
    upstream = authors_checkpoint(tmp_path / "srv" / "d.pth", seed=3)
    server = FileServer(tmp_path / "srv")
    authors = url_registry(tmp_path / "authors.yaml", "t-distance-r18", f"{server.url}/d.pth",
                           hashlib.sha256((tmp_path / "srv" / "d.pth").read_bytes()).hexdigest())
    doc = yaml.safe_load(authors.read_text())
    doc["families"][0]["protocol"] = "leaderboard"  # as the shipped tdw-* ids
    authors.write_text(yaml.safe_dump(doc))
    use_registry(monkeypatch, authors, tmp_path / "user.yaml")
    done = publish("t-distance-r18", "lab/t-distance-r18", registry_path=tmp_path / "user.yaml")
    server.close()
    assert yaml.safe_load((tmp_path / "user.yaml").read_text())["overrides"]["t-distance-r18"] == {
        "weights": {"hub": {"repo": "lab/t-distance-r18", "revision": done.revision, "sha256": done.sha256}}}
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    net = latentzoo.from_pretrained("t-distance-r18")  # loads from the Hub now (the .pth server is gone)
    assert torch.allclose(raw(net, x), raw(upstream, x), atol=1e-5) and net.config.units == "zscore"
    assert any(r.endswith("/lab/t-distance-r18/resolve/" + done.revision + "/model.safetensors")
               for r in hub.requests)
    with pytest.raises(UserError, match="--repo must be ORG/NAME"):
        publish("t-distance-r18", "no-org")

    # its submission keeps the authors' leaderboard layers (the last one, fc, read out) at 224 px
    from latentzoo.models.submission import model_spec

    spec = model_spec(load_registry()["t-distance-r18"], net.config)
    assert (spec["layers"], spec["behavior"], spec["input_size"]) == (
        ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"], "fc", 224)
    assert spec["features"] == {"conv1": 64 * 112 * 112, "layer1": 64 * 56 * 56, "layer2": 128 * 28 * 28,
                                "layer3": 256 * 14 * 14, "layer4": 512 * 7 * 7, "fc": 674}


def test_download_prefetches_and_offline_errors_name_the_source_and_the_command(hub, tmp_path, monkeypatch, capsys):
    server_root = tmp_path / "srv"
    authors_checkpoint(server_root / "d.pth")
    server = FileServer(server_root)
    href = f"{server.url}/d.pth"
    use_registry(monkeypatch, url_registry(tmp_path / "authors.yaml", "t-distance-r18", href,
                                           hashlib.sha256((server_root / "d.pth").read_bytes()).hexdigest()))
    monkeypatch.setenv("LATENTZOO_OFFLINE", "1")
    with pytest.raises(UserError, match=rf"weights come from {re.escape(href)}: run `latentzoo download "
                                        r"t-distance-r18` where the network exists"):
        latentzoo.from_pretrained("t-distance-r18")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"lab/none@main .* not in the cache; run `latentzoo download hf-hub:lab/none"):
        latentzoo.from_pretrained("hf-hub:lab/none")

    for name in ("LATENTZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert main(["download", "t-distance-r18", "untrained-r18-s0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("t-distance-r18: ") and out[0].endswith(f"(from {href})")
    assert out[1] == "untrained-r18-s0: nothing to download (seed 0, built locally)"
    server.close()
    monkeypatch.setenv("LATENTZOO_OFFLINE", "1")
    assert latentzoo.from_pretrained("t-distance-r18").config.head_size == 674  # offline, from the cache
