"""Procedural object library: generated meshes, deterministic, always available (used by tests).

Each category is a small generator ``fn(rng) -> list[Part]`` (surfaces of revolution, boxes,
superquadrics, tubes along curves, extruded outlines); identity ``k`` of a category is that
generator run with ``numpy.random.default_rng([crc32(category), k])``, so shapes, proportions and
colours differ between identities and never between runs. Canonical pose: +y up, front facing +z.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from latentzoo.latents import about_x, about_y, about_z
from latentzoo.rendering.library import Mesh

TAU = 2 * np.pi
IDENTITIES_PER_CATEGORY = 6


@dataclass
class Part:
    """A coloured triangle mesh piece (positions (V, 3), faces (F, 3), per-vertex colours (V, 3))."""

    positions: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    smooth: bool = True  # smooth (shared-vertex) normals; False duplicates vertices per face

    def moved(self, offset=(0, 0, 0), rotation: np.ndarray | None = None, scale=1.0) -> "Part":
        p = self.positions * np.asarray(scale, dtype=np.float64)
        if rotation is not None:
            p = p @ np.asarray(rotation).T
        return Part(p + np.asarray(offset, dtype=np.float64), self.faces, self.colors, self.smooth)


# ----------------------------------------------------------------------------- primitives

def _grid_faces(nu: int, nv: int, wrap_u: bool) -> np.ndarray:
    """Two triangles per grid cell of an (nu, nv) vertex grid (u optionally wrapping)."""
    us = np.arange(nu if wrap_u else nu - 1)
    vs = np.arange(nv - 1)
    u, v = np.meshgrid(us, vs, indexing="ij")
    u, v = u.ravel(), v.ravel()
    u1 = (u + 1) % nu
    a, b, c, d = u * nv + v, u1 * nv + v, u1 * nv + v + 1, u * nv + v + 1
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)


def _colored(points: np.ndarray, color, stripes: float = 0.0, axis: int = 1) -> np.ndarray:
    """Per-vertex colours: ``color`` modulated by bands along ``axis`` (``stripes`` = bands per unit)."""
    c = np.broadcast_to(np.asarray(color, dtype=np.float64), points.shape).copy()
    if stripes:
        c *= (0.75 + 0.25 * (np.sin(points[:, axis] * stripes * TAU) > 0))[:, None]
    return c


def lathe(radius: np.ndarray, height: np.ndarray, color, segments: int = 32, stripes: float = 0.0) -> Part:
    """Surface of revolution about +y of the profile ``(radius[i], height[i])``."""
    t = np.linspace(0, TAU, segments, endpoint=False)
    p = np.stack([np.outer(np.cos(t), radius), np.broadcast_to(height, (segments, len(height))),
                  np.outer(np.sin(t), radius)], axis=-1).reshape(-1, 3)
    return Part(p, _grid_faces(segments, len(radius), wrap_u=True), _colored(p, color, stripes))


def cylinder(radius: float, height: float, color, segments: int = 24, y0: float = 0.0) -> Part:
    """Closed cylinder about +y from ``y0`` to ``y0 + height``."""
    r = np.array([0, radius, radius, radius, radius, 0])
    h = y0 + np.array([0, 0, 0, height, height, height])
    return lathe(r, h, color, segments)


def ellipsoid(radii, color, segments: int = 24, exponents=(1.0, 1.0), stripes: float = 0.0) -> Part:
    """Superquadric with semi-axes ``radii`` and shape exponents (1, 1 = ellipsoid)."""
    e1, e2 = exponents
    eta = np.linspace(-np.pi / 2, np.pi / 2, segments // 2 + 1)
    om = np.linspace(0, TAU, segments, endpoint=False)
    sp = lambda a, e: np.sign(np.sin(a)) * np.abs(np.sin(a)) ** e  # noqa: E731
    cp = lambda a, e: np.sign(np.cos(a)) * np.abs(np.cos(a)) ** e  # noqa: E731
    O, E = np.meshgrid(om, eta, indexing="ij")
    p = np.stack([radii[0] * cp(E, e1) * cp(O, e2), radii[1] * sp(E, e1),
                  radii[2] * cp(E, e1) * sp(O, e2)], axis=-1).reshape(-1, 3)
    return Part(p, _grid_faces(len(om), len(eta), wrap_u=True), _colored(p, color, stripes))


def box(size, color, center=(0, 0, 0)) -> Part:
    """Axis-aligned box (flat-shaded)."""
    corners = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads])
    p = corners * np.asarray(size, dtype=np.float64) + np.asarray(center, dtype=np.float64)
    return Part(p, faces.astype(np.int32), _colored(p, color), smooth=False)


def tube(path: np.ndarray, radius: float, color, segments: int = 10, closed: bool = False,
         stripes: float = 0.0) -> Part:
    """Tube of ``radius`` along a polyline ``path`` (N, 3), framed by parallel transport."""
    path = np.asarray(path, dtype=np.float64)
    tangent = np.gradient(path, axis=0)
    if closed:
        tangent = np.roll(path, -1, 0) - np.roll(path, 1, 0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(tangent[0], [0.3, 1.0, 0.1])
    normal /= np.linalg.norm(normal)
    rings = []
    for t in tangent:
        normal = normal - t * (normal @ t)
        normal /= np.linalg.norm(normal)
        binormal = np.cross(t, normal)
        a = np.linspace(0, TAU, segments, endpoint=False)[:, None]
        rings.append(radius * (np.cos(a) * normal + np.sin(a) * binormal))
    p = (np.stack(rings, 1) + path[None]).reshape(-1, 3)  # (segments, N) grid
    faces = _grid_faces(segments, len(path), wrap_u=True)
    if closed:
        n = len(path)
        u = np.arange(segments)
        u1 = (u + 1) % segments
        a, b, c, d = u * n + n - 1, u1 * n + n - 1, u1 * n, u * n
        faces = np.concatenate([faces, np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    along = np.repeat(np.linspace(0, 1, len(path))[None], segments, 0).reshape(-1)
    colors = _colored(np.stack([along] * 3, 1), color, stripes, axis=0)
    return Part(p, faces, colors)


def extrude(outline: np.ndarray, depth: float, color) -> Part:
    """Prism of a star-shaped 2D ``outline`` (N, 2) in the x-y plane, ``depth`` along z (flat-shaded)."""
    outline = np.asarray(outline, dtype=np.float64)
    n = len(outline)
    centre = outline.mean(0)
    front = np.column_stack([outline, np.full(n, depth / 2)])
    back = np.column_stack([outline, np.full(n, -depth / 2)])
    i = np.arange(n)
    j = (i + 1) % n
    p = np.concatenate([front, back, [[*centre, depth / 2], [*centre, -depth / 2]]])
    faces = np.concatenate([np.stack([i, j, i + n], 1), np.stack([j, j + n, i + n], 1),
                            np.stack([np.full(n, 2 * n), i, j], 1),
                            np.stack([np.full(n, 2 * n + 1), j + n, i + n], 1)])
    return Part(p, faces.astype(np.int32), _colored(p, color), smooth=False)


def _vertex_normals(p: np.ndarray, faces: np.ndarray) -> np.ndarray:
    fn = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    n = np.zeros_like(p)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(length > 0, length, 1.0)


def assemble(parts: list[Part]) -> Mesh:
    """Merge parts into one :class:`Mesh` centred on its bounding box with longest side 1."""
    pos, nor, col, faces, base = [], [], [], [], 0
    for part in parts:
        p, f, c = part.positions, part.faces, part.colors
        if not part.smooth:  # one vertex per face corner -> flat normals
            p, c, f = p[f.ravel()], c[f.ravel()], np.arange(f.size).reshape(-1, 3)
        pos.append(p)
        nor.append(_vertex_normals(p, f))
        col.append(c)
        faces.append(f + base)
        base += len(p)
    p = np.concatenate(pos)
    lo, hi = p.min(0), p.max(0)
    p = (p - (lo + hi) / 2) / (hi - lo).max()
    return Mesh(positions=p.astype(np.float32), normals=np.concatenate(nor).astype(np.float32),
                faces=np.concatenate(faces).astype(np.int32),
                colors=np.clip(np.concatenate(col), 0, 1).astype(np.float32))


# ----------------------------------------------------------------------------- categories

def _color(rng: np.random.Generator, saturation=(0.35, 0.9), value=(0.45, 0.95)) -> np.ndarray:
    """A random colour from hue/saturation/value ranges."""
    h, s, v = rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value)
    k = (np.array([5, 3, 1]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def _wood(rng):
    return _color(rng, (0.4, 0.7), (0.35, 0.7)) * [1.0, 0.75, 0.5] + [0.15, 0.08, 0.0]


def _smooth_profile(rng, n_ctrl: int, lo: float, hi: float, n: int = 24) -> np.ndarray:
    """A smooth random radius profile of ``n`` samples from ``n_ctrl`` control values."""
    ctrl = rng.uniform(lo, hi, n_ctrl)
    return np.interp(np.linspace(0, n_ctrl - 1, n), np.arange(n_ctrl), ctrl)


def _closed(radius: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Close a lathe profile with flat bottom and top caps."""
    return (np.concatenate([[0], radius, [0]]), np.concatenate([[height[0]], height, [height[-1]]]))


