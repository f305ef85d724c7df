"""Where a model's weights come from: registry ids, local folders and Hub repos -> :class:`LatentNet`.

Downloads land in the cache (``LATENTZOO_CACHE``, default ``~/.cache/latentzoo``) as model
folders (:mod:`latentzoo.hub`), one per id and source: ``models/<id>-<key>/``. A folder counts
as complete once its ``source.json`` (written last, atomically) exists and the sha256s it records
for ``model.safetensors`` and ``config.json`` still match (checked on every load, about 0.1 s for a
ResNet-50), so a later load makes no request and a truncated or modified cached file is fetched
again, never used. A file lock per folder lets concurrent processes share one download.

* ``url`` sources (the paper authors' ``.pth`` files) are streamed to ``downloads/``, checked
  against the pinned sha256 (a mismatch is refused and nothing is kept), read only with
  ``torch.load(weights_only=True)``, stripped of ``_orig_mod.``/``module.`` prefixes, strictly
  loaded and converted once to safetensors. Unpinned sources warn; ``latentzoo registry pin``
  pins them.
* ``hub`` sources use ``hf_hub_download`` with the pinned revision (``HF_ENDPOINT`` and
  ``HF_HUB_OFFLINE`` are honoured by huggingface_hub); ``model.safetensors`` is sha256-checked.
* ``folder`` sources are local model folders (e.g. ones ``latentzoo train`` wrote), loaded in place
  and checked against their pinned sha256.
* ``init`` sources are built from their seed; nothing is downloaded.

``LATENTZOO_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) refuses any download with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, cache_dir, sha256_file, write_json_atomic
from latentzoo.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from latentzoo.registry import ModelEntry, Registry, load_registry

SOURCE_NAME = "source.json"
#: Files of a cached model folder whose sha256 ``source.json`` records and every load checks.
VERIFIED_FILES = (WEIGHTS_NAME, CONFIG_NAME)
_PREFIXES = ("_orig_mod.", "module.")
_HUB_REPO = re.compile(r"^(hf-hub:)?[\w.-]+/[\w.-]+(@[\w./-]+)?$")


def offline() -> bool:
    """True when ``LATENTZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` forbids downloads."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("LATENTZOO_OFFLINE", "HF_HUB_OFFLINE"))


def cache_folder(entry: ModelEntry) -> Path:
    """The model folder an entry's download is converted into (keyed by its source, not its hash)."""
    kind, spec = next(iter(entry.weights.items()))
    where = {k: v for k, v in spec.items() if k != "sha256"}
    key = hashlib.sha256(json.dumps([kind, where], sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / "models" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', entry.id)}-{key}"


def from_pretrained(name: str | os.PathLike, registry: Registry | None = None):
    """A :class:`~latentzoo.models.network.LatentNet` from a registry id, a model folder or a Hub repo.

    ``name`` may be a zoo id (``tdw-distance-r50``, ``untrained-r18-s3``), a local folder written
    by ``save_pretrained``, or ``hf-hub:org/repo[@revision]`` / ``org/repo`` (see :func:`resolve`).
    Downloads once, then loads from the cache.
    """
    return load_entry(resolve(name, registry))


def resolve(name: str | os.PathLike, registry: Registry | None = None) -> ModelEntry:
    """The registry entry behind a zoo id, a model folder or a Hub repo (what every command accepts).

    A folder or Hub repo that a registry entry points at resolves to that entry (so it keeps its
    id); any other folder or repo becomes an ad-hoc entry read from its own ``config.json`` (a Hub
    repo's revision is pinned to the commit it resolves to now).
    """
    registry = registry or load_registry()
    if Path(name).is_dir():
        folder = Path(name).resolve()
        return next((e for e in registry if e.weights_kind == "folder"
                     and Path(e.weights["folder"]["path"]).resolve() == folder), None) or folder_entry(folder)
    name = str(name)
    path_like = "/" in name and not name.startswith("hf-hub:")  # a bare ORG/NAME only where no folder ORG is
    if name not in registry and path_like and (not _HUB_REPO.match(name) or Path(name).parent.is_dir()):
        raise UserError(f"{name}: no such model folder (nor a zoo id; a Hub repo is written hf-hub:ORG/NAME)")
    if name in registry or not _HUB_REPO.match(name):
        return registry[name]  # raises "unknown model id ..., did you mean ..."
    repo, _, revision = name.removeprefix("hf-hub:").partition("@")
    for e in registry:
        spec = e.weights.get("hub") or {}
        if spec.get("repo") == repo and revision in ("", spec["revision"]):
            return e
    config = _hub_download(repo, revision or None, None, names=(CONFIG_NAME,))
    return folder_entry(config, weights={"hub": {"repo": repo, "revision": config.name}}, default_id=name)


def folder_entry(folder: str | os.PathLike, model_id: str | None = None, weights: dict | None = None,
                 default_id: str | None = None) -> ModelEntry:
    """An entry for a model folder from its ``config.json`` (arch, objective, seed, dataset, input size,
    layers, ...); its weights are ``{"folder": {"path": folder}}`` unless ``weights`` is given.

    The id is ``model_id``, else the id the config records, else ``default_id`` or the folder's name.
    """
    from latentzoo.hub import read_config

    folder = Path(folder)
    cfg = read_config(folder)
    extra = cfg.extra
    return ModelEntry(
        id=model_id or cfg.id or default_id or folder.name, arch=cfg.arch, objective=cfg.objective,
        seed=extra.get("seed"), dataset=extra.get("dataset"), weights=weights or {"folder": {"path": str(folder)}},
        layers={"behavior": "avgpool", **(extra.get("layers") or {})},
        head=cfg.head_size, units=cfg.units,
        input_size=cfg.input_size, description=extra.get("description", ""),
        citation=extra.get("citation", ""), attribution=extra.get("attribution", ""),
        brainscore_id=extra.get("brainscore_id"), source=str(folder / CONFIG_NAME))


def load_entry(entry: ModelEntry):
    """Build a registry entry's network, fetching and converting its weights when needed."""
    from latentzoo.hub import load_pretrained
    from latentzoo.models.network import LatentNet

    if entry.weights_kind == "init":
        return LatentNet.create(entry.arch, entry.objective, seed=entry.seed, id=entry.id,
                                input_size=entry.input_size, extra=card_fields(entry)).eval()
    net = load_folder_entry(entry) if entry.weights_kind == "folder" else load_pretrained(fetch(entry))
    net.config.id = entry.id  # the registry's id and facts (e.g. a layer map chosen later) win over the config's
    net.config.extra = {**net.config.extra, **card_fields(entry)}
    return net


def load_folder_entry(entry: ModelEntry):
    """A ``folder`` entry's network: the local model folder, checked against its pinned sha256."""
    from latentzoo.hub import load_pretrained

    spec = entry.weights["folder"]
    folder = Path(spec["path"])
    if not (folder / WEIGHTS_NAME).is_file():
        raise UserError(f"{entry.id}: model folder {folder} has no {WEIGHTS_NAME} (registered in {entry.source})")
    if spec.get("sha256") and sha256_file(folder / WEIGHTS_NAME) != spec["sha256"]:
        raise UserError(f"{entry.id}: {folder / WEIGHTS_NAME} does not match the sha256 pinned in "
                        f"{entry.source}; refusing it (retrain, or re-register the folder)")
    return load_pretrained(folder)


def entry_config(entry: ModelEntry):
    """The :class:`LatentConfig` a converted upstream checkpoint gets from its registry entry."""
    from latentzoo.latents import objective_tasks, output_layout
    from latentzoo.models.network import LatentConfig

    tasks = objective_tasks(entry.objective)
    layout = ([s for s in output_layout("all") if s.task in tasks] if entry.head == 674
              else output_layout(entry.objective))
    return LatentConfig(arch=entry.arch, objective=entry.objective, layout=layout,
                        num_classes=entry.head, units=entry.units, input_size=entry.input_size, id=entry.id,
                        extra=card_fields(entry))


def card_fields(entry: ModelEntry) -> dict[str, Any]:
    """Registry facts recorded in a model folder's config and card."""
    fields = {"dataset": entry.dataset, "seed": entry.seed, "layers": entry.layers,
              "description": entry.description, "citation": entry.citation,
              "attribution": entry.attribution, "brainscore_id": entry.brainscore_id}
    return {k: v for k, v in fields.items() if v not in (None, "")}


def fetch(entry: ModelEntry) -> Path:
    """Make sure ``entry``'s converted model folder is in the cache; return it (no request if cached)."""
    from filelock import FileLock

    folder = cache_folder(entry)
    pinned = next(iter(entry.weights.values())).get("sha256")
    if _complete(folder, pinned):
        return folder
    (cache_dir() / "locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir() / "locks" / f"{folder.name}.lock")):
        if _complete(folder, pinned):  # another process finished it while we waited
            return folder
        if offline():
            raise UserError(f"{entry.id} is not in the cache ({folder}) and downloads are off "
                            f"(LATENTZOO_OFFLINE/HF_HUB_OFFLINE); its weights come from {source_location(entry)}: "
                            f"run `latentzoo download {entry.id}` where the network exists, or unset it")
        if (folder / SOURCE_NAME).is_file():
            warnings.warn(f"{folder}: the cached files are truncated, modified or for another pin; "
                          f"fetching {entry.id} again", stacklevel=2)
        for name in (SOURCE_NAME, *VERIFIED_FILES):
            (folder / name).unlink(missing_ok=True)
        if entry.weights_kind == "url":
            sha = _fetch_url(entry, folder)
        else:
            sha = _fetch_hub(entry, folder)
        write_json_atomic(folder / SOURCE_NAME, {"id": entry.id, "weights": entry.weights, "sha256": sha,
                                                 "files": {n: sha256_file(folder / n) for n in VERIFIED_FILES}})
    return folder


def _complete(folder: Path, pinned: str | None) -> bool:
    """True when ``source.json`` exists, matches the pin, and the files it lists still hash as recorded."""
    try:
        source = json.loads((folder / SOURCE_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    files = source.get("files") or {}
    if (pinned is not None and source.get("sha256") != pinned) or set(files) != set(VERIFIED_FILES):
        return False
    return all((folder / name).is_file() and sha256_file(folder / name) == sha for name, sha in files.items())


def _fetch_url(entry: ModelEntry, folder: Path) -> str:
    from latentzoo.hub import save_pretrained

    spec = entry.weights["url"]
    if not spec.get("sha256"):
        warnings.warn(f"{entry.id}: no sha256 pinned for {spec['href']}; the download is not "
                      f"verified (run `latentzoo registry pin {entry.id}` where the network exists)",
                      stacklevel=3)
    path = cache_dir() / "downloads" / f"{folder.name}.pth"
    sha = download(spec["href"], path, spec.get("sha256"))
    try:
        net = convert_authors_pth(path, entry)
        save_pretrained(net, folder, license="other")
    finally:
        path.unlink(missing_ok=True)
    return sha


def download(href: str, dest: Path, sha256: str | None = None, timeout: float = 60) -> str:
    """Stream ``href`` to ``dest`` atomically; refuse (keeping nothing) when it misses ``sha256``."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(href, timeout=timeout) as response, atomic_path(dest) as tmp:
            with open(tmp, "wb") as f:
                for block in iter(lambda: response.read(1 << 20), b""):
                    h.update(block)
                    f.write(block)
            if sha256 and h.hexdigest() != sha256:
                raise UserError(f"{href}: sha256 {h.hexdigest()} does not match the pinned {sha256}; "
                                "refusing the download (nothing was cached)")
    except urllib.error.HTTPError as e:
        raise UserError(f"cannot download {href}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot download {href} ({reason}); check the network, or copy the "
                        f"latentzoo cache ({cache_dir()}) from a machine that has it") from None
    return h.hexdigest()


def url_sha256(href: str, timeout: float = 60) -> str:
    """sha256 of the file at ``href``, streamed without keeping it (for ``latentzoo registry pin``)."""
    tmp = cache_dir() / "downloads" / f"pin-{hashlib.sha256(href.encode()).hexdigest()[:10]}"
    try:
        return download(href, tmp, None, timeout)
    finally:
        tmp.unlink(missing_ok=True)


def convert_authors_pth(path: str | os.PathLike, entry: ModelEntry):
    """Read an upstream ``.pth`` safely (``weights_only=True``) into the entry's network (strict)."""
    import pickle

    import torch

    from latentzoo.hub import build_empty, load_state

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a weights-only PyTorch state dict ({first})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: expected a state dict of tensors")
    state = {_strip_prefixes(k): v for k, v in state.items()}
    return load_state(build_empty(entry_config(entry)), state, str(path))


def _strip_prefixes(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _fetch_hub(entry: ModelEntry, folder: Path) -> str:
    spec = entry.weights["hub"]
    _hub_download(spec["repo"], spec["revision"], folder)
    sha = sha256_file(folder / WEIGHTS_NAME)
    if spec.get("sha256") and sha != spec["sha256"]:
        (folder / WEIGHTS_NAME).unlink()
        raise UserError(f"{spec['repo']}@{spec['revision']}: {WEIGHTS_NAME} sha256 {sha} does not "
                        f"match the pinned {spec['sha256']}; refusing it (nothing was cached)")
    return sha


def _hub_download(repo: str, revision: str | None, local_dir: Path | None,
                  names: tuple[str, ...] = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)) -> Path:
    """Download a model folder's files (``names``; the card is optional) with ``hf_hub_download``;
    returns the folder holding them (without ``local_dir``: the Hugging Face cache's snapshot
    folder, named by the commit)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    paths = []
    where = f"{repo}@{revision or 'main'}"
    try:
        for name in names:
            try:
                paths.append(Path(hf_hub_download(repo, name, revision=revision,
                                                  local_dir=str(local_dir) if local_dir else None)))
            except EntryNotFoundError as e:
                if name != CARD_NAME or isinstance(e, LocalEntryNotFoundError):
                    raise
    except LocalEntryNotFoundError:  # offline or unreachable, and not in the Hugging Face cache
        raise UserError(f"cannot download {where} from the Hugging Face Hub ({constants.ENDPOINT}): "
                        "downloads are off or the Hub is unreachable, and it is not in the cache; run "
                        f"`latentzoo download hf-hub:{repo}{'@' + revision if revision else ''}` where the "
                        "network exists") from None
    except EntryNotFoundError:
        raise UserError(f"{where} has no {name}: not a latentzoo/timm model repository") from None
    except Exception as e:  # huggingface_hub raises many types: 404, auth, connection
        raise UserError(f"cannot download {where} from the Hugging Face Hub "
                        f"({constants.ENDPOINT}): {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    return paths[0].parent


def source_location(entry: ModelEntry) -> str:
    """Where an entry's weights come from, for messages: a URL, a Hub repo, a folder or its seed."""
    kind, spec = next(iter(entry.weights.items()))
    return {"url": lambda: spec["href"], "folder": lambda: f"the model folder {spec['path']}",
            "hub": lambda: f"the Hugging Face Hub repo {spec['repo']}@{spec['revision']}",
            "init": lambda: f"seed {entry.seed}, built locally"}[kind]()


def prefetch(name: str | os.PathLike, registry: Registry | None = None) -> str:
    """Fetch a zoo id / folder / Hub repo's weights into the cache for offline use; returns a line saying where."""
    entry = resolve(name, registry)
    if entry.weights_kind in ("url", "hub"):
        return f"{entry.id}: {fetch(entry)} (from {source_location(entry)})"
    if entry.weights_kind == "folder":
        load_folder_entry(entry)  # checks the folder and its pinned sha256
    return f"{entry.id}: nothing to download ({source_location(entry)})"


def source_sha256(entry: ModelEntry) -> str:
    """sha256 of an entry's upstream file (``.pth`` or ``model.safetensors``), fetched now (for pinning)."""
    if entry.weights_kind == "url":
        return url_sha256(entry.weights["url"]["href"])
    if entry.weights_kind == "hub":
        spec = entry.weights["hub"]
        return sha256_file(_hub_download(spec["repo"], spec["revision"], None) / WEIGHTS_NAME)
    if entry.weights_kind == "folder":
        return sha256_file(Path(entry.weights["folder"]["path"]) / WEIGHTS_NAME)
    raise UserError(f"{entry.id} is built from its seed: there is nothing to pin")
