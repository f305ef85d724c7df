"""Model folders, URL downloads of authors-format checkpoints, the cache, and the Hub (via olah) on loopback."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch

import latentzoo
from latentzoo.errors import UserError
from latentzoo.hub import load_pretrained, push_to_hub, save_pretrained
from latentzoo.models.network import LatentNet
from latentzoo.registry import load_registry
from latentzoo.weights import cache_folder
from loopback_hub import validate_yaml
from zoo_helpers import FileServer, authors_checkpoint, url_registry, use_registry

X = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def zoo_env(tmp_path, monkeypatch):
    """Empty cache, a loopback server with one authors-format ResNet-18 ``.pth``."""
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LATENTZOO_OFFLINE", raising=False)
    model = authors_checkpoint(tmp_path / "srv" / "dist.pth")
    server = FileServer(tmp_path / "srv")
    yield tmp_path, server, model
    server.close()


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


def test_model_folder_round_trip_and_timm(tmp_path):
    import timm

    net = LatentNet.create("r18", "distance-rotation", seed=3).eval()
    folder = save_pretrained(net, tmp_path / "m", dataset="tdw-117", metrics={"test_loss": 0.25})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 7
    assert config["pretrained_cfg"]["input_size"] == [3, 224, 224]
    assert config["latentzoo"]["objective"] == "distance-rotation"
    assert config["latentzoo"]["extra"]["metrics"] == {"test_loss": 0.25}
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm") and "brain-score" in card and "tdw-117" in card

    loaded = load_pretrained(folder)
    via_timm = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert torch.equal(outputs(loaded), outputs(net))
    assert torch.equal(outputs(via_timm), outputs(net))
    assert loaded.config.to_dict() == {**net.config.to_dict(), "extra": {"dataset": "tdw-117",
                                                                        "metrics": {"test_loss": 0.25}}}


def test_load_pretrained_refuses_foreign_weights(tmp_path):
    save_pretrained(LatentNet.create("r18", "distance", seed=0), tmp_path / "a")
    save_pretrained(LatentNet.create("r18", "rotation", seed=0), tmp_path / "b")
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(UserError, match="do not fit a r18 with a 1-unit head"):
        load_pretrained(tmp_path / "a")
    with pytest.raises(UserError, match="config.json is missing"):
        load_pretrained(tmp_path)


def test_url_download_converts_once_and_caches(zoo_env, monkeypatch):
    tmp, server, model = zoo_env
    use_registry(monkeypatch, url_registry(tmp / "reg.yaml", "t-distance-r18", f"{server.url}/dist.pth"))
    with pytest.warns(UserWarning, match="no sha256 pinned"):
        net = latentzoo.from_pretrained("t-distance-r18")
    assert torch.equal(outputs(net), outputs(model))  # `_orig_mod.` stripped, all 674 units kept
    assert net.config.units == "zscore" and net.config.head_size == 674
    assert [s.to_dict() for s in net.config.layout] == [{"task": "distance", "start": 665, "stop": 666}]
    assert set(net.predict(torch.zeros(3, 40, 50, 3, dtype=torch.uint8))) == {"z"}

    again = latentzoo.from_pretrained("t-distance-r18")
    assert server.requests == ["/dist.pth"]  # the second load made no request
    assert torch.equal(outputs(again), outputs(model))
    folder = cache_folder(load_registry()["t-distance-r18"])
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                        "source.json"]
    assert not any((tmp / "cache" / "downloads").iterdir())  # the .pth is not kept


def test_sha256_mismatch_is_refused_without_poisoning_the_cache(zoo_env, monkeypatch):
    tmp, server, model = zoo_env
    good = hashlib.sha256((tmp / "srv" / "dist.pth").read_bytes()).hexdigest()
    use_registry(monkeypatch, url_registry(tmp / "reg.yaml", "t-distance-r18", f"{server.url}/dist.pth",
                                           sha256="0" * 64))
    with pytest.raises(UserError, match="does not match the pinned 0000"):
        latentzoo.from_pretrained("t-distance-r18")
    cache = tmp / "cache"
    assert not list((cache / "models").glob("*/*")) and not any((cache / "downloads").iterdir())

    url_registry(tmp / "reg.yaml", "t-distance-r18", f"{server.url}/dist.pth", sha256=good)
    net = latentzoo.from_pretrained("t-distance-r18")
    assert torch.equal(outputs(net), outputs(model))
    assert json.loads((cache_folder(load_registry()["t-distance-r18"]) / "source.json").read_text())[
        "sha256"] == good


def test_offline_and_unreachable_give_one_clear_line(zoo_env, monkeypatch):
    tmp, server, _ = zoo_env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again: nothing listens there
    use_registry(monkeypatch, url_registry(tmp / "reg.yaml", "t-distance-r18",
                                           f"http://127.0.0.1:{dead}/dist.pth", sha256="1" * 64))
    with pytest.raises(UserError, match=r"cannot download http://127.0.0.1:\d+/dist.pth \(.*refused") as e:
        latentzoo.from_pretrained("t-distance-r18")
    assert "\n" not in str(e.value)
    monkeypatch.setenv("LATENTZOO_OFFLINE", "1")
    with pytest.raises(UserError, match="not in the cache .* downloads are off"):
        latentzoo.from_pretrained("t-distance-r18")
    with pytest.raises(UserError, match="unknown model id 't-distanse-r18'; did you mean t-distance-r18"):
        latentzoo.from_pretrained("t-distanse-r18")


def test_concurrent_loads_share_one_download(zoo_env, monkeypatch):
    tmp, server, model = zoo_env
    sha = hashlib.sha256((tmp / "srv" / "dist.pth").read_bytes()).hexdigest()
    use_registry(monkeypatch, url_registry(tmp / "reg.yaml", "t-distance-r18", f"{server.url}/dist.pth", sha))
    results, errors = [], []

    def load():
        try:
            results.append(outputs(latentzoo.from_pretrained("t-distance-r18")))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert server.requests == ["/dist.pth"]
    assert all(torch.equal(r, outputs(model)) for r in results)


def test_unsafe_pickle_is_never_executed(zoo_env, monkeypatch):
    tmp, server, _ = zoo_env
    marker = tmp / "executed"
    torch.save({"fc.weight": _Evil(str(marker))}, tmp / "srv" / "evil.pth")
    use_registry(monkeypatch, url_registry(tmp / "reg.yaml", "t-evil-r18", f"{server.url}/evil.pth"))
    with pytest.warns(UserWarning), pytest.raises(UserError, match="not a weights-only PyTorch state dict"):
        latentzoo.from_pretrained("t-evil-r18")
    assert not marker.exists()


class _Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# ---------------------------------------------------------------- Hugging Face Hub on loopback

class HubCommitServer:
    """The Hub's upload endpoints on 127.0.0.1, committing into local git repos (``<root>/<org>/<name>``).

    Answers ``POST /api/repos/create``, ``/api/validate-yaml``, ``/api/models/<repo>/preupload/<rev>`` (every file
    "regular", i.e. inlined in the commit) and ``/api/models/<repo>/commit/<rev>`` (ndjson), so
    ``HfApi.upload_folder`` runs unmodified against a local folder target.
    """

    def __init__(self, root: Path):
        self.root = root
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:3] == ["api", "repos", "create"]:
                    name = json.loads(body)
                    repo = f"{name['organization']}/{name['name']}" if name.get("organization") else name["name"]
                    hub.repo_dir(repo)
                    return self.reply({"url": f"{hub.url}/{repo}", "name": repo})
                if parts == ["api", "validate-yaml"]:
                    return self.reply(*validate_yaml(body))
                if len(parts) < 5:
                    return self.reply({"path": self.path, "error": "not implemented"}, status=404)
                repo, action = "/".join(parts[2:4]), parts[4]
                if action == "preupload":
                    files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                             for f in json.loads(body)["files"]]
                    return self.reply({"files": files})
                oid = hub.commit(repo, [json.loads(line) for line in body.splitlines() if line.strip()])
                self.reply({"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid,
                            "pullRequestUrl": None})

            def reply(self, obj, status=200):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt, *args):
                hub.log.append(fmt % args)

        self.log: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def repo_dir(self, repo: str) -> Path:
        path = self.root / repo
        if not (path / ".git").exists():
            path.mkdir(parents=True)
            subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
        return path

    def commit(self, repo: str, items: list[dict]) -> str:
        path = self.repo_dir(repo)
        header = next(i["value"] for i in items if i["key"] == "header")
        for item in items:
            if item["key"] == "file":
                target = path / item["value"]["path"]
                target.write_bytes(base64.b64decode(item["value"]["content"]))
        git = ["git", "-C", str(path), "-c", "user.name=test", "-c", "user.email=test@localhost"]
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-q", "-m", header["summary"]], check=True)
        return subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def olah_hub(tmp_path, monkeypatch):
    """olah serving ``<tmp>/mirrors/models/<org>/<repo>`` git repos offline, as ``HF_ENDPOINT``."""
    from huggingface_hub import constants

    olah_cli = Path(sys.executable).with_name("olah-cli")
    if not olah_cli.exists():
        pytest.skip("olah is not installed (pip install olah==0.5.4)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mirrors = tmp_path / "mirrors"
    (mirrors / "models").mkdir(parents=True)
    config = tmp_path / "olah.toml"
    config.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{tmp_path / "olah-repos"}"\n'
                      f'mirrors-path = ["{mirrors}"]\n[accessibility]\noffline = true\n')
    log = open(tmp_path / "olah.log", "wb")
    proc = subprocess.Popen([str(olah_cli), "-c", str(config)], cwd=tmp_path, stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/api/models/none/none", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # answering
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"olah did not start: {(tmp_path / 'olah.log').read_text()[-2000:]}")
            time.sleep(0.3)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    uploads = HubCommitServer(mirrors / "models")
    yield uploads
    uploads.close()
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.mark.slow
def test_push_to_hub_then_pull_through_olah(olah_hub, tmp_path, monkeypatch):
    import timm
    from huggingface_hub import HfApi

    net = LatentNet.create("r18", "translation", seed=5).eval()
    folder = save_pretrained(net, tmp_path / "m", dataset="tdw-117")
    oid = push_to_hub(folder, "zoo/tdw-translation-r18", api=HfApi(endpoint=olah_hub.url, token="x"))
    pushed = tmp_path / "mirrors" / "models" / "zoo" / "tdw-translation-r18"
    assert (pushed / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert len(oid) == 40

    # unmodified hf_hub_download through olah: ad-hoc repo, timm, and a pinned registry entry
    assert torch.equal(outputs(latentzoo.from_pretrained(f"hf-hub:zoo/tdw-translation-r18@{oid}")), outputs(net))
    second = push_to_hub(net, "zoo/tdw-translation-r18", api=HfApi(endpoint=olah_hub.url, token="x"),
                         metrics={"test_loss": 0.5})  # a network is saved, then uploaded
    assert second != oid and "test_loss" in (pushed / "README.md").read_text()
    assert torch.equal(outputs(timm.create_model("hf-hub:zoo/tdw-translation-r18", pretrained=True)), outputs(net))
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    registry = tmp_path / "reg.yaml"
    entry = {"id": "t-translation-r18", "arch": "r18", "objective": "translation", "seed": 0,
             "dataset": "tdw-117", "layers": {"V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4"},
             "weights": {"hub": {"repo": "zoo/tdw-translation-r18", "revision": oid, "sha256": sha}}}
    registry.write_text(json.dumps({"families": [entry]}))  # JSON is YAML
    use_registry(monkeypatch, registry)
    assert torch.equal(outputs(latentzoo.from_pretrained("t-translation-r18")), outputs(net))
    assert (cache_folder(load_registry()["t-translation-r18"]) / "source.json").exists()

    entry["weights"]["hub"]["sha256"] = "f" * 64
    entry["id"] = "t-bad-r18"
    registry.write_text(json.dumps({"families": [entry]}))
    with pytest.raises(UserError, match="does not match the pinned ffff"):
        latentzoo.from_pretrained("t-bad-r18")
    with pytest.raises(UserError, match="cannot download zoo/missing@main from the Hugging Face Hub"):
        latentzoo.from_pretrained("hf-hub:zoo/missing")


def test_plain_timm_folder_loads_as_a_network(tmp_path):
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    save_for_hf(model, tmp_path / "timm", safe_serialization=True)
    net = load_pretrained(tmp_path / "timm")
    assert (net.config.arch, net.config.objective, net.config.head_size) == ("resnet18", "imagenet", 10)
    assert torch.equal(outputs(net), outputs(model))
