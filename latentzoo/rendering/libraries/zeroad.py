"""The 0 A.D. object library: real textured meshes from Debian's ``0ad-data`` (CC-BY-SA-3.0).

``latentzoo assets import 0ad`` (:func:`import_0ad`) reads the installed game data (``.zip`` /
``.pyromod`` archives or loose files under ``/usr/share/games/0ad``), pairs meshes with textures
through the actor XML files of a curated category list (``latentzoo/data/zeroad_categories.yaml``),
attaches each actor's props (sails, manes, roofs, ...) at their prop points, stacks differing
textures into one atlas, decimates each object to a face budget, normalises it (+y up, centred,
longest side 1) and writes a local cache; :class:`ZeroADLibrary` serves that cache through the
ObjectLibrary interface and :func:`background_images` lists the terrain and sky textures imported
for backgrounds (``--backgrounds 0ad``).

Cache layout (``$LATENTZOO_CACHE/0ad``, default ``~/.cache/latentzoo/0ad``)::

    index.json             categories, identities (name, category, actor, mesh, texture, faces)
    meshes/<id>.npz        positions, normals, faces, uvs, faces_before, texture_file
    textures/<name>.png    RGBA textures or atlases, at most 512 px wide
    backgrounds/<name>.jpg terrain and sky textures
    ATTRIBUTION

Every file is written atomically and skipped when present, so an interrupted import resumes;
``index.json`` is written last. No 0 A.D. data is ever committed to the repository.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, cache_dir, write_bytes_atomic, write_json_atomic
from latentzoo.rendering.library import Mesh
from latentzoo.rendering.libraries.pmd import (Look, actor_looks, decimate, decode_image, normalise,
                                               prop_transform, read_pmd)

DEFAULT_SOURCE = Path("/usr/share/games/0ad")
CATEGORIES_FILE = Path(__file__).resolve().parents[2] / "data" / "zeroad_categories.yaml"
ATTRIBUTION = ("0 A.D. art by Wildfire Games (https://play0ad.com), licensed CC-BY-SA-3.0; "
               "imported from Debian's 0ad-data package and decimated by latentzoo")
IMPORT_HINT = "run `latentzoo assets import 0ad` (needs Debian's 0ad-data: apt-get install 0ad-data)"
INDEX_VERSION = 1
UNIFORM_STD = 4.0  # a background texture whose pixels vary less than this is a flat colour
MIN_BACKGROUND_SIDE = 32  # pixels; smaller terrain textures are colour swatches
MIN_FACES = 8  # fewer faces: billboards and placeholders (e.g. a one-quad crate pile)


def default_cache() -> Path:
    """``$LATENTZOO_CACHE/0ad`` (default ``~/.cache/latentzoo/0ad``)."""
    return cache_dir() / "0ad"


class AssetSource:
    """The files of an installed 0 A.D. mod tree: loose files under any ``art/`` folder and the
    contents of ``.zip``/``.pyromod`` archives below ``root``, addressed by VFS path (``art/...``)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"0 A.D. data not found: {self.root} is not a folder; {IMPORT_HINT} or pass --source DIR")
        self._files: dict[str, tuple[zipfile.ZipFile | None, str | Path]] = {}
        for archive in sorted([*self.root.rglob("*.zip"), *self.root.rglob("*.pyromod")]):
            zf = zipfile.ZipFile(archive)
            for name in zf.namelist():
                if name.startswith("art/"):
                    self._files.setdefault(name, (zf, name))
        for art in sorted(self.root.rglob("art")):
            if art.is_dir():
                for path in art.rglob("*"):
                    if path.is_file():
                        self._files[path.relative_to(art.parent).as_posix()] = (None, path)
        if not any(name.startswith("art/actors/") for name in self._files):
            raise UserError(f"no 0 A.D. actors (art/actors/*.xml) under {self.root}; {IMPORT_HINT} or pass --source DIR")

    def names(self, prefix: str) -> list[str]:
        """Sorted paths starting with ``prefix``."""
        return sorted(n for n in self._files if n.startswith(prefix))

    def read(self, path: str) -> bytes | None:
        """Bytes of ``path`` or None."""
        entry = self._files.get(path)
        if entry is None:
            return None
        zf, name = entry
        return zf.read(name) if zf is not None else Path(name).read_bytes()

    def read_converted(self, path: str, converted: str) -> bytes | None:
        """``path`` as shipped, or the game's converted copy (``x.dae`` -> ``x.dae.cached.pmd``,
        ``x.png`` -> ``x.png.cached.dds``, or the same name with extension ``converted``)."""
        for candidate in (path, f"{path}.cached.{converted}", f"{os.path.splitext(path)[0]}.{converted}"):
            data = self.read(candidate)
            if data is not None:
                return data
        return None


