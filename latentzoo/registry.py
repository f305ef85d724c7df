"""The zoo: ``registry.yaml`` parsed, validated, expanded from families to ids, and looked up.

A registry file has ``families`` (each expands over ``archs`` x ``seeds`` x ``members`` to one
:class:`ModelEntry` per id), ``citations`` (name -> BibTeX) and ``overrides`` (id -> fields
deep-merged into the expanded entry; ``latentzoo registry pin`` and ``latentzoo layermap`` write
there). The strings of ``id``, ``weights``, ``description``, ``attribution`` and ``brainscore_id``
are templates over ``{objective}``, ``{arch}``, ``{seed}`` and the member's other scalar fields
(e.g. ``{brainscore_id}``).

The shipped registry (the repository's ``registry.yaml``, installed as package data) is read
first, then the user registries named by ``LATENTZOO_REGISTRY`` (``os.pathsep``-separated), or
``~/.config/latentzoo/registry.yaml`` when that exists. Errors name the file, entry and field.
"""

from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping

from latentzoo.errors import UserError, unknown
from latentzoo.fileio import write_bytes_atomic
from latentzoo.latents import OBJECTIVES

REGIONS = ("V1", "V2", "V4", "IT")
#: Zoo architectures (keys of ``latentzoo.models.network.ARCHS``; listed here so the registry loads without torch).
ARCHS = ("r18", "r50")
WEIGHT_KINDS = ("hub", "url", "folder", "init")
URL_FORMATS = ("authors-pth",)
#: Brain-Score scoring protocols (docs/scoring.md); an entry's ``protocol`` is its default.
PROTOCOLS = ("leaderboard", "paper")
_ENTRY_FIELDS = {"id", "description", "arch", "objective", "seed", "dataset", "head", "units", "input_size",
                 "weights", "layers", "citation", "attribution", "brainscore_id", "plugin", "protocol"}
_FAMILY_FIELDS = _ENTRY_FIELDS | {"archs", "seeds", "members"}
#: Fields whose strings are templates over the entry's scalar fields (BibTeX braces stay literal).
_TEMPLATED = ("id", "weights", "description", "attribution", "brainscore_id")


@dataclass(frozen=True)
class ModelEntry:
    """One zoo model: where its weights come from and how Brain-Score maps it."""

    id: str
    arch: str
    objective: str
    seed: int
    dataset: str
    weights: dict[str, Any]  # {"hub": {repo, revision, sha256}} | {"url": {href, sha256, format}}
    #                          | {"folder": {path, sha256}} (relative to the registry file) | {"init": "seed"}
    layers: dict[str, str]  # V1, V2, V4, IT (absent until `latentzoo layermap` chooses them), behavior
    head: int | None = None  # output units when they differ from the objective's layout (674 upstream)
    units: str = "physical"
    input_size: int = 224  # square input side the network expects
    description: str = ""
    citation: str = ""
    attribution: str = ""
    brainscore_id: str | None = None
    protocol: str = "paper"  # default Brain-Score protocol (PROTOCOLS)
    source: str = ""  # registry file it came from

    @property
    def weights_kind(self) -> str:
        return next(iter(self.weights))

    @property
    def region_layer_map(self) -> dict[str, str]:
        """{V1, V2, V4, IT: layer}; a UserError naming ``latentzoo layermap`` when a region has none."""
        missing = [r for r in REGIONS if r not in self.layers]
        if missing:
            raise UserError(f"{self.id} has no layer for {', '.join(missing)}; choose them with "
                            f"`latentzoo layermap {self.id} --benchmarks ...` (registered in {self.source})")
        return {r: self.layers[r] for r in REGIONS}