def vase(rng):
    r = _smooth_profile(rng, 5, 0.12, 0.4)
    h = np.linspace(0, rng.uniform(0.9, 1.4), len(r))
    return [lathe(*_closed(r, h), _color(rng), stripes=rng.choice([0, 4, 7]))]


def bottle(rng):
    body, neck = rng.uniform(0.15, 0.28), rng.uniform(0.04, 0.08)
    hb, hn = rng.uniform(0.5, 0.8), rng.uniform(0.2, 0.4)
    r = np.array([body, body, body * 0.95, neck * 1.2, neck, neck, neck * 1.3])
    h = np.array([0, 0.05, hb, hb + 0.12, hb + 0.15, hb + hn, hb + hn])
    parts = [lathe(*_closed(r, h), _color(rng, value=(0.2, 0.7)))]
    parts.append(cylinder(body * 1.01, hb * 0.4, _color(rng, (0, 0.3), (0.8, 1.0)), y0=hb * 0.25))
    return parts


def mug(rng):
    r, height = rng.uniform(0.18, 0.28), rng.uniform(0.3, 0.5)
    color = _color(rng)
    body = lathe(np.array([0, r, r, r * 0.9, r * 0.9, 0]), np.array([0, 0, height, height, 0.05, 0.05]), color)
    t = np.linspace(-np.pi / 2, np.pi / 2, 16)
    hr = height * rng.uniform(0.3, 0.45)
    path = np.column_stack([r + hr * 0.8 * np.cos(t), height / 2 + hr * np.sin(t), np.zeros_like(t)])
    return [body, tube(path, height * 0.05, color)]