@dataclass
class ImportReport:
    """What :func:`import_0ad` did: cache folder, counts, faces before/after decimation, seconds,
    and the looks it skipped with the reason."""

    cache: Path
    categories: int
    identities: int
    faces_before: int
    faces_after: int
    backgrounds: int
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def load_categories(path: str | os.PathLike | None = None) -> tuple[dict[str, list[str]], int]:
    """The curated ``{category: [actor glob, ...]}`` and the per-category identity cap."""
    import yaml

    path = Path(path) if path else CATEGORIES_FILE
    try:
        spec = yaml.safe_load(Path(path).read_text())
        categories = {str(k): [str(p) for p in v] for k, v in spec["categories"].items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"bad 0 A.D. category list {path}: {e}") from e
    return categories, int(spec.get("max_identities", 12))


def _category_looks(source: AssetSource, patterns: list[str], cap: int,
                    skipped: list[tuple[str, str]]) -> list[tuple[str, Look]]:
    """``(actor, look)`` pairs of one category, taking actors' looks in turn (round robin) up to ``cap``."""
    actors = [a for a in source.names("art/actors/") if a.endswith(".xml")
              and any(fnmatch.fnmatch(a[len("art/actors/"):], p) for p in patterns)]
    per_actor: list[list[tuple[str, Look]]] = []
    for actor in actors:
        try:
            looks = actor_looks(source.read(actor).decode("utf-8", "replace"),
                                lambda ref: _text(source.read(f"art/variants/{ref}")),
                                lambda ref: _text(source.read(f"art/actors/{ref}")))
        except ET.ParseError as e:  # a malformed actor file loses only that actor
            skipped.append((actor, f"unreadable actor XML: {e}"))
            continue
        per_actor.append([(actor, look) for look in looks])
    out: list[tuple[str, Look]] = []
    for k in range(max((len(x) for x in per_actor), default=0)):
        out.extend(x[k] for x in per_actor if k < len(x))
    seen: set[Look] = set()
    return [p for p in out if not (p[1] in seen or seen.add(p[1]))][:cap]


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


@dataclass
class _Part:
    """One mesh of an assembled object (the actor's own or a prop's), in the object's frame."""

    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    texture: str | None


def _parts(source: AssetSource, look: Look) -> list[_Part]:
    """The actor's mesh and its props' meshes, each placed at its prop point (rest pose)."""
    data = source.read_converted(f"art/meshes/{look.mesh}", "pmd")
    if data is None:
        raise FileNotFoundError(f"mesh art/meshes/{look.mesh} is missing")
    model = read_pmd(data)
    parts = [_Part(model.positions, model.normals, model.uvs, model.faces, look.texture)]
    for point, prop in look.props:
        matrix = prop_transform(model, point)
        if matrix is None:
            continue
        try:
            sub = _parts(source, prop)
        except (FileNotFoundError, ValueError):  # a broken prop loses only itself
            continue
        rot, shift = matrix[:3, :3], matrix[:3, 3]
        parts += [_Part((p.positions @ rot.T + shift).astype(np.float32), (p.normals @ rot.T).astype(np.float32),
                        p.uvs, p.faces, p.texture) for p in sub]
    return parts


def _texture_image(source: AssetSource, texture: str | None, max_side: int) -> np.ndarray:
    """RGBA texture at most ``max_side`` a side; plain light grey for meshes without one."""
    from PIL import Image

    if texture is None:
        return np.full((4, 4, 4), 180, np.uint8)
    data = source.read_converted(f"art/textures/skins/{texture}", "dds")
    if data is None:
        raise FileNotFoundError(f"texture art/textures/skins/{texture} is missing")
    image = Image.fromarray(decode_image(data))
    image.thumbnail((max_side, max_side))
    return np.asarray(image)


def _fill_transparent(rgba: np.ndarray) -> np.ndarray:
    """Transparent texels (alpha-tested foliage, cut-outs) take the mean colour of the opaque ones,
    since the renderers draw textures opaque (Pillow's resizing also blackens them); alpha is kept."""
    rgba = rgba.copy()
    clear = rgba[..., 3] < 128
    if clear.any() and not clear.all():
        rgba[clear, :3] = rgba[~clear, :3].mean(axis=0).astype(np.uint8)
    return rgba


