"""Backend-independent scene sampling: image ``i`` of a dataset is a pure function of (seed, i).

A :class:`Scene` holds everything a backend needs to draw one image and every label it must
carry. Positions and angles follow :mod:`latentzoo.latents` (camera frame, x right, y up, +z
forward; the authors' rotation angles).

Default distribution (documented choice):

* ``z`` uniform in ``[0.9, 4.2] * object_size`` (the paper's 0.9-4.2 m for metre-sized objects);
* ``x, y`` by back-projection of an image-plane position drawn uniformly within the central
  ``frame_fraction`` of the frame, so the object centre always projects inside the image
  (``x = y = 0`` when ``centered``);
* pose ``face-camera`` (the default; the authors' generator, and what the TDW backend does): the
  object's own +z turned towards the camera (its up as close to the camera's up as possible), then
  turned by uniform +-45 degree pitch, yaw and roll about its own axes
  (``facing @ Rx @ Ry @ Rz``); an unjittered facing object has ``(rot_x, rot_y, rot_z) = (0, pi, 0)``;
* pose ``uniform``: rotation uniform over SO(3) (Haar measure; Shoemake's uniform quaternion);
* the labels ``rot_x, rot_y, rot_z`` are the authors' Euler angles of the camera-frame rotation
  (:func:`latentzoo.latents.quaternion_to_euler`); the rotation itself is kept as the quaternion
  ``Scene.rotation``, which the renderers draw;
* balance ``categories`` (the default; the authors' balance): within each block of consecutive
  indices (a dataset's train split, its test split) image ``j`` of the block shows category
  ``perm_r[j mod C]`` with ``r = j // C`` and ``perm_r`` a seeded permutation of the ``C`` allowed
  categories, and its ``r``-th image of a category shows model ``perm'[r mod M]`` of that category's
  ``M`` models, so every prefix of a block holds equally many images of each category (+-1) and of
  each model within a category (+-1); balance ``models`` draws every image's model uniformly
  (a category with more models gets more images).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import struct
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from latentzoo.latents import about_x, about_y, about_z, look_rotation, matrix_to_quaternion, quaternion_to_euler


DEFAULT_FOV_DEG = 60.0
POSES = ("face-camera", "uniform")
BALANCES = ("categories", "models")
POSE_JITTER_DEG = 45.0  # the paper's pitch/yaw/roll jitter about facing the camera


@dataclass(frozen=True)
class Variability:
    """Which factors vary across a dataset (the paper's reduced-variability controls).

    ``categories``: category names to draw from (None = all); ``centered``: object centre on the
    optical axis (x = y = 0); ``pose``: ``face-camera`` (+-45 degrees about facing the camera) or
    ``uniform`` (any rotation); ``balance``: ``categories`` (equal images per category, then per
    model within it) or ``models`` (models drawn uniformly); ``models_per_category``: draw only the
    first ``K`` models of each category (None = all).
    """

    categories: tuple[str, ...] | None = None
    centered: bool = False
    pose: str = "face-camera"
    balance: str = "categories"
    models_per_category: int | None = None

    def to_dict(self) -> dict:
        d = {"categories": None if self.categories is None else list(self.categories),
             "centered": self.centered, "pose": self.pose, "balance": self.balance}
        if self.models_per_category is not None:  # absent when unset: plans of earlier renders stay valid
            d["models_per_category"] = self.models_per_category
        return d


@dataclass(frozen=True)
class SamplerConfig:
    """Distribution parameters of the scene sampler (everything but the library and the seed)."""

    fov_deg: float = DEFAULT_FOV_DEG
    object_size: float = 1.0               # longest axis of every object, metres
    z_range: tuple[float, float] = (0.9, 4.2)  # multiples of object_size
    frame_fraction: float = 0.7            # centre projects within this part of the half-frame
    n_backgrounds: int = 1                 # number of background images to choose from

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Scene:
    """One image: the labels (category, identity, x, y, z, rot_x, rot_y, rot_z) and how to draw it."""

    index: int
    category: int
    identity: int
    x: float
    y: float
    z: float
    rot_x: float
    rot_y: float
    rot_z: float
    rotation: tuple[float, float, float, float]  # camera-frame quaternion (x, y, z, w) the renderer draws
    scale: float                          # longest object axis, metres
    background: int                       # background image index
    crop: tuple[float, float, float]      # background crop: left, top, side (fractions of the source)
    light_dir: tuple[float, float, float]  # unit vector pointing from the object towards the light
    light_color: tuple[float, float, float]
    ambient: float
    tint: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0))  # multiplies object colours
    cycle: int = 0         # category cycle in the balanced block: (index - block start) // cycle_length
    cycle_length: int = 1  # images per category cycle: the number of categories drawn from

    def latents(self) -> dict:
        """The labels of this image (latent names of :mod:`latentzoo.latents`)."""
        return {"x": self.x, "y": self.y, "z": self.z, "rot_x": self.rot_x, "rot_y": self.rot_y,
                "rot_z": self.rot_z, "category": self.category, "identity": self.identity}

    def extras(self) -> dict:
        """Drawing parameters stored next to the labels (flat, parquet-friendly)."""
        return {"scale": self.scale, "background": self.background,
                "crop_left": self.crop[0], "crop_top": self.crop[1], "crop_side": self.crop[2],
                "light_x": self.light_dir[0], "light_y": self.light_dir[1], "light_z": self.light_dir[2],
                "ambient": self.ambient, "qx": self.rotation[0], "qy": self.rotation[1],
                "qz": self.rotation[2], "qw": self.rotation[3]}


class SceneSampler:
    """Draws :class:`Scene` s for a library, a seed and variability settings.

    >>> sampler = SceneSampler(identity_category=[0, 0, 1], category_names=["a", "b"], seed=0)
    >>> sampler(5) == sampler(5)
    True
    """

    def __init__(self, identity_category: Sequence[int], category_names: Sequence[str], seed: int,
                 variability: Variability = Variability(), config: SamplerConfig = SamplerConfig(),
                 blocks: Sequence[int] = (0,)):
        """``blocks``: sorted first indices of the blocks that are balanced on their own (e.g. a
        dataset's ``(0, n_train)``: its train and its test split)."""
        self.seed = int(seed)
        self.blocks = sorted(int(b) for b in blocks)
        self.variability = variability
        self.config = config
        identity_category = np.asarray(identity_category)
        if variability.categories is None:
            allowed = np.arange(len(category_names))
        else:
            lookup = {name: i for i, name in enumerate(category_names)}
            unknown = [c for c in variability.categories if c not in lookup]
            if unknown:
                raise ValueError(f"unknown categories {unknown}; the library has: {', '.join(category_names)}")
            allowed = np.array(sorted(lookup[c] for c in variability.categories))
        if variability.models_per_category is not None and variability.models_per_category < 1:
            raise ValueError(f"models per category must be at least 1, got {variability.models_per_category}")
        # each allowed category's models that may be drawn: its first models_per_category (all when None)
        models = {int(c): [int(i) for i in np.flatnonzero(identity_category == c)[:variability.models_per_category]]
                  for c in allowed}
        #: identities that may be drawn
        self.identities = np.array(sorted(i for m in models.values() for i in m), dtype=np.int64)
        if len(self.identities) == 0:
            raise ValueError("no identities in the chosen categories")
        if variability.pose not in POSES:
            raise ValueError(f"unknown pose {variability.pose!r}; choose one of {', '.join(POSES)}")
        if variability.balance not in BALANCES:
            raise ValueError(f"unknown balance {variability.balance!r}; choose one of {', '.join(BALANCES)}")
        self.identity_category = identity_category
        self._identities = [int(i) for i in self.identities]
        self._identity_category = [int(c) for c in identity_category]
        self._models = {c: m for c, m in models.items() if m}
        self._categories = list(self._models)

    def block_start(self, index: int) -> int:
        """First index of the balanced block (split) that holds image ``index``."""
        return self.blocks[max(bisect.bisect_right(self.blocks, index) - 1, 0)]

    def identity(self, index: int, u0: float) -> int:
        """Model shown by image ``index``: balanced over categories then models, or uniform (``u0``)."""
        if self.variability.balance == "models":
            return self._identities[min(int(u0 * len(self._identities)), len(self._identities) - 1)]
        start = self.block_start(index)
        cycle, pos = divmod(index - start, len(self._categories))
        category = self._categories[_permutation(len(self._categories), self.seed, start, -1, cycle)[pos]]
        models = self._models[category]
        model_cycle, model_pos = divmod(cycle, len(models))
        return models[_permutation(len(models), self.seed, start, category, model_cycle)[model_pos]]

    def __call__(self, index: int) -> Scene:
        """Scene of image ``index`` (a pure function of the seed, the index and the settings)."""
        c = self.config
        u = uniforms(self.seed, index, 24)  # each factor below has its own entries
        identity = self.identity(index, u[0])
        z = (c.z_range[0] + (c.z_range[1] - c.z_range[0]) * u[1]) * c.object_size
        a, b = (0.0, 0.0) if self.variability.centered else (c.frame_fraction * (2 * u[2] - 1),
                                                             c.frame_fraction * (2 * u[3] - 1))
        half_h = math.tan(math.radians(c.fov_deg) / 2)
        # light from above and in front of the object, jittered by Box-Muller normals
        light = [math.sqrt(-2 * math.log1p(-u[7 + k])) * math.cos(2 * math.pi * u[10 + k]) * spread + mean
                 for k, (spread, mean) in enumerate(((0.6, 0.0), (0.3, 1.0), (0.6, -0.8)))]
        norm = math.sqrt(sum(v * v for v in light))
        side = 0.3 + 0.7 * u[13]
        x, y = a * z * half_h, b * z * half_h  # square frame: aspect 1
        if self.variability.pose == "uniform":
            rotation = uniform_quaternion(u[4], u[5], u[6])
        else:
            j = [math.radians(POSE_JITTER_DEG) * (2 * v - 1) for v in u[4:7]]
            facing = look_rotation((-x, -y, -z))  # the object's +z towards the camera, up towards camera up
            rotation = matrix_to_quaternion(facing @ about_x(j[0]) @ about_y(j[1]) @ about_z(j[2]))
        rot_x, rot_y, rot_z = quaternion_to_euler(rotation)
        return Scene(
            index=int(index), category=self._identity_category[identity], identity=identity,
            x=x, y=y, z=z, rot_x=rot_x, rot_y=rot_y, rot_z=rot_z, rotation=tuple(float(v) for v in rotation),
            scale=c.object_size, background=min(int(u[16] * c.n_backgrounds), c.n_backgrounds - 1),
            crop=((1.0 - side) * u[14], (1.0 - side) * u[15], side),
            light_dir=tuple(v / norm for v in light),
            light_color=tuple(0.85 + 0.15 * v for v in u[18:21]),
            ambient=0.25 + 0.2 * u[17],
            tint=tuple(0.8 + 0.4 * v for v in u[21:24]),
            cycle=(int(index) - self.block_start(index)) // len(self._categories), cycle_length=len(self._categories),
        )


def uniform_quaternion(u1: float, u2: float, u3: float) -> np.ndarray:
    """Quaternion ``(x, y, z, w)`` uniform over SO(3) from three uniforms in [0, 1) (Shoemake 1992)."""
    a, b = math.sqrt(1 - u1), math.sqrt(u1)
    return np.array([a * math.sin(2 * math.pi * u2), a * math.cos(2 * math.pi * u2),
                     b * math.sin(2 * math.pi * u3), b * math.cos(2 * math.pi * u3)])


@functools.lru_cache(maxsize=4096)
def _permutation(n: int, *key: int) -> tuple[int, ...]:
    """A permutation of ``range(n)`` that is a pure function of ``key`` (seed, block, level, cycle)."""
    return tuple(int(i) for i in np.random.default_rng([k % 2 ** 63 for k in key]).permutation(n))


def uniforms(seed: int, index: int, n: int) -> list[float]:
    """``n`` uniforms in [0, 1) that are a pure function of ``(seed, index)``: BLAKE2b of
    ``(seed, index, block)`` as a counter-based generator (fast, and the same on every platform)."""
    words: list[int] = []
    for block in range(-(-n // 8)):
        digest = hashlib.blake2b(struct.pack("<qqq", seed, index, block), digest_size=64).digest()
        words += struct.unpack("<8Q", digest)
    return [(w >> 11) * 2.0 ** -53 for w in words[:n]]