def goblet(rng):
    cup, stem = rng.uniform(0.18, 0.3), rng.uniform(0.02, 0.04)
    hs = rng.uniform(0.25, 0.5)
    r = np.array([0, 0.16, 0.16, stem, stem, cup * 0.3, cup, cup * rng.uniform(0.8, 1.2), 0])
    h = np.array([0, 0, 0.02, 0.04, hs, hs + 0.05, hs + 0.2, hs + 0.4, hs + 0.4])
    return [lathe(r, h, _color(rng, value=(0.6, 1.0)))]


def bowl(rng):
    r = rng.uniform(0.35, 0.5)
    t = np.linspace(0, np.pi / 2, 12)
    depth = rng.uniform(0.15, 0.3)
    outer = np.column_stack([r * np.sin(t), depth * (1 - np.cos(t))])
    rr = np.concatenate([[0], outer[:, 0], outer[::-1, 0] * 0.92, [0]])
    hh = np.concatenate([[0], outer[:, 1], outer[::-1, 1] * 0.92 + depth * 0.08 + 0.02, [0.03]])
    return [lathe(rr, hh, _color(rng), stripes=rng.choice([0, 6]))]


def lamp(rng):
    pole = rng.uniform(0.6, 1.0)
    shade_r = rng.uniform(0.18, 0.32)
    color = _color(rng, value=(0.2, 0.5))
    return [cylinder(rng.uniform(0.12, 0.2), 0.05, color), cylinder(0.02, pole, color),
            lathe(np.array([shade_r, shade_r * 0.55]), np.array([pole - 0.1, pole + 0.15]),
                  _color(rng, (0.1, 0.5), (0.8, 1.0)))]