@dataclass
class Registry:
    """Expanded registry: ``registry[id]`` -> :class:`ModelEntry`, ``filter()``, ``ids``."""

    entries: dict[str, ModelEntry] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def __getitem__(self, model_id: str) -> ModelEntry:
        try:
            return self.entries[model_id]
        except KeyError:
            raise unknown("model id", model_id, self.entries, "`latentzoo models` lists them") from None

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.entries

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def ids(self) -> list[str]:
        return list(self.entries)

    def filter(self, objective: str | None = None, arch: str | None = None,
               seed: int | None = None) -> list[ModelEntry]:
        """Entries matching every given criterion (an objective or arch no entry has is an error)."""
        if objective is not None and objective not in OBJECTIVES:
            raise unknown("objective", objective, OBJECTIVES)
        if arch is not None and arch not in ARCHS:
            raise unknown("arch", arch, ARCHS)
        return [e for e in self if (objective is None or e.objective == objective)
                and (arch is None or e.arch == arch) and (seed is None or e.seed == seed)]


def shipped_registry_path() -> Path:
    """The registry shipped with the package (the repository's ``registry.yaml``)."""
    return Path(str(resources.files("latentzoo") / "registry.yaml"))


def user_registry_paths() -> list[Path]:
    """User registry files: ``LATENTZOO_REGISTRY`` entries, else ``~/.config/latentzoo/registry.yaml``."""
    env = os.environ.get("LATENTZOO_REGISTRY")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    default = Path.home() / ".config" / "latentzoo" / "registry.yaml"
    return [default]


def default_user_registry() -> Path:
    """Where ``registry pin`` and ``layermap`` write when no ``--registry`` is given."""
    return user_registry_paths()[0]


def load_registry(paths: list[str | os.PathLike] | None = None) -> Registry:
    """Load, validate and expand registry files (default: shipped + existing user registries)."""
    if paths is None:
        paths = [shipped_registry_path()] + [p for p in user_registry_paths() if p.is_file()]
    registry = Registry()
    raw = [(Path(p), _read_yaml(Path(p))) for p in paths]
    citations: dict[str, str] = {}
    for path, doc in raw:
        citations.update({str(k): str(v) for k, v in (doc.get("citations") or {}).items()})
    for path, doc in raw:
        for i, family in enumerate(doc.get("families") or []):
            for entry in _expand(path, i, family, citations):
                if entry.id in registry.entries:
                    raise UserError(f"{path}: family {i}: id {entry.id!r} is already defined in "
                                    f"{registry.entries[entry.id].source}")
                registry.entries[entry.id] = entry
        registry.files.append(path)
    for path, doc in raw:
        for model_id, patch in (doc.get("overrides") or {}).items():
            if model_id not in registry.entries:
                raise UserError(f"{path}: overrides: unknown model id {model_id!r}")
            base = entry_dict(registry.entries[model_id])
            where = f"{path}: overrides: {model_id}"
            registry.entries[model_id] = _make_entry(where, merge_entry(base, _mapping(where, patch)),
                                                     citations, str(path))
    return registry


def write_override(path: str | os.PathLike, model_id: str, patch: Mapping[str, Any]) -> None:
    """Deep-merge ``patch`` into ``overrides[model_id]`` of the registry file ``path`` (created if missing).

    Only the ``overrides`` section is rewritten; the rest of the file keeps its text and comments.
    """
    path = Path(path)
    doc = _read_yaml(path) if path.is_file() else {}
    overrides = doc.get("overrides") or {}
    overrides[model_id] = merge_entry(overrides.get(model_id) or {}, dict(patch))
    _write_section(path, "overrides", overrides)


def write_entry(path: str | os.PathLike, fields: Mapping[str, Any]) -> None:
    """Add the entry ``fields`` (one model: id, arch, objective, ...) to ``families`` of the registry
    file ``path`` (created if missing), replacing a family with the same id; other sections keep their text."""
    path = Path(path)
    families = [f for f in (_read_yaml(path).get("families") or []) if not
                (isinstance(f, dict) and f.get("id") == fields["id"])] if path.is_file() else []
    _write_section(path, "families", [*families, dict(fields)])


def family_ids(path: str | os.PathLike) -> list[str]:
    """The ids the ``families`` of one registry file define (its overrides not applied; [] if no file)."""
    path = Path(path)
    if not path.is_file():
        return []
    families = _read_yaml(path).get("families") or []
    return [e.id for i, family in enumerate(families) for e in _expand(path, i, family, {})]


