"""Where camera and object go in a TDW scene: the authors' ``sample_avatar_object_position`` and
``sample_configuration`` (YudiXie/tdw_image_dataset, ``image_dataset.py``), draw by draw.

One attempt (:func:`sample_configuration`), in the authors' order:

1. a random region of the scene, shrunk by :data:`REGION_OFFSET` (0.3 m) on every side in x and z
   and at the top (camera ``y`` from :data:`CAMERA_MIN_Y` = 0.4 m, a world height, to the region's
   ``y_max - 0.3``), or the scene's override from :data:`SCENE_OVERRIDES`;
2. the camera (TDW's avatar) at a uniform point of that box: ``x``, then ``y``, then ``z``;
3. the object centre at ``camera + d * u`` with ``d ~ U(0.9, 4.2)`` m and ``u`` uniform on the
   sphere (a normalised Gaussian vector) redrawn until ``u_y > -0.2``; the pair ``(d, u)`` is drawn
   again while the centre is not below the region's (or the override's) object ceiling, at most
   :data:`MAX_RESAMPLES` draws in all, the last of which stands;
4. the object's local pitch, yaw and roll, each ``U(-45, 45)`` degrees (applied by the build after
   ``object_look_at_position`` of the camera);
5. the camera's pitch and yaw, each ``U(-20, 20)`` degrees (applied by the build after it looks at
   the object's centroid); none in the centred variant.

The build turns these numbers into rotations (:mod:`~latentzoo.rendering.tdw.commands`); the
latents are computed from the rotations it reports (:mod:`~latentzoo.rendering.tdw.frames`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from latentzoo.rendering.sampler import Scene

REGION_OFFSET = 0.3          # metres kept from the region's sides and top
CAMERA_MIN_Y = 0.4           # world height of the lowest camera
DISTANCE_RANGE = (0.9, 4.2)  # camera to object centre, metres
MIN_DIRECTION_Y = -0.2       # object direction: not far below the horizon
MAX_RESAMPLES = 15           # redraws of (distance, direction) while the centre is too high
OBJECT_JITTER_DEG = 45.0     # local pitch, yaw, roll after facing the camera
CAMERA_JITTER_DEG = 20.0     # camera pitch, yaw after aiming at the object

#: The authors' per-scene bounds: (x_min, x_max), (y_min, y_max), (z_min, z_max) of the camera and
#: the object centre's ceiling; None keeps the shrunk region's value.
SCENE_OVERRIDES: dict[str, dict] = {
    "savanna_flat_6km": {"y": (5.0, 10.0), "object_y_max": 15.0},
    "suburb_scene_2023": {"x": (-68.0, 68.0), "z": (-11.0, 11.0)},
    "downtown_alleys": {"x": (29.0, 33.0), "z": (-15.0, 8.0), "y": (2.0, 5.0), "object_y_max": 7.0},
}


@dataclass(frozen=True)
class Region:
    """An axis-aligned box of a scene where the camera may stand (TDW ``SceneRegions``)."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]


@dataclass(frozen=True)
class CameraBox:
    """Where the camera may stand in one region of one scene, and how high the object may be."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    object_y_max: float


@dataclass(frozen=True)
class Configuration:
    """One attempt: world positions and the jitter angles (degrees) the build applies."""

    region: int
    camera_position: tuple[float, float, float]
    object_center: tuple[float, float, float]
    object_jitter: tuple[float, float, float]   # local pitch, yaw, roll
    camera_jitter: tuple[float, float] | None   # pitch, yaw; None in the centred variant
    resamples: int                              # (distance, direction) draws rejected by the ceiling


def camera_boxes(regions: list[Region], scene_name: str) -> list[CameraBox]:
    """The camera boxes of a scene's regions (shrunk, overridden); raises RuntimeError when a region
    is too small for the offset (the authors' ``check_scene_bounds``)."""
    override = SCENE_OVERRIDES.get(scene_name, {})
    boxes = []
    for r in regions:
        lo = np.asarray(r.center) - np.asarray(r.size) / 2
        hi = np.asarray(r.center) + np.asarray(r.size) / 2
        if min(hi[0] - lo[0], hi[2] - lo[2]) <= 2 * REGION_OFFSET or hi[1] - REGION_OFFSET <= CAMERA_MIN_Y:
            raise RuntimeError(f"scene {scene_name} has a region too small for the camera: {r}")
        bounds = {"x": (lo[0] + REGION_OFFSET, hi[0] - REGION_OFFSET),
                  "y": (CAMERA_MIN_Y, hi[1] - REGION_OFFSET),
                  "z": (lo[2] + REGION_OFFSET, hi[2] - REGION_OFFSET)}
        bounds.update({k: v for k, v in override.items() if k in bounds})
        boxes.append(CameraBox(low=tuple(float(bounds[k][0]) for k in "xyz"),
                               high=tuple(float(bounds[k][1]) for k in "xyz"),
                               object_y_max=float(override.get("object_y_max", hi[1]))))
    return boxes


def attempt_rng(scene: Scene, attempt: int) -> np.random.Generator:
    """Generator of one attempt: seeded by the scene (a pure function of the dataset's seed and the
    image index) and the attempt number. Only scene fields the sampler computes with exact IEEE
    arithmetic enter the seed (no libm or BLAS results), so every machine draws the same."""
    exact = (scene.index, scene.identity, scene.z, scene.ambient, scene.crop, scene.light_color, scene.tint)
    digest = hashlib.sha256(repr(exact).encode()).digest()
    return np.random.default_rng([int.from_bytes(digest[:8], "little"), int(attempt)])


def _direction(rng: np.random.Generator) -> np.ndarray:
    """Uniform on the sphere with ``y > MIN_DIRECTION_Y`` (the authors' ``sample_spherical_cap``)."""
    while True:
        v = rng.standard_normal(3)
        v /= np.linalg.norm(v)
        if v[1] > MIN_DIRECTION_Y:
            return v


def sample_configuration(rng: np.random.Generator, boxes: list[CameraBox], centered: bool) -> Configuration:
    """One attempt's camera and object placement (module docstring, steps 1-5)."""
    k = int(rng.integers(len(boxes)))
    box = boxes[k]
    camera = np.array([rng.uniform(box.low[i], box.high[i]) for i in range(3)])
    for resamples in range(MAX_RESAMPLES):
        distance = rng.uniform(*DISTANCE_RANGE)
        center = camera + _direction(rng) * distance
        if center[1] < box.object_y_max:
            break
    else:
        resamples = MAX_RESAMPLES
    object_jitter = tuple(float(a) for a in rng.uniform(-OBJECT_JITTER_DEG, OBJECT_JITTER_DEG, 3))
    camera_jitter = None if centered else tuple(float(a) for a in rng.uniform(-CAMERA_JITTER_DEG,
                                                                               CAMERA_JITTER_DEG, 2))
    return Configuration(region=k, camera_position=_tuple(camera), object_center=_tuple(center),
                         object_jitter=object_jitter, camera_jitter=camera_jitter, resamples=int(resamples))


def _tuple(v) -> tuple:
    return tuple(float(a) for a in v)
