"""Background image sets: ``none`` (one uniform colour), ``procedural`` textures, skimage
``photos``, and ``0ad`` terrain/sky textures from the imported 0 A.D. cache.

Every set is a list of square RGB uint8 images; a scene picks one (``Scene.background``) and a
square crop of it (``Scene.crop`` = left, top, side as fractions of the image side).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Callable

import numpy as np
from PIL import Image

from latentzoo.errors import UserError, unknown

BACKGROUND_KINDS = ("none", "procedural", "photos", "0ad")
UNIFORM_COLOR = (128, 128, 128)  # the single colour of ``--backgrounds none``
PROCEDURAL_COUNT = 32
TEXTURE_SIZE = 512


def _square(img: np.ndarray, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` (RGB uint8)."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.BILINEAR))


def _noise(rng: np.random.Generator, size: int, octaves: int) -> np.ndarray:
    """Fractal value noise in [0, 1] (sum of upsampled random grids)."""
    out = np.zeros((size, size))
    for o in range(octaves):
        n = 2 ** (o + 2)
        grid = Image.fromarray(rng.uniform(0, 1, (n, n)).astype(np.float32), mode="F")
        out += np.asarray(grid.resize((size, size), Image.BICUBIC)) / 2 ** o
    out -= out.min()
    return out / max(out.max(), 1e-9)


def procedural_texture(index: int, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Texture ``index``: coloured fractal noise, stripes, checkers, tiles or gradients."""
    rng = np.random.default_rng([7, index])
    c0, c1 = rng.uniform(0, 1, (2, 3))
    yy, xx = np.mgrid[0:size, 0:size] / size
    kind = index % 5
    if kind == 0:
        t = _noise(rng, size, 6)
    elif kind == 1:
        a = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * rng.uniform(6, 30) + 3 * _noise(rng, size, 3))
    elif kind == 2:
        n = rng.integers(4, 16)
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2) * 0.7 + 0.3 * _noise(rng, size, 5)
    elif kind == 3:
        n = rng.integers(3, 10)
        mortar = (np.abs((xx * n + 0.5 * (np.floor(yy * n) % 2)) % 1 - 0.5) > 0.45) | (np.abs(yy * n % 1 - 0.5) > 0.45)
        t = np.where(mortar, 0.0, 0.6 + 0.4 * _noise(rng, size, 4))
    else:
        t = np.clip(yy + 0.3 * _noise(rng, size, 4), 0, 1)
    rgb = c0 + (c1 - c0) * t[..., None]
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _photos() -> list[np.ndarray]:
    import skimage.data as data

    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel",
             "hubble_deep_field", "immunohistochemistry", "colorwheel", "page", "text", "moon",
             "horse", "clock", "coins", "cell")
    out = []
    for name in names:
        try:
            out.append(_square(np.asarray(getattr(data, name)())))
        except Exception:  # noqa: BLE001 - some skimage images need a download; skip those
            continue
    if not out:
        raise UserError("no scikit-image sample photos are available; use --backgrounds procedural")
    return out


def _zeroad() -> list[np.ndarray]:
    try:
        from latentzoo.rendering.libraries import zeroad
    except ModuleNotFoundError as e:
        raise UserError("0ad backgrounds are not available in this installation") from e
    paths = zeroad.background_images(None)
    if not paths:
        raise UserError("no 0 A.D. background textures found: run `latentzoo assets import 0ad` first")
    return [_square(np.asarray(Image.open(p).convert("RGB"))) for p in paths]


class BackgroundSet(Sequence):
    """A read-only sequence of square RGB uint8 images, each made on first access and kept."""

    def __init__(self, count: int, make: Callable[[int], np.ndarray]):
        self._count, self._make = count, functools.lru_cache(maxsize=None)(make)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> np.ndarray:
        if not -self._count <= index < self._count:
            raise IndexError(index)
        return self._make(index % self._count)


@functools.lru_cache(maxsize=None)
def load_backgrounds(kind: str) -> BackgroundSet:
    """The background images of ``kind`` (one of :data:`BACKGROUND_KINDS`), cached per process;
    procedural textures are generated when first used."""
    if kind == "none":
        return BackgroundSet(1, lambda i: np.full((4, 4, 3), UNIFORM_COLOR, dtype=np.uint8))
    if kind == "procedural":
        return BackgroundSet(PROCEDURAL_COUNT, procedural_texture)
    if kind in ("photos", "0ad"):
        images = _photos() if kind == "photos" else _zeroad()
        return BackgroundSet(len(images), images.__getitem__)
    raise unknown("backgrounds", kind, BACKGROUND_KINDS)