def pawn(rng):
    r = np.array([0, 0.3, 0.3, 0.2, 0.14, 0.1, 0.16, 0.09, 0.0])
    h = np.array([0, 0, 0.08, 0.15, 0.3, 0.6, 0.64, 0.68, 0.7]) * rng.uniform(0.9, 1.3)
    head = ellipsoid([0.14] * 3, _color(rng)).moved((0, h[-1] + 0.1, 0))
    return [lathe(r, h, head.colors[0]), head]


def mushroom(rng):
    stem_h, cap_r = rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.5)
    cap = ellipsoid([cap_r, cap_r * rng.uniform(0.4, 0.8), cap_r], _color(rng), exponents=(1, 1))
    cap.positions[:, 1] = np.maximum(cap.positions[:, 1], 0)
    return [cylinder(rng.uniform(0.06, 0.12), stem_h, _color(rng, (0, 0.2), (0.8, 1.0))),
            cap.moved((0, stem_h, 0))]


def bell(rng):
    t = np.linspace(0, 1, 16)
    r = 0.15 + rng.uniform(0.2, 0.35) * t ** rng.uniform(1.5, 3)
    h = (1 - t) * rng.uniform(0.5, 0.8)
    return [lathe(*_closed(r, h), _color(rng, (0.5, 0.8), (0.6, 0.9))),
            ellipsoid([0.05] * 3, [0.2, 0.2, 0.2]).moved((0, -0.03, 0))]


def hourglass(rng):
    t = np.linspace(-1, 1, 21)
    r = rng.uniform(0.04, 0.1) + rng.uniform(0.15, 0.3) * np.abs(t) ** rng.uniform(1, 2.5)
    h = (t + 1) * 0.5
    frame = _wood(rng)
    return [lathe(*_closed(r, h), _color(rng, (0, 0.3), (0.7, 1.0))),
            cylinder(0.38, 0.05, frame, y0=-0.05), cylinder(0.38, 0.05, frame, y0=1.0)]


def chair(rng):
    w, d, seat = rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.5)
    back, leg = rng.uniform(0.35, 0.6), rng.uniform(0.03, 0.05)
    color, cushion = _wood(rng), _color(rng)
    parts = [box([w, 0.05, d], cushion, (0, seat, 0)), box([w, back, 0.05], color, (0, seat + back / 2, -d / 2))]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(box([leg, seat, leg], color, (sx * (w / 2 - leg), seat / 2, sz * (d / 2 - leg))))
    return parts


def table(rng):
    w, d, height = rng.uniform(0.8, 1.2), rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.75)
    color = _wood(rng)
    parts = [box([w, 0.05, d], color, (0, height, 0))]
    if rng.uniform() < 0.5:
        parts += [cylinder(0.05, height, color), cylinder(0.25, 0.04, color)]
    else:
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(box([0.05, height, 0.05], color, (sx * (w / 2 - 0.05), height / 2, sz * (d / 2 - 0.05))))
    return parts


def stool(rng):
    height, r = rng.uniform(0.4, 0.7), rng.uniform(0.15, 0.25)
    color = _color(rng)
    parts = [cylinder(r, 0.05, color, y0=height)]
    n = rng.choice([3, 4])
    for k in range(n):
        a = k * TAU / n
        top = np.array([r * 0.7 * np.cos(a), height, r * 0.7 * np.sin(a)])
        bottom = np.array([r * 1.3 * np.cos(a), 0, r * 1.3 * np.sin(a)])
        parts.append(tube(np.linspace(bottom, top, 4), 0.025, _wood(rng)))
    return parts


