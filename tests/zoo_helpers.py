"""Shared by the zoo tests: a loopback file server, authors-format checkpoints, user registries."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from pathlib import Path

import torch
import torchvision
import yaml

TINY_MODEL = "tiny-untrained-r18"  # a seeded ResNet-18 at 64 px: Brain-Score's machinery, a fraction of the compute
TINY_REGISTRY = f"""families:
  - id: {TINY_MODEL}
    arch: r18
    objective: untrained
    seed: 0
    dataset: none
    input_size: 64
    weights: {{init: seed}}
    layers: {{V1: layer1, V2: layer2, V4: layer3, IT: layer4}}
"""


class FileServer:
    """Serves ``root`` on 127.0.0.1 over real HTTP and counts GET requests per path; each answer
    waits ``delay`` seconds (a slow network, so concurrent clients overlap)."""

    def __init__(self, root: Path, delay: float = 0.0):
        self.root, self.requests, self.delay = Path(root), [], delay
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                time.sleep(server.delay)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def authors_checkpoint(path: Path, arch: str = "resnet18", seed: int = 0) -> torch.nn.Module:
    """Write a ``.pth`` like the paper authors' (674-unit fc, ``_orig_mod.`` keys); return the model."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=674).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"_orig_mod.{k}": v for k, v in model.state_dict().items()}, path)
    return model


def url_registry(path: Path, model_id: str, href: str, sha256: str | None = None,
                 objective: str = "distance", arch: str = "r18") -> Path:
    """A user registry file with one authors-format URL entry."""
    url = {"href": href, "format": "authors-pth"}
    if sha256:
        url["sha256"] = sha256
    doc = {"version": 1, "families": [{
        "id": model_id, "arch": arch, "objective": objective, "seed": 0, "dataset": "test",
        "head": 674, "units": "zscore", "weights": {"url": url},
        "layers": {"V1": "layer1", "V2": "layer2", "V4": "layer2", "IT": "layer3"}}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def use_registry(monkeypatch, *paths: Path) -> None:
    """Point ``LATENTZOO_REGISTRY`` at ``paths`` (the shipped registry is still read first)."""
    monkeypatch.setenv("LATENTZOO_REGISTRY", os.pathsep.join(str(p) for p in paths))


def no_network(monkeypatch) -> None:
    """Route HTTP(S) through a closed loopback port (one attempt), so downloads such as Brain-Score's S3 fail fast."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
