"""Readers for 0 A.D. art assets and the mesh clean-up the 0 A.D. library needs.

* :func:`read_pmd` parses a PMD model (0 A.D.'s binary mesh format, versions 1, 3 and 4: magic
  ``PSMD``, little-endian; vertices with position, normal, UV sets and bone blend; uint16
  triangles; bone rest states; prop points).
* :func:`decode_image` decodes a DDS (DXT1/3/5, uncompressed) or PNG texture to RGBA.
* :func:`actor_looks` reads an actor XML (``art/actors/**.xml``) and lists the distinct
  (mesh, texture, props) looks its variants can produce; :func:`prop_transform` places a prop.
* :func:`decimate` reduces a mesh to a face budget (quadric edge collapse, keeping per-vertex
  attributes) and :func:`normalise` centres it and scales its longest bounding-box side to 1.
"""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

PMD_MAGIC = b"PSMD"


@dataclass
class PMD:
    """A parsed PMD model: ``positions``/``normals`` float32 (V, 3), ``uvs`` float32 (V, 2) (first
    UV set), ``faces`` int32 (F, 3), ``rest_states`` float32 (B, 7) (translation, quaternion xyzw),
    ``prop_points`` {name: (translation, quaternion, bone)}."""

    version: int
    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    rest_states: np.ndarray
    prop_points: dict[str, tuple[np.ndarray, np.ndarray, int]] = field(default_factory=dict)


def read_pmd(data: bytes) -> PMD:
    """Parse PMD bytes; raises ValueError on a bad magic, an unsupported version or truncation."""
    if data[:4] != PMD_MAGIC:
        raise ValueError("not a PMD file (magic is not PSMD)")
    version, data_size = struct.unpack_from("<II", data, 4)
    if version not in (1, 3, 4):  # version 2 stores bind-pose-relative vertices (not used by 0 A.D. data)
        raise ValueError(f"unsupported PMD version {version}")
    if data_size != len(data) - 12:
        raise ValueError(f"truncated PMD: header says {data_size + 12} bytes, file has {len(data)}")
    off = 12
    (n_vertices,) = struct.unpack_from("<I", data, off)
    off += 4
    n_uv = 1
    if version >= 4:
        (n_uv,) = struct.unpack_from("<I", data, off)
        off += 4
    vertex = np.dtype([("pos", "<f4", 3), ("normal", "<f4", 3), ("uv", "<f4", (n_uv, 2)),
                       ("bones", "u1", 4), ("weights", "<f4", 4)])
    verts = np.frombuffer(data, vertex, n_vertices, off)
    off += vertex.itemsize * n_vertices
    (n_faces,) = struct.unpack_from("<I", data, off)
    off += 4
    faces = np.frombuffer(data, "<u2", 3 * n_faces, off).reshape(-1, 3).astype(np.int32)
    off += 6 * n_faces
    (n_bones,) = struct.unpack_from("<I", data, off)
    off += 4
    rest = np.frombuffer(data, "<f4", 7 * n_bones, off).reshape(-1, 7).copy()
    off += 28 * n_bones
    props: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    if version >= 2:
        (n_props,) = struct.unpack_from("<I", data, off)
        off += 4
        for _ in range(n_props):
            (name_len,) = struct.unpack_from("<I", data, off)
            name = data[off + 4: off + 4 + name_len].decode("ascii", "replace")
            off += 4 + name_len
            values = np.frombuffer(data, "<f4", 7, off).copy()
            props[name] = (values[:3], values[3:], data[off + 28])
            off += 29
    if faces.size and faces.max() >= n_vertices:
        raise ValueError("PMD face indices exceed the vertex count")
    return PMD(version, verts["pos"].copy(), verts["normal"].copy(), verts["uv"][:, 0].copy(), faces, rest, props)