def bed(rng):
    w, length = rng.uniform(0.9, 1.4), rng.uniform(1.8, 2.1)
    frame, sheet = _wood(rng), _color(rng, (0.1, 0.5), (0.7, 1.0))
    return [box([w, 0.3, length], frame, (0, 0.15, 0)), box([w * 0.96, 0.15, length * 0.97], sheet, (0, 0.37, 0)),
            box([w, rng.uniform(0.6, 1.0), 0.08], frame, (0, 0.4, -length / 2)),
            box([w * 0.6, 0.1, 0.3], [0.95, 0.95, 0.95], (0, 0.5, -length / 2 + 0.25))]


def bookshelf(rng):
    w, height, d = rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.8), 0.3
    shelves = int(rng.integers(3, 6))
    color = _wood(rng)
    parts = [box([0.04, height, d], color, (sx * w / 2, height / 2, 0)) for sx in (-1, 1)]
    parts.append(box([w, height, 0.02], color, (0, height / 2, -d / 2)))
    for k in range(shelves + 1):
        y = k * height / shelves
        parts.append(box([w, 0.03, d], color, (0, y, 0)))
        if k < shelves:  # a row of books
            x = -w / 2 + 0.05
            while x < w / 2 - 0.08:
                bw = rng.uniform(0.03, 0.07)
                bh = rng.uniform(0.5, 0.85) * height / shelves
                parts.append(box([bw, bh, d * 0.8], _color(rng), (x + bw / 2, y + bh / 2, 0)))
                x += bw + 0.005
    return parts


def bench(rng):
    length, height = rng.uniform(1.2, 1.8), rng.uniform(0.4, 0.5)
    color, metal = _wood(rng), _color(rng, (0, 0.2), (0.1, 0.4))
    parts = [box([length, 0.04, 0.12], color, (0, height, z)) for z in (-0.14, 0, 0.14)]
    parts += [box([length, 0.1, 0.03], color, (0, height + 0.2 + k * 0.15, -0.2)) for k in range(2)]
    parts += [box([0.05, height, 0.4], metal, (sx * length * 0.4, height / 2, 0)) for sx in (-1, 1)]
    return parts


def house(rng):
    w, d, height = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.4), rng.uniform(0.5, 0.8)
    roof_h = rng.uniform(0.3, 0.6)
    wall, roof = _color(rng, (0.1, 0.4), (0.7, 1.0)), _color(rng, (0.5, 0.9), (0.3, 0.6))
    gable = np.array([[-w / 2 - 0.05, 0], [w / 2 + 0.05, 0], [0, roof_h]])
    return [box([w, height, d], wall, (0, height / 2, 0)),
            extrude(gable, d + 0.1, roof).moved((0, height, 0)),
            box([0.2, 0.35, 0.02], _wood(rng), (rng.uniform(-0.2, 0.2) * w, 0.175, d / 2 + 0.01)),
            box([0.1, 0.3, 0.1], roof, (w * 0.25, height + roof_h * 0.6, 0))]


def car(rng):
    length, w, height = rng.uniform(1.6, 2.2), rng.uniform(0.8, 1.0), rng.uniform(0.3, 0.45)
    paint = _color(rng, (0.5, 1.0), (0.4, 0.95))
    cabin = rng.uniform(0.4, 0.6) * length
    parts = [box([w, height, length], paint, (0, 0.15 + height / 2, 0)),
             box([w * 0.9, height * 0.8, cabin], [0.6, 0.75, 0.85], (0, 0.15 + height * 1.4, -0.1 * length))]
    for sx in (-1, 1):
        for sz in (-1, 1):
            wheel = lathe(*_closed(np.full(2, 0.17), np.array([-0.05, 0.05])), [0.1, 0.1, 0.1], 16)
            parts.append(wheel.moved((sx * w / 2, 0.17, sz * length * 0.32), about_z(np.pi / 2)))
    parts.append(box([w * 0.8, 0.06, 0.02], [1.0, 1.0, 0.8], (0, 0.15 + height * 0.6, length / 2 + 0.01)))
    return parts


