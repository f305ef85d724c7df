"""Register a model folder, and publish any model to the Hugging Face Hub, pinned in the user registry.

* :func:`register_folder` (``latentzoo registry add FOLDER``) writes a complete ``folder`` entry,
  sha256-pinned, from the folder's own ``config.json``.
* :func:`publish` (``latentzoo publish SOURCE --repo ORG/NAME``) uploads a zoo id (the authors'
  ``tdw-*`` ``.pth`` converted to safetensors on the way), a model folder or a Hub repo as
  ``model.safetensors`` + ``config.json`` + model card, then records a ``hub`` source pinned to
  the pushed commit and the file's sha256, under the model's id.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentzoo.errors import UserError
from latentzoo.fileio import sha256_file
from latentzoo.hub import WEIGHTS_NAME, push_to_hub, save_pretrained
from latentzoo.registry import (ModelEntry, Registry, default_user_registry, entry_dict, family_ids, load_registry,
                                shipped_registry_path, user_registry_paths, validate_entry, write_entry,
                                write_override)
from latentzoo.weights import card_fields, folder_entry, load_entry, resolve


@dataclass(frozen=True)
class Published:
    """What :func:`publish` pushed and recorded."""

    id: str
    repo: str
    revision: str
    sha256: str
    registry: Path


def register_folder(folder: str | os.PathLike, model_id: str | None = None,
                    registry_path: str | os.PathLike | None = None) -> ModelEntry:
    """Write a ``folder`` entry (arch, objective, seed, dataset, input size, layers when chosen; the
    weights' sha256 pinned) for a model folder into ``registry_path`` (default: the user registry).

    The path is stored relative to the registry file when the folder lies below it. Re-adding an id
    that file defines replaces its entry (e.g. after retraining); an id another model has is refused.
    """
    folder = Path(folder).resolve()
    target = Path(registry_path or default_user_registry()).resolve()
    if not (folder / WEIGHTS_NAME).is_file():
        raise UserError(f"{folder} is not a model folder: {WEIGHTS_NAME} is missing")
    entry = folder_entry(folder, model_id)
    path = os.path.relpath(folder, target.parent) if folder.is_relative_to(target.parent) else str(folder)
    fields = {**entry_dict(entry), "weights": {"folder": {"path": path, "sha256": sha256_file(folder / WEIGHTS_NAME)}}}
    registry = _registry_with(target)
    replaces = entry.id in family_ids(target)
    _check(fields, registry, f"{folder / 'config.json'}", None if replaces else "")
    write_entry(target, fields)
    return _registry_with(target)[entry.id]


def publish(source: str | os.PathLike, repo: str, model_id: str | None = None,
            registry_path: str | os.PathLike | None = None, scores: str | os.PathLike | None = None,
            api: Any = None) -> Published:
    """Upload ``source`` (zoo id, model folder or Hub repo) to the Hub repo ``repo`` and record it.

    The model card names ``hf-hub:<repo>`` in its usage lines and carries the test metrics, the
    layer map and ``scores`` (a ``scores.json`` of ``brainscore score``) when known. A registered
    model keeps its id (its weights become the ``hub`` source, an override in ``registry_path``);
    any other gets a new entry (id: ``model_id``, else its config's, else the folder's name; for an
    unregistered Hub repo the new repo's name). The entry is checked before anything is uploaded;
    ``api`` is an ``HfApi`` (default: the configured endpoint).
    """
    repo = repo.removeprefix("hf-hub:")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UserError(f"--repo must be ORG/NAME, got {repo!r}")
    target = Path(registry_path or default_user_registry())
    registry = _registry_with(target)
    entry = resolve(source, registry)
    registered = entry.id in registry and registry[entry.id] == entry
    new_id = model_id or (entry.id if registered or "/" not in entry.id else repo.split("/")[1])
    fields = {**entry_dict(entry), "id": new_id, "weights": {"hub": {"repo": repo, "revision": "0" * 40}}}
    _check(fields, registry, f"{source} (publish)", entry.id if registered else "")
    net = load_entry(entry)
    extra = {**net.config.extra, **card_fields(entry), "repo": repo}
    if scores:
        extra["scores"] = _read_scores(scores)
    net.config.id = new_id
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(net, tmp, **extra)
        sha = sha256_file(folder / WEIGHTS_NAME)
        revision = push_to_hub(folder, repo, message=f"Upload {new_id} (latentzoo publish)", api=api)
    hub = {"hub": {"repo": repo, "revision": revision, "sha256": sha}}
    if registered and new_id == entry.id:
        write_override(target, new_id, {"weights": hub})
    else:
        write_entry(target, {**fields, "weights": hub})
    return Published(new_id, repo, revision, sha, target)


def _registry_with(target: Path) -> Registry:
    """The default registries plus ``target`` (read once even when it is the user registry)."""
    paths = [shipped_registry_path(), *(p for p in user_registry_paths() if p.is_file()), target]
    return load_registry([p for p in dict.fromkeys(Path(p).resolve() for p in paths) if p.is_file()])


def _check(fields: dict, registry: Registry, where: str, own_id: str | None) -> None:
    """Refuse, before any upload or write, an entry that would not load, or whose id another model has
    (``own_id``: the id the entry may keep; None: any, the file's own family is being replaced)."""
    validate_entry(fields, where)
    if own_id is not None and fields["id"] in registry and fields["id"] != own_id:
        raise UserError(f"id {fields['id']!r} already names a model (in {registry[fields['id']].source}); "
                        "choose another with --id")


def _read_scores(path: str | os.PathLike) -> dict[str, float]:
    """{benchmark: score} from a ``scores.json`` that ``brainscore score`` wrote."""
    try:
        rows = json.loads(Path(path).read_text())["scores"]
        return {row["benchmark"]: round(float(row["score"]), 4) for row in rows}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a scores.json of `brainscore score` ({type(e).__name__}: {e})") from None