def _write_section(path: Path, name: str, value: Any) -> None:
    """Rewrite the top-level section ``name`` of the YAML file ``path`` atomically, keeping the rest's text."""
    import re

    import yaml

    text = path.read_text() if path.is_file() else "version: 1\n"
    section = yaml.safe_dump({name: value}, sort_keys=False, width=100)
    start = re.search(rf"^{name}:.*$", text, flags=re.M)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = re.search(r"^[^\s#-]", text[start.end():], flags=re.M)  # the next top-level key
        rest = text[start.end() + end.start():] if end else ""
        text = text[:start.start()] + section + rest
    write_bytes_atomic(path, text.encode())


def merge_entry(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict:
    """``patch`` deep-merged into the entry fields ``base``; a ``weights`` of another kind (e.g. ``hub``
    after ``latentzoo publish`` over ``url``) replaces the source instead of merging with it."""
    base = dict(base)
    if isinstance(patch.get("weights"), dict) and isinstance(base.get("weights"), dict) \
            and set(patch["weights"]) != set(base["weights"]):
        base.pop("weights")
    return _deep_merge(base, patch)


# ---------------------------------------------------------------- parsing

def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"registry file {path} does not exist") from None
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping with 'families', got {type(doc).__name__}")
    unknown = set(doc) - {"version", "families", "citations", "overrides"}
    if unknown:
        raise UserError(f"{path}: unknown top-level field(s) {sorted(unknown)}")
    return doc