def superquadric(rng):
    e = rng.uniform(0.2, 2.0, size=2)
    return [ellipsoid(rng.uniform(0.25, 0.5, size=3), _color(rng), 32, exponents=e, stripes=rng.choice([0, 3]))]


def torus(rng):
    big, small = rng.uniform(0.3, 0.45), rng.uniform(0.06, 0.18)
    t = np.linspace(0, TAU, 48, endpoint=False)
    path = np.column_stack([big * np.cos(t), small * rng.uniform(0, 1) * np.sin(3 * t), big * np.sin(t)])
    return [tube(path, small, _color(rng), 16, closed=True, stripes=rng.choice([0, 8]))]


def knot(rng):
    p, q = [(2, 3), (3, 2), (2, 5), (3, 4), (3, 5), (2, 7)][int(rng.integers(6))]
    t = np.linspace(0, TAU, 160, endpoint=False)
    r = np.cos(q * t) + 2
    path = np.column_stack([r * np.cos(p * t), -np.sin(q * t), r * np.sin(p * t)]) * 0.15
    return [tube(path, rng.uniform(0.03, 0.06), _color(rng), 10, closed=True, stripes=rng.choice([0, 12]))]


def spring(rng):
    turns, r = rng.uniform(3, 7), rng.uniform(0.15, 0.3)
    t = np.linspace(0, turns * TAU, int(turns * 24))
    path = np.column_stack([r * np.cos(t), t / (turns * TAU) * rng.uniform(0.6, 1.2), r * np.sin(t)])
    return [tube(path, rng.uniform(0.02, 0.05), _color(rng, (0, 0.4), (0.5, 0.9)))]


def star(rng):
    n = int(rng.integers(4, 8))
    a = np.linspace(0, TAU, 2 * n, endpoint=False) + np.pi / 2
    r = np.where(np.arange(2 * n) % 2 == 0, 0.5, 0.5 * rng.uniform(0.3, 0.6))
    return [extrude(np.column_stack([r * np.cos(a), r * np.sin(a)]), rng.uniform(0.1, 0.3), _color(rng))]