def decode_image(data: bytes) -> np.ndarray:
    """Decode DDS or PNG bytes to an RGBA uint8 array (H, W, 4)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"))


#: Props that are effects, state markers or ground decals, not part of an object's shape.
SKIPPED_PROPS = re.compile(r"projectile|garrison|decal|blood|dust|smoke|fire|particle|shadow|flag|"
                           r"loaded|carry|selection|splash|wake|ripple|fx|death|destruction", re.I)


@dataclass(frozen=True)
class Look:
    """One appearance of an actor: a mesh path (relative to ``art/meshes``), the base texture
    path (relative to ``art/textures/skins``; None when the actor has none) and the looks of the
    props attached to it, as ``(attach point, look)`` pairs."""

    mesh: str
    texture: str | None
    props: tuple[tuple[str, "Look"], ...] = ()


def _variant_parts(variant: ET.Element, read_variant: Callable[[str], str | None], depth: int = 0) -> dict:
    """Mesh, base texture and props a variant sets, following ``file=`` references into ``art/variants``."""
    parts: dict = {"props": []}
    ref = variant.get("file")
    if ref and depth < 8:
        text = read_variant(ref)
        if text is not None:
            parts.update(_variant_parts(ET.fromstring(text), read_variant, depth + 1))
    mesh = variant.findtext("mesh")
    if mesh and mesh.strip():
        parts["mesh"] = mesh.strip()
    for tex in variant.iter("texture"):
        if tex.get("name", "baseTex") == "baseTex" and tex.get("file"):
            parts["texture"] = tex.get("file")
        elif tex.get("name") is None and tex.text and tex.text.strip():  # old style <texture>path</texture>
            parts["texture"] = tex.text.strip()
    parts["props"] = _add_props(parts["props"], [(p.get("attachpoint", "root"), p.get("actor", ""))
                                                 for p in variant.iter("prop")])
    return parts


def _add_props(props: list[tuple[str, str]], more: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``props`` followed by ``more``; an empty actor removes the props at its attach point."""
    out = list(props)
    for point, actor in more:
        out = [p for p in out if p[0] != point] if not actor else out + [(point, actor)]
    return out


def _candidates(group: ET.Element) -> list[ET.Element]:
    """Variants the game picks at random: frequency > 0; when none has one, all of them (state
    variants such as 'death' or 'garrisoned' carry no frequency next to weighted ones)."""
    variants = group.findall("variant")
    weighted = [v for v in variants if float(v.get("frequency", "0") or 0) > 0]
    return weighted or variants


def actor_looks(xml_text: str, read_variant: Callable[[str], str | None],
                read_actor: Callable[[str], str | None] | None = None, depth: int = 0) -> list[Look]:
    """Distinct looks of an actor: every variant of each group combined with the first candidate
    of the other groups (so each alternative mesh or texture shows up once), in file order.

    ``read_variant(path)`` returns the text of ``art/variants/<path>``; ``read_actor(path)`` that of
    ``art/actors/<path>`` (None if missing). With ``read_actor``, props (except effects and
    markers, :data:`SKIPPED_PROPS`) are resolved to the first look of their actor, three levels deep.
    """
    root = ET.fromstring(xml_text.lstrip("\ufeff"))
    groups = [[_variant_parts(v, read_variant) for v in _candidates(g)] for g in root.findall("group")]
    groups = [g for g in groups if g]
    defaults = [g[0] for g in groups]
    looks: list[Look] = []
    for gi, group in enumerate(groups):
        for choice in group:
            merged: dict = {"props": []}
            for gj, default in enumerate(defaults):
                parts = choice if gj == gi else default
                merged.update({k: v for k, v in parts.items() if k != "props"})
                merged["props"] = _add_props(merged["props"], parts["props"])
            if "mesh" in merged:
                props = _prop_looks(merged["props"], read_variant, read_actor, depth) if read_actor else ()
                look = Look(merged["mesh"], merged.get("texture"), props)
                if look not in looks:
                    looks.append(look)
    return looks


def _prop_looks(props: list[tuple[str, str]], read_variant: Callable[[str], str | None],
                read_actor: Callable[[str], str | None], depth: int) -> tuple[tuple[str, Look], ...]:
    out = []
    for point, actor in props:
        text = read_actor(actor) if depth < 3 and not SKIPPED_PROPS.search(f"{point} {actor}") else None
        try:
            sub = actor_looks(text, read_variant, read_actor, depth + 1) if text else []
        except ET.ParseError:
            sub = []
        if sub:
            out.append((point, sub[0]))
    return tuple(out)


