"""A Hugging Face Hub on 127.0.0.1 that accepts uploads and serves downloads, for unmodified clients.

Implements the endpoints ``HfApi.create_repo``/``upload_folder`` call (``POST /api/repos/create``,
``/api/validate-yaml``, ``/api/models/<repo>/preupload/<rev>`` answering every file "regular", i.e.
inlined in the commit, and ``/api/models/<repo>/commit/<rev>`` with its NDJSON body) and the ones
``hf_hub_download`` calls (``HEAD``/``GET /<repo>/resolve/<rev>/<path>`` with ``X-Repo-Commit``,
``ETag`` and the Hub's ``X-Error-Code`` on 404s). Repos live in memory: every commit is an
immutable ``{path: bytes}`` snapshot named by a 40-hex id, ``main`` points at the newest.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import urllib.parse

import pytest
import yaml


def validate_yaml(body: bytes) -> tuple[dict, int]:
    """The Hub's answer to ``POST /api/validate-yaml``: the model card's front matter must parse and name
    ``library_name``, ``license`` and ``tags``; returns (JSON body, HTTP status)."""
    front = yaml.safe_load(json.loads(body)["content"].split("---")[1])
    missing = [k for k in ("library_name", "license", "tags") if k not in front]
    return {"errors": [{"message": f"missing {k}"} for k in missing], "warnings": []}, 400 if missing else 200


class LoopbackHub:
    """``with LoopbackHub() as hub:`` serves until the block ends (``hub.url`` is the endpoint)."""

    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo -> {"commits": {oid: {path: bytes}}, "main": oid}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                hub.requests.append(f"POST {self.path}")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urllib.parse.urlparse(self.path).path.strip("/").split("/")
                if parts == ["api", "repos", "create"]:
                    spec = json.loads(body)
                    repo = "/".join(filter(None, [spec.get("organization"), spec["name"]]))
                    with hub.lock:
                        hub.repos.setdefault(repo, {"commits": {}, "main": None})
                    return self.reply({"url": f"{hub.url}/{repo}", "name": repo})
                if parts == ["api", "validate-yaml"]:
                    return self.reply(*validate_yaml(body))
                if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[2] + "/" + parts[3] in hub.repos:
                    repo, action = f"{parts[2]}/{parts[3]}", parts[4]
                    if action == "preupload":
                        return self.reply({"files": [{"path": f["path"], "uploadMode": "regular",
                                                      "shouldIgnore": False} for f in json.loads(body)["files"]]})
                    if action == "commit":
                        oid = hub.commit(repo, [json.loads(line) for line in body.splitlines() if line.strip()])
                        return self.reply({"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid,
                                           "pullRequestUrl": None})
                self.reply({"error": f"not implemented: POST {self.path}"}, status=404, code="RepoNotFound")

            def do_HEAD(self):
                self.resolve(send_body=False)

            def do_GET(self):
                self.resolve(send_body=True)

            def resolve(self, send_body: bool):
                hub.requests.append(f"{self.command} {self.path}")
                parts = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self.reply({"error": "not found"}, status=404, code="RepoNotFound", body=send_body)
                repo, revision, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                with hub.lock:
                    state = hub.repos.get(repo)
                    oid = state and (state["main"] if revision == "main" else revision)
                    files = state and state["commits"].get(oid)
                if state is None:
                    return self.reply({"error": "Repository not found"}, 404, "RepoNotFound", send_body)
                if files is None:
                    return self.reply({"error": "Revision not found"}, 404, "RevisionNotFound", send_body)
                if path not in files:
                    return self.reply({"error": "Entry not found"}, 404, "EntryNotFound", send_body)
                data = files[path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", oid)
                self.send_header("ETag", '"%s"' % hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def reply(self, obj, status=200, code=None, body=True):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if code:
                    self.send_header("X-Error-Code", code)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, fmt, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def commit(self, repo: str, items: list[dict]) -> str:
        """Apply one NDJSON commit (header, file, deletedFile lines) on top of ``main``; returns its id."""
        with self.lock:
            state = self.repos[repo]
            files = dict(state["commits"].get(state["main"]) or {})
            for item in items:
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
            digest = hashlib.sha1(json.dumps([state["main"], sorted(
                (p, hashlib.sha256(d).hexdigest()) for p, d in files.items())]).encode()).hexdigest()
            state["commits"][digest] = files
            state["main"] = digest
            return digest

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "LoopbackHub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A :class:`LoopbackHub` as huggingface_hub's endpoint (this process and, through the environment,
    subprocesses), with empty Hugging Face and latentzoo caches, a dummy upload token and the user
    registry ``tmp_path/user.yaml``. Import it into a test module to use it."""
    from huggingface_hub import constants

    from zoo_helpers import use_registry

    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "cache"))
    use_registry(monkeypatch, tmp_path / "user.yaml")
    with LoopbackHub() as server:
        hf_cache = str(tmp_path / "hf-cache")
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", hf_cache)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        for name, value in (("HF_ENDPOINT", server.url), ("HF_HUB_CACHE", hf_cache), ("HF_TOKEN", "loopback")):
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("LATENTZOO_OFFLINE", raising=False)
        yield server