def gear(rng):
    teeth = int(rng.integers(6, 16))
    a = np.linspace(0, TAU, teeth * 4, endpoint=False)
    r = np.where((np.arange(teeth * 4) // 2) % 2 == 0, 0.5, 0.5 - rng.uniform(0.06, 0.12))
    metal = _color(rng, (0, 0.3), (0.4, 0.8))
    return [extrude(np.column_stack([r * np.cos(a), r * np.sin(a)]), rng.uniform(0.1, 0.2), metal),
            cylinder(0.1, 0.5, metal).moved((0, 0, 0.25), about_x(np.pi / 2))]


def letter_l(rng):
    w, t = rng.uniform(0.5, 0.8), rng.uniform(0.15, 0.25)
    color = _color(rng)
    return [box([t, 1.0, t], color, (-w / 2 + t / 2, 0.5, 0)), box([w, t, t], color, (0, t / 2, 0)),
            box([t, t, rng.uniform(0.3, 0.6)], color, (-w / 2 + t / 2, 1.0 - t / 2, 0.15))]


def arrow(rng):
    shaft, head = rng.uniform(0.05, 0.1), rng.uniform(0.15, 0.25)
    outline = np.array([[-0.5, -shaft], [0.2, -shaft], [0.2, -head], [0.5, 0], [0.2, head], [0.2, shaft], [-0.5, shaft]])
    return [extrude(outline, rng.uniform(0.05, 0.15), _color(rng))]


def snowman(rng):
    sizes = np.sort(rng.uniform(0.15, 0.35, 3))[::-1]
    parts, y = [], 0.0
    for s in sizes:
        parts.append(ellipsoid([s] * 3, [0.95, 0.95, 0.97]).moved((0, y + s, 0)))
        y += 1.8 * s
    nose = lathe(np.array([0.03, 0.0]), np.array([0.0, 0.15]), [1.0, 0.5, 0.1], 12)
    parts.append(nose.moved((0, y - sizes[-1] * 0.8, sizes[-1] * 0.9), about_x(np.pi / 2)))
    parts.append(cylinder(sizes[-1] * 0.7, 0.25, _color(rng, value=(0.1, 0.4)), y0=y - 0.1))
    return parts


def dumbbell(rng):
    bar, w = rng.uniform(0.5, 0.8), rng.uniform(0.12, 0.25)
    color = _color(rng, value=(0.2, 0.7))
    parts = [cylinder(0.03, bar, [0.7, 0.7, 0.7]).moved((-bar / 2, 0, 0), about_z(-np.pi / 2))]
    for sx in (-1, 1):
        plate = ellipsoid([w * 0.5, w, w], color, exponents=(rng.uniform(0.2, 1), 1))
        parts.append(plate.moved((sx * bar / 2, 0, 0)))
    return parts


def hammer(rng):
    handle, head = rng.uniform(0.7, 1.0), rng.uniform(0.25, 0.4)
    return [cylinder(0.03, handle, _wood(rng)),
            box([head, 0.08, 0.08], _color(rng, (0, 0.2), (0.3, 0.6)), (rng.uniform(-0.05, 0.05), handle, 0)),
            box([0.04, 0.04, 0.04], [0.3, 0.3, 0.3], (-head / 2 - 0.02, handle + 0.02, 0))]


def umbrella(rng):
    r, ribs = rng.uniform(0.4, 0.6), int(rng.integers(6, 10))
    a = np.linspace(0, TAU, ribs * 2, endpoint=False)
    rim = np.where(np.arange(ribs * 2) % 2 == 0, r, r * 0.9)
    canopy_h = rng.uniform(0.1, 0.25)
    p = np.concatenate([[[0, 1 + canopy_h, 0]], np.column_stack([rim * np.cos(a), np.full_like(a, 1.0), rim * np.sin(a)])])
    i = np.arange(ribs * 2)
    faces = np.stack([np.zeros_like(i), 1 + i, 1 + (i + 1) % (ribs * 2)], 1).astype(np.int32)
    t = np.linspace(0, np.pi, 8)
    hook = np.column_stack([0.06 - 0.06 * np.cos(t), -0.06 * np.sin(t), np.zeros_like(t)])
    return [Part(p, faces, _colored(p, _color(rng)), smooth=False), cylinder(0.015, 1.05 + canopy_h, [0.2, 0.2, 0.2]),
            tube(hook, 0.02, [0.3, 0.2, 0.1], 8)]


def tree(rng):
    trunk_h = rng.uniform(0.2, 0.45)
    parts = [cylinder(rng.uniform(0.04, 0.08), trunk_h + 0.1, _wood(rng))]
    leaf = _color(rng, (0.5, 0.9), (0.3, 0.7)) * [0.4, 1.0, 0.5]
    if rng.uniform() < 0.5:
        for k in range(int(rng.integers(2, 5))):
            parts.append(lathe(np.array([0.35 - 0.06 * k, 0]), np.array([0, 0.35]), leaf).moved((0, trunk_h + 0.22 * k, 0)))
    else:
        parts.append(ellipsoid(rng.uniform(0.25, 0.4, 3), leaf).moved((0, trunk_h + 0.3, 0)))
    return parts


def rocket(rng):
    r, length = rng.uniform(0.08, 0.14), rng.uniform(0.8, 1.2)
    t = np.linspace(0, 1, 10)
    rr = np.concatenate([[0], np.full(6, r), r * np.sqrt(1 - t[1:]) ])
    hh = np.concatenate([[0], np.linspace(0, length * 0.75, 6), length * 0.75 + t[1:] * length * 0.25])
    body = lathe(rr, hh, _color(rng, (0, 0.2), (0.8, 1.0)), stripes=rng.choice([0, 3]))
    fin = _color(rng)
    parts = [body]
    n = int(rng.integers(3, 5))
    for k in range(n):
        f = extrude(np.array([[0, 0], [r * 2.2, 0], [0, length * 0.3]]), 0.02, fin)
        parts.append(f.moved((0, 0, 0), about_y(k * TAU / n)))
    return parts


def airplane(rng):
    length, span = rng.uniform(1.0, 1.4), rng.uniform(0.9, 1.4)
    color = _color(rng, (0, 0.5), (0.6, 1.0))
    fuselage = ellipsoid([0.08, 0.08, length / 2], color, 24)
    return [fuselage, box([span, 0.02, 0.22], color, (0, 0, rng.uniform(-0.05, 0.15))),
            box([span * 0.4, 0.02, 0.1], color, (0, 0.02, -length / 2 + 0.08)),
            box([0.02, 0.2, 0.12], _color(rng), (0, 0.1, -length / 2 + 0.08))]


def teapot(rng):
    r, height = rng.uniform(0.25, 0.35), rng.uniform(0.3, 0.45)
    color = _color(rng)
    body = ellipsoid([r, height / 2, r], color).moved((0, height / 2, 0))
    t = np.linspace(0, 1, 10)
    spout = np.column_stack([r * 0.8 + t * 0.3, height * (0.35 + 0.5 * t ** 1.5), np.zeros_like(t)])
    a = np.linspace(-np.pi / 2, np.pi / 2, 12)
    handle = np.column_stack([-r * 0.9 - 0.12 * np.cos(a), height / 2 + 0.12 * np.sin(a), np.zeros_like(a)])
    lid = ellipsoid([0.05] * 3, color).moved((0, height + 0.04, 0))
    return [body, tube(spout, 0.035, color), tube(handle, 0.025, color), lid]


def cactus(rng):
    green = _color(rng, (0.5, 0.9), (0.3, 0.7)) * [0.5, 1.0, 0.5]
    height = rng.uniform(0.6, 1.0)
    parts = [ellipsoid([0.1, height / 2, 0.1], green, stripes=0).moved((0, height / 2, 0))]
    for side in rng.choice([-1, 1], size=int(rng.integers(1, 3)), replace=False):
        y0 = rng.uniform(0.3, 0.6) * height
        arm = np.array([[0, y0, 0], [side * 0.2, y0, 0], [side * 0.25, y0 + 0.05, 0], [side * 0.25, y0 + 0.3, 0]])
        parts.append(tube(arm, 0.06, green, 10))
    parts.append(cylinder(0.16, 0.15, _color(rng, (0.5, 0.8), (0.5, 0.8)) * [1, 0.6, 0.4]))
    return parts


#: Category name -> generator; order fixes category indices.
CATEGORIES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    f.__name__: f for f in (
        vase, bottle, mug, goblet, bowl, lamp, pawn, mushroom, bell, hourglass, chair, table, stool,
        bed, bookshelf, bench, house, car, superquadric, torus, knot, spring, star, gear, letter_l,
        arrow, snowman, dumbbell, hammer, umbrella, tree, rocket, airplane, teapot, cactus)
}


class ProceduralLibrary:
    """The procedural :class:`~latentzoo.rendering.library.ObjectLibrary`: ``len(CATEGORIES)``
    categories x ``identities_per_category`` identities, meshes generated on demand and cached."""

    name = "procedural"
    attribution = "latentzoo procedural shapes (generated, MIT)"

    def __init__(self, identities_per_category: int = IDENTITIES_PER_CATEGORY):
        self.categories = list(CATEGORIES)
        self.identities = [f"{c}_{k}" for c in self.categories for k in range(identities_per_category)]
        self.identity_category = [i for i in range(len(self.categories)) for _ in range(identities_per_category)]
        self._per_category = identities_per_category
        self._cache: dict[int, Mesh] = {}

    def mesh(self, identity: int) -> Mesh:
        """Canonical-pose, unit-longest-axis mesh of ``identity``."""
        if identity not in self._cache:
            category = self.categories[self.identity_category[identity]]
            rng = np.random.default_rng([zlib.crc32(category.encode()), identity % self._per_category])
            self._cache[identity] = assemble(CATEGORIES[category](rng))
        return self._cache[identity]