def prop_transform(model: PMD, point: str) -> np.ndarray | None:
    """4 x 4 model-space transform of prop point ``point`` of ``model`` in its rest pose (the bone's
    rest transform times the point's own); ``root`` is the identity; None if the model lacks it."""
    if point == "root":
        return np.eye(4)
    if point not in model.prop_points:
        return None
    translation, rotation, bone = model.prop_points[point]
    matrix = _rigid(translation, rotation)
    if bone != 0xFF and bone < len(model.rest_states):
        matrix = _rigid(model.rest_states[bone, :3], model.rest_states[bone, 3:]) @ matrix
    return matrix


def _rigid(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """4 x 4 matrix of a translation and a unit quaternion (x, y, z, w)."""
    x, y, z, w = np.asarray(quaternion, np.float64) / max(np.linalg.norm(quaternion), 1e-12)
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = translation
    return m


def decimate(positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray,
             target_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reduce a textured mesh to about ``target_faces`` triangles (quadric edge collapse, via
    fast-simplification; up to twice that where open borders such as sails and leaves cannot
    collapse further); returns ``(positions, faces, uvs, normals)``.

    Positions are simplified alone, on the welded surface; each corner of an output triangle then
    takes the UV and normal of a nearby input vertex, chosen by distance (in mean edge lengths)
    plus UV distance to the nearest input triangle's UVs (in mean UV edge lengths). At a UV seam, where two input vertices
    share a position, this picks the copy on the triangle's own side, so textures do not smear.
    Meshes already within budget are returned unchanged.
    """
    if len(faces) <= target_faces:
        return positions, faces, uvs, normals
    import fast_simplification
    from scipy.spatial import cKDTree

    # Simplify the welded surface: UV seams and split normals duplicate vertices, and left as open
    # borders they let the collapse tear the mesh apart. Degenerate triangles go, and so does the
    # back of each double-sided triangle (the renderers draw both sides of every face).
    welded, index = np.unique(positions.astype(np.float64).round(6), axis=0, return_inverse=True)
    welded_faces = index.reshape(-1)[faces]
    ordered = np.sort(welded_faces, axis=1)
    keep = (ordered[:, 0] != ordered[:, 1]) & (ordered[:, 1] != ordered[:, 2])
    keep[keep] = np.isin(np.arange(keep.sum()), np.unique(ordered[keep], axis=0, return_index=True)[1])
    welded_faces = welded_faces[keep]
    if len(welded_faces) <= target_faces:
        return positions, faces, uvs, normals
    # Open borders left after welding are real (sails, leaves, thin sheets): collapsing them shrinks
    # their outlines, so they are kept unless the mesh then stays above twice the budget.
    for keep_borders in (True, False):
        points, new_faces = fast_simplification.simplify(welded, welded_faces.astype(np.int32),
                                                         target_count=target_faces, preserve_border=keep_borders)
        if len(new_faces) <= 2 * target_faces:
            break
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edge_length = np.linalg.norm(np.diff(positions[edges], axis=1), axis=-1).mean() + 1e-12
    uv_edge_length = np.linalg.norm(np.diff(uvs[edges], axis=1), axis=-1).mean() + 1e-12
    nearest_face = cKDTree(positions[faces].mean(axis=1)).query(points[new_faces].mean(axis=1))[1]
    reference_uv = np.repeat(uvs[faces[nearest_face]].mean(axis=1), 3, axis=0)
    k = min(16, len(positions))
    distance, near = cKDTree(positions).query(points[new_faces.ravel()], k=k)
    distance, near = distance.reshape(-1, k), near.reshape(-1, k)
    cost = distance / edge_length + np.linalg.norm(uvs[near] - reference_uv[:, None], axis=-1) / uv_edge_length
    source = near[np.arange(len(near)), cost.argmin(axis=1)]
    # One output vertex per distinct (decimated vertex, source vertex) pair.
    pairs, corner_vertex = np.unique(np.stack([new_faces.ravel(), source], axis=1), axis=0, return_inverse=True)
    return (points[pairs[:, 0]].astype(np.float32), corner_vertex.reshape(-1, 3).astype(np.int32),
            uvs[pairs[:, 1]], normals[pairs[:, 1]])


def normalise(positions: np.ndarray) -> np.ndarray:
    """Centre ``positions`` on their bounding-box centre and scale the longest side to 1."""
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise ValueError("degenerate mesh: all vertices coincide")
    return ((positions - (lo + hi) / 2) / extent).astype(np.float32)
