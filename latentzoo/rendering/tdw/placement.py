"""Where camera and object go in a TDW environment: the paper's sampling procedure, in world space.

For one :class:`~latentzoo.rendering.sampler.Scene` (drawn by the shared, backend-independent
sampler from ``(seed, index)``) a :class:`Placement` is drawn as in the authors' TDW generator:

1. the camera stands at a uniform point of a random region of the environment (height 0.4 m to
   half the region's height above its floor);
2. the object centre lies at a random direction not far below the horizon (world elevation
   uniform on the sphere between ``-15`` and ``+60`` degrees, any azimuth), at the scene's
   distance; the camera is aimed at it and then turned in pitch and yaw so that the object ends up
   exactly at the scene's camera-frame position ``(x, y, z)`` (the shared sampler keeps the
   object centre within about +-20 degrees of the optical axis: the paper's camera jitter; with
   ``centered`` it is on the axis: Appendix A.2's centred variant);
3. the object is turned to face the camera (its canonical +z towards the camera, up as close to
   the camera's up as possible), then turned by uniform +-45 degree pitch, yaw and roll about its
   own axes;
4. it is scaled so its longest axis is ``scene.scale`` metres.

Everything beyond the scene is drawn from a generator seeded by the scene itself (a pure function
of ``(seed, index)``), so image ``i`` is reproducible; ``attempt`` draws another placement of the
same scene when the backend rejects one (occluded or too small).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from latentzoo.rendering.sampler import Scene
from latentzoo.latents import about_x, about_y, about_z, look_rotation
from latentzoo.rendering.tdw.frames import matrix_to_quaternion, unity_euler_to_matrix
from latentzoo.rendering.tdw.library import TDWModel

MIN_ELEVATION_DEG, MAX_ELEVATION_DEG = -15.0, 60.0
POSE_JITTER_DEG = 45.0
CAMERA_MIN_HEIGHT = 0.4      # metres above the region's floor
CAMERA_MAX_HEIGHT_FRACTION = 0.5


@dataclass(frozen=True)
class Region:
    """An axis-aligned box of an environment where the camera may stand (TDW ``SceneRegions``)."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]


@dataclass(frozen=True)
class Placement:
    """World-space (Unity) transforms of one image; quaternions are ``(x, y, z, w)``."""

    camera_position: tuple[float, float, float]
    camera_rotation: tuple[float, float, float, float]
    object_center: tuple[float, float, float]    # where the model's bounds centre lands
    object_position: tuple[float, float, float]  # the model's pivot (what teleport_object sets)
    object_rotation: tuple[float, float, float, float]  # the model's rotation, canonical turn included
    object_scale: float                          # scale_object factor on top of the record's scale
    pose_jitter_deg: tuple[float, float, float]  # pitch, yaw, roll after facing the camera


def scene_rng(scene: Scene, attempt: int = 0) -> np.random.Generator:
    """Generator for the placement of ``scene``: seeded by the scene's content and ``attempt``."""
    digest = hashlib.sha256(repr(scene).encode()).digest()
    return np.random.default_rng([int.from_bytes(digest[:8], "little"), int(attempt)])


def place(scene: Scene, model: TDWModel, regions: list[Region], attempt: int = 0) -> Placement:
    """Draw a placement of ``scene`` showing ``model`` in an environment with ``regions``."""
    rng = scene_rng(scene, attempt)
    region = regions[int(rng.integers(len(regions)))]
    lo = np.asarray(region.center) - np.asarray(region.size) / 2
    height = max(CAMERA_MIN_HEIGHT, CAMERA_MAX_HEIGHT_FRACTION * region.size[1])
    camera = np.array([rng.uniform(lo[0], lo[0] + region.size[0]),
                       lo[1] + rng.uniform(CAMERA_MIN_HEIGHT, height),
                       rng.uniform(lo[2], lo[2] + region.size[2])])
    azimuth = rng.uniform(0, 2 * np.pi)
    sin_e = rng.uniform(*np.sin(np.radians([MIN_ELEVATION_DEG, MAX_ELEVATION_DEG])))
    cos_e = np.sqrt(1 - sin_e ** 2)
    direction = np.array([cos_e * np.sin(azimuth), sin_e, cos_e * np.cos(azimuth)])
    jitter = tuple(float(a) for a in rng.uniform(-POSE_JITTER_DEG, POSE_JITTER_DEG, size=3))

    # Camera: aimed along `direction`, then turned so the object sits at the scene's (x, y, z).
    in_camera = np.array([scene.x, scene.y, scene.z])
    cam_rot = look_rotation(direction) @ look_rotation(in_camera).T
    center = camera + cam_rot @ in_camera
    # Object: canonical +z towards the camera, then pitch/yaw/roll about its own axes.
    facing = look_rotation(camera - center, up=cam_rot[:, 1])
    pitch, yaw, roll = np.radians(jitter)
    canonical_to_world = facing @ about_x(pitch) @ about_y(yaw) @ about_z(roll)
    rotation = canonical_to_world @ unity_euler_to_matrix(model.canonical_rotation)
    scale = scene.scale / model.max_extent
    pivot = center - rotation @ (scale * np.asarray(model.bounds_center))
    return Placement(camera_position=_tuple(camera), camera_rotation=_tuple(matrix_to_quaternion(cam_rot)),
                     object_center=_tuple(center), object_position=_tuple(pivot),
                     object_rotation=_tuple(matrix_to_quaternion(rotation)), object_scale=float(scale),
                     pose_jitter_deg=jitter)


def _tuple(v) -> tuple:
    return tuple(float(a) for a in v)