def _mapping(where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping, got {value!r}")
    return value


def _deep_merge(base: dict, patch: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _fill(value: Any, context: Mapping[str, Any], where: str) -> Any:
    """Format every string in ``value`` with ``context`` (``{objective}``, ``{brainscore_id}`` ...)."""
    if isinstance(value, str):
        try:
            return value.format(**context)
        except (KeyError, IndexError, ValueError) as e:
            raise UserError(f"{where}: template {value!r} uses unknown field {e}") from None
    if isinstance(value, dict):
        return {k: _fill(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, context, where) for v in value]
    return value


def _expand(path: Path, index: int, family: Any, citations: Mapping[str, str]) -> Iterator[ModelEntry]:
    where = f"{path}: family {index}"
    family = _mapping(where, family)
    where = f"{path}: family {index} ({family.get('id', '?')})"
    unknown = set(family) - _FAMILY_FIELDS
    if unknown:
        raise UserError(f"{where}: unknown field(s) {sorted(unknown)}")
    base = {k: v for k, v in family.items() if k not in ("archs", "seeds", "members")}
    archs = family.get("archs") or [family.get("arch")]
    seeds = family.get("seeds") if "seeds" in family else [family.get("seed")]
    members = _mapping(f"{where}: field 'members'", family.get("members") or {family.get("objective"): {}})
    for arch, seed, (objective, member) in itertools.product(archs, seeds, members.items()):
        member_where = f"{where} member {objective}"
        fields = {**base, **_mapping(member_where, member or {}), "arch": arch, "seed": seed,
                  "objective": objective}
        if set(fields) - _ENTRY_FIELDS:
            raise UserError(f"{member_where}: unknown field(s) {sorted(set(fields) - _ENTRY_FIELDS)}")
        context = {k: v for k, v in fields.items() if not isinstance(v, (dict, list))}
        fields.update({k: _fill(fields[k], context, f"{member_where}.{k}") for k in _TEMPLATED if k in fields})
        local = (fields.get("weights") or {}).get("folder")
        if isinstance(local, dict) and isinstance(local.get("path"), str):  # relative to this registry file
            fields["weights"] = {"folder": {**local, "path": str(path.parent / Path(local["path"]).expanduser())}}
        yield _make_entry(f"{member_where} [{fields.get('id')}]", fields, citations, str(path))


def validate_entry(fields: Mapping[str, Any], where: str, source: str = "") -> ModelEntry:
    """A :class:`ModelEntry` from one entry's fields, validated as a registry file's (errors name ``where``)."""
    return _make_entry(where, dict(fields), {}, source)


def _make_entry(where: str, f: dict, citations: Mapping[str, str], source: str) -> ModelEntry:
    """Validate one expanded entry's fields and build it; errors name ``where`` and the field."""
    def need(name: str, kind: type | tuple[type, ...]) -> Any:
        value = f.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{where}: field {name!r}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    need("id", str)
    if need("arch", str) not in ARCHS:
        raise UserError(f"{where}: field 'arch': unknown {f['arch']!r}; choose one of {', '.join(ARCHS)}")
    if need("objective", str) not in OBJECTIVES:
        raise UserError(f"{where}: field 'objective': unknown {f['objective']!r}; choose one of "
                        f"{', '.join(OBJECTIVES)}")
    need("seed", int)
    need("dataset", str)
    if f.get("head") is not None:
        need("head", int)
    if f.get("input_size") is not None:
        need("input_size", int)
    if f.get("units", "physical") not in ("physical", "zscore"):
        raise UserError(f"{where}: field 'units': expected 'physical' or 'zscore', got {f['units']!r}")
    if f.get("protocol", "paper") not in PROTOCOLS:
        raise UserError(f"{where}: field 'protocol': expected one of {', '.join(PROTOCOLS)}, got {f['protocol']!r}")
    weights = need("weights", dict)
    if len(weights) != 1 or next(iter(weights)) not in WEIGHT_KINDS:
        raise UserError(f"{where}: field 'weights': expected exactly one of {', '.join(WEIGHT_KINDS)}, "
                        f"got {sorted(weights)}")
    _check_weights(where, weights)
    layers = dict(need("layers", dict) if "layers" in f else {})
    layers.setdefault("behavior", "avgpool")
    bad = [k for k, v in layers.items() if k not in (*REGIONS, "behavior") or not isinstance(v, str)]
    if bad:
        raise UserError(f"{where}: field 'layers': expected {{V1, V2, V4, IT, behavior: layer name}}, "
                        f"got {bad[0]}: {layers[bad[0]]!r}")
    citation = f.get("citation", "")
    return ModelEntry(id=f["id"], arch=f["arch"], objective=f["objective"], seed=f["seed"],
                      dataset=f["dataset"], weights=weights, layers=layers, head=f.get("head"),
                      units=f.get("units", "physical"), input_size=f.get("input_size", 224),
                      description=str(f.get("description", "")).strip(),
                      citation=citations.get(citation, citation), attribution=str(f.get("attribution", "")),
                      brainscore_id=f.get("brainscore_id"), protocol=f.get("protocol", "paper"), source=source)


def _check_weights(where: str, weights: dict) -> None:
    kind, spec = next(iter(weights.items()))
    where = f"{where}: field 'weights.{kind}'"
    if kind == "init":
        if spec != "seed":
            raise UserError(f"{where}: expected 'seed', got {spec!r}")
        return
    spec = _mapping(where, spec)
    required = {"hub": ("repo", "revision"), "url": ("href", "format"), "folder": ("path",)}[kind]
    allowed = set(required) | {"sha256"}
    for name in required:
        if not isinstance(spec.get(name), str):
            raise UserError(f"{where}: missing {name!r}")
    if set(spec) - allowed:
        raise UserError(f"{where}: unknown field(s) {sorted(set(spec) - allowed)}")
    sha = spec.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                            or any(c not in "0123456789abcdef" for c in sha)):
        raise UserError(f"{where}: 'sha256' must be 64 lowercase hex digits, got {sha!r}")
    if kind == "url" and spec["format"] not in URL_FORMATS:
        raise UserError(f"{where}: unknown format {spec['format']!r}; choose one of {', '.join(URL_FORMATS)}")


def entry_dict(entry: ModelEntry) -> dict:
    """Fields of an entry in registry-file spelling (for re-validation after an override)."""
    d = {k: copy.deepcopy(getattr(entry, k)) for k in
         ("id", "arch", "objective", "seed", "dataset", "weights", "layers", "head", "units", "input_size",
          "description", "citation", "attribution", "brainscore_id", "protocol")}
    return {k: v for k, v in d.items() if v not in (None, "")}


def list_models(objective: str | None = None, arch: str | None = None, seed: int | None = None,
                registry: Registry | None = None) -> list[str]:
    """Zoo ids, optionally filtered by objective, arch (``r18``/``r50``) and seed."""
    return [e.id for e in (registry or load_registry()).filter(objective, arch, seed)]