def _merge(parts: list[_Part], images: dict[str | None, np.ndarray], max_side: int):
    """One mesh and one texture from parts with different textures: the textures are stacked into
    an atlas (resized to a common width) and each part's UVs mapped into its band. Parts whose UVs
    tile (leave [0, 1]) get unshared vertices, each triangle shifted into [0, 1] and clipped."""
    from PIL import Image

    names = list(dict.fromkeys(p.texture for p in parts))
    width = max(images[n].shape[1] for n in names)
    bands = [_fill_transparent(np.asarray(Image.fromarray(images[n]).resize(
        (width, max(1, round(images[n].shape[0] * width / images[n].shape[1])))))) for n in names]
    starts = np.cumsum([0] + [b.shape[0] for b in bands])
    atlas = np.concatenate(bands) if len(bands) > 1 else bands[0]
    positions, normals, uvs, faces = [], [], [], []
    count = 0
    for p in parts:
        pos, nrm, uv, tri = p.positions, p.normals, p.uvs, p.faces
        k = names.index(p.texture)
        if len(names) > 1:
            if uv.min() < -1e-3 or uv.max() > 1 + 1e-3:
                pos, nrm, uv = pos[tri].reshape(-1, 3), nrm[tri].reshape(-1, 3), uv[tri]
                uv = np.clip(uv - np.floor(uv.min(axis=1, keepdims=True)), 0, 1).reshape(-1, 2)
                tri = np.arange(len(pos)).reshape(-1, 3)
            uv = np.stack([uv[:, 0], (starts[k] + uv[:, 1] * bands[k].shape[0]) / starts[-1]], axis=1)
        positions.append(pos)
        normals.append(nrm)
        uvs.append(uv)
        faces.append(tri + count)
        count += len(pos)
    if atlas.shape[0] > 2 * max_side:  # UVs are relative: the whole atlas can shrink
        scale = 2 * max_side / atlas.shape[0]
        atlas = np.asarray(Image.fromarray(atlas).resize((max(1, round(width * scale)), 2 * max_side)))
    return (np.concatenate(positions), np.concatenate(normals), np.concatenate(uvs).astype(np.float32),
            np.concatenate(faces), atlas)


def _write_identity(source: AssetSource, look: Look, mesh_file: Path, root: Path,
                    target_faces: int, max_side: int) -> None:
    """Assemble, texture, decimate and normalise one look; the texture is written first and the
    mesh (which names it) last, so a present mesh file means a complete identity."""
    from PIL import Image

    parts = _parts(source, look)
    faces_before = sum(len(p.faces) for p in parts)
    if faces_before < MIN_FACES:
        raise ValueError(f"mesh has {faces_before} faces: a billboard or placeholder, not an object")
    names = list(dict.fromkeys(p.texture for p in parts))
    images = {n: _texture_image(source, n, max_side) for n in names}
    positions, normals, uvs, faces, atlas = _merge(parts, images, max_side)
    key = _slug(str(names[0])) if len(names) == 1 else "atlas_" + hashlib.sha1("|".join(map(str, names)).encode()).hexdigest()[:16]
    texture_file = f"textures/{key}.png"
    if not (root / texture_file).exists():
        with atomic_path(root / texture_file) as tmp:
            Image.fromarray(atlas).save(tmp, format="PNG")
    positions, faces, uvs, normals = decimate(positions, faces, uvs, normals, target_faces)
    with atomic_path(mesh_file) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, positions=normalise(positions), normals=normals.astype(np.float32),
                            faces=faces.astype(np.int32), uvs=uvs.astype(np.float32),
                            faces_before=np.int64(faces_before), texture_file=np.str_(texture_file))


def _background_sources(source: AssetSource, limit: int) -> list[str]:
    """Terrain diffuse textures (evenly thinned to ``limit``) and the side faces of every sky box."""
    terrain = [n for n in source.names("art/textures/terrain/types/")
               if n.endswith((".dds", ".png")) and not re.search(r"norm|spec|_ao\b|grid|test", n, re.I)]
    if len(terrain) > limit:
        terrain = [terrain[i] for i in np.linspace(0, len(terrain) - 1, limit).astype(int)]
    skies = [n for n in source.names("art/textures/skies/")
             if re.search(r"/(front|back|left|right)\.(dds|png)", n)]
    return terrain + skies


def _import_backgrounds(source: AssetSource, cache: Path, limit: int, max_side: int) -> int:
    from PIL import Image

    count = 0
    for name in _background_sources(source, limit):
        out = cache / "backgrounds" / (_slug(name[len("art/textures/"):].split(".")[0]) + ".jpg")
        if not out.exists():
            rgb = decode_image(source.read(name))[..., :3]
            if min(rgb.shape[:2]) < MIN_BACKGROUND_SIDE or rgb.reshape(-1, 3).std(axis=0).max() < UNIFORM_STD:
                continue  # editor colour swatches (yellow.png is 2 x 2, blackness.dds, ...)
            image = Image.fromarray(rgb)
            image.thumbnail((max_side, max_side))
            with atomic_path(out) as tmp:
                image.save(tmp, format="JPEG", quality=90)
        count += 1
    return count


def import_0ad(source: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
               categories: str | os.PathLike | None = None, target_faces: int = 5000,
               max_texture: int = 512, backgrounds: int = 200, progress: bool = True) -> ImportReport:
    """Import the curated 0 A.D. categories from ``source`` (default ``/usr/share/games/0ad``)
    into ``cache`` (default :func:`default_cache`); resumes an interrupted import."""
    started = time.perf_counter()
    src = AssetSource(source or DEFAULT_SOURCE)
    root = Path(cache) if cache else default_cache()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write the 0 A.D. cache {root}: {e.strerror or e}") from e
    spec, cap = load_categories(categories)
    skipped: list[tuple[str, str]] = []
    plan = [(cat, actor, look) for cat, patterns in spec.items()
            for actor, look in _category_looks(src, patterns, cap, skipped)]
    used: set[Look] = set()
    identities: list[dict] = []
    faces_before = faces_after = 0
    from tqdm import tqdm

    for cat, actor, look in tqdm(plan, desc="0ad import", unit="mesh", disable=not progress):
        if look in used:  # the same look matched by two categories belongs to the first
            continue
        stem = _slug(Path(actor).stem)
        name = f"{cat}/{stem}"
        n = 1
        while any(i["name"] == name for i in identities):
            n += 1
            name = f"{cat}/{stem}-{n}"
        mesh_file = root / "meshes" / f"{_slug(name.replace('/', '__'))}.npz"
        try:
            if not mesh_file.exists():
                _write_identity(src, look, mesh_file, root, target_faces, max_texture)
            with np.load(mesh_file) as z:
                before, after, texture_file = int(z["faces_before"]), len(z["faces"]), str(z["texture_file"])
        except (FileNotFoundError, ValueError, OSError) as e:
            skipped.append((f"{actor} ({look.mesh})", str(e)))
            continue
        used.add(look)
        faces_before += before
        faces_after += after
        identities.append({"name": name, "category": cat, "actor": actor, "mesh": look.mesh,
                           "texture": look.texture, "props": len(look.props),
                           "mesh_file": mesh_file.relative_to(root).as_posix(), "texture_file": texture_file,
                           "faces_before": before, "faces": after})
    n_backgrounds = _import_backgrounds(src, root, backgrounds, max_texture)
    category_names = [c for c in spec if any(i["category"] == c for i in identities)]
    write_bytes_atomic(root / "ATTRIBUTION", (ATTRIBUTION + "\nSource: " + str(src.root) + "\n"
                                              "License text: https://creativecommons.org/licenses/by-sa/3.0/\n").encode())
    write_json_atomic(root / "index.json", {
        "version": INDEX_VERSION, "source": str(src.root), "attribution": ATTRIBUTION,
        "target_faces": target_faces, "categories": category_names, "identities": identities,
        "skipped": [list(s) for s in skipped]})
    return ImportReport(root, len(category_names), len(identities), faces_before, faces_after,
                        n_backgrounds, time.perf_counter() - started, skipped)


def background_images(cache: str | os.PathLike | None = None) -> list[Path]:
    """Terrain and sky textures of an imported cache (JPEG paths); empty when none were imported."""
    root = Path(cache) if cache else default_cache()
    return sorted((root / "backgrounds").glob("*.jpg"))


class ZeroADLibrary:
    """ObjectLibrary over an imported 0 A.D. cache (see :func:`import_0ad`)."""

    name = "0ad"
    attribution = ATTRIBUTION

    def __init__(self, cache: str | os.PathLike | None = None):
        self.root = Path(cache) if cache else default_cache()
        index_file = self.root / "index.json"
        if not index_file.is_file():
            raise UserError(f"the 0 A.D. library is not imported ({index_file} is missing): {IMPORT_HINT}")
        import json

        try:
            index = json.loads(index_file.read_text())
            self.categories = list(index["categories"])
            self._entries = list(index["identities"])
            self.identities = [e["name"] for e in self._entries]
            self.identity_category = [self.categories.index(e["category"]) for e in self._entries]
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"corrupt 0 A.D. cache index {index_file} ({e}); delete it and {IMPORT_HINT}") from e

    def mesh(self, identity: int) -> Mesh:
        """Canonical-pose, unit-longest-side mesh of identity ``identity``, with its texture."""
        from PIL import Image

        entry = self._entries[identity]
        with np.load(self.root / entry["mesh_file"]) as z:
            positions, normals, faces, uvs = z["positions"], z["normals"], z["faces"], z["uvs"]
        with Image.open(self.root / entry["texture_file"]) as im:
            texture = np.asarray(im.convert("RGB"))
        return Mesh(positions, normals, faces, uvs=uvs, texture=texture)
