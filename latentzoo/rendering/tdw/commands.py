"""The TDW command stream: the authors' generator (YudiXie/tdw_image_dataset) as JSON-able commands.

Per image the build goes through the authors' two phases, the second right after the first:

* **sampling** (:func:`sampling_commands`, then :func:`configuration_commands` per attempt):
  32x32 screen, no pass masks, render quality 0, ``Transforms``, ``Occlusion`` and
  ``ImageSensors`` every frame; an attempt teleports the object (pivot) to the sampled centre and
  the camera to its position, turns the object to look at the camera
  (``object_look_at_position``), rotates it about its local pitch, yaw and roll, teleports it so
  its centroid is at the centre (``use_centroid``), aims the camera at that centroid (``look_at``)
  and turns the camera in pitch and yaw (``rotate_sensor_container_by``; not in the centred
  variant). The reply tells whether the pose is accepted and the rotations the build applied;
* **capture** (:func:`capture_mode_commands`, then :func:`capture_commands`): the authors' switch to
  images (``_img`` JPEG, plus the ``_id`` pass the mask comes from), the full screen size and
  render quality 5; the accepted pose is replayed as they do (``teleport_avatar_to``,
  ``rotate_sensor_container_to``, ``teleport_object``, ``rotate_object_to`` with what the build
  reported), then ``add_hdri_skybox`` when the skybox changes.

Once per scene block :func:`scene_commands` loads the scene with the authors' camera and
post-processing settings; :func:`object_commands` swaps the model (their
``get_object_initialization_commands``: canonical rotation, then scaled to unit size).
"""

from __future__ import annotations

import warnings

from latentzoo.rendering.tdw.library import TDWModel
from latentzoo.rendering.tdw.placement import Configuration

AVATAR_ID = "a"
OBJECT_ID = 1
#: The authors' ten scenes (generate_dataset.py), in their order.
SCENES = ("box_room_2018", "building_site", "dead_grotto", "downtown_alleys", "iceland_beach", "lava_field",
          "ruin", "savanna_flat_6km", "suburb_scene_2023", "tdw_room")
SAMPLING_SIZE = 32      # screen size while poses are sampled and tested for occlusion
CAPTURE_PASSES = ["_img", "_id"]
SUN_ELEVATION_DAYLIGHT = 145  # skyboxes at least this high are listed twice ("less_dark")


def _vec(v) -> dict:
    return dict(zip("xyz", (float(a) for a in v)))


def _quat(q) -> dict:
    return dict(zip("xyzw", (float(a) for a in q)))


def _tdw():
    """``(Controller, HDRISkyboxLibrarian)`` of the tdw package (which imports pkg_resources)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from tdw.controller import Controller
        from tdw.librarian import HDRISkyboxLibrarian
    return Controller, HDRISkyboxLibrarian


def skybox_cycle() -> list[str]:
    """The authors' 82-entry skybox cycle: the 62 exterior HDRI skyboxes of ``hdri_skyboxes.json``
    in librarian order, then again those with ``sun_elevation >= 145`` (20)."""
    exterior = [r for r in _tdw()[1]().records if r.location == "exterior"]
    return [r.name for r in exterior] + [r.name for r in exterior if r.sun_elevation >= SUN_ELEVATION_DAYLIGHT]


def scene_commands(scene_name: str, fov_deg: float) -> list[dict]:
    """Load a scene as the authors' ``initialize_scene`` does; the reply holds its ``SceneRegions``."""
    return [_tdw()[0].get_add_scene(scene_name),
            {"$type": "create_avatar", "type": "A_Img_Caps_Kinematic", "id": AVATAR_ID},
            {"$type": "simulate_physics", "value": False},
            {"$type": "set_img_pass_encoding", "value": False},  # False: JPEG
            {"$type": "set_field_of_view", "field_of_view": float(fov_deg)},
            {"$type": "set_camera_clipping_planes", "far": 160, "near": 0.01},
            {"$type": "set_anti_aliasing", "mode": "subpixel"},
            {"$type": "set_aperture", "aperture": 70},
            {"$type": "send_scene_regions"},
            {"$type": "set_post_exposure", "post_exposure": 0.6},
            {"$type": "set_contrast", "contrast": -20},
            {"$type": "set_saturation", "saturation": 10},
            {"$type": "set_screen_space_reflections", "enabled": False},
            {"$type": "set_shadow_strength", "strength": 1.0}]


def sampling_commands() -> list[dict]:
    """Enter the sampling phase (the authors' object initialisation without adding the object)."""
    return [{"$type": "send_images", "frequency": "never"},
            {"$type": "set_screen_size", "height": SAMPLING_SIZE, "width": SAMPLING_SIZE},
            {"$type": "set_pass_masks", "pass_masks": []},
            {"$type": "set_render_quality", "render_quality": 0},
            {"$type": "send_transforms", "frequency": "always"},
            {"$type": "send_occlusion", "ids": [AVATAR_ID], "frequency": "always"},
            {"$type": "send_image_sensors", "frequency": "always"}]


def object_commands(model: TDWModel, previous: bool) -> list[dict]:
    """Replace the object by ``model`` (destroying the previous one), in the sampling phase:
    added in its record's canonical rotation and scale factor, then scaled to unit size
    (``TDWUtils.get_unit_scale``); the reply holds its ``SegmentationColors``."""
    add = {"$type": "add_object", "name": model.name, "url": model.url, "scale_factor": model.scale_factor,
           "category": model.wcategory, "rotation": _vec(model.canonical_rotation), "id": OBJECT_ID}
    scale = {"$type": "scale_object", "id": OBJECT_ID, "scale_factor": _vec((model.unit_scale,) * 3)}
    stop_images, *sampling = sampling_commands()
    return [stop_images, *([{"$type": "destroy_object", "id": OBJECT_ID}] if previous else []),
            add, *sampling[:3], scale, *sampling[3:],
            {"$type": "send_segmentation_colors", "ids": [OBJECT_ID], "frequency": "once"}]


def configuration_commands(config: Configuration) -> list[dict]:
    """One sampling attempt (the authors' ``sample_configuration``)."""
    camera, center = _vec(config.camera_position), _vec(config.object_center)
    turns = [{"$type": "rotate_object_by", "id": OBJECT_ID, "angle": float(angle), "axis": axis, "is_world": False}
             for angle, axis in zip(config.object_jitter, ("pitch", "yaw", "roll"))]
    aim = [{"$type": "rotate_sensor_container_by", "angle": float(angle), "axis": axis, "avatar_id": AVATAR_ID}
           for angle, axis in zip(config.camera_jitter or (), ("pitch", "yaw"))]
    return [{"$type": "teleport_object", "id": OBJECT_ID, "position": center},
            {"$type": "teleport_avatar_to", "position": camera, "avatar_id": AVATAR_ID},
            {"$type": "object_look_at_position", "position": camera, "id": OBJECT_ID},
            *turns,
            {"$type": "teleport_object", "id": OBJECT_ID, "position": center, "use_centroid": True},
            {"$type": "look_at", "object_id": OBJECT_ID, "use_centroid": True, "avatar_id": AVATAR_ID},
            *aim]


def capture_mode_commands(size: int) -> list[dict]:
    """Leave the sampling phase for images of ``size`` x ``size`` pixels (the authors' switch)."""
    return [{"$type": "send_transforms", "frequency": "never"},
            {"$type": "send_occlusion", "ids": [AVATAR_ID], "frequency": "never"},
            {"$type": "send_image_sensors", "frequency": "never"},
            {"$type": "send_images", "frequency": "always"},
            {"$type": "set_pass_masks", "pass_masks": CAPTURE_PASSES},
            {"$type": "set_screen_size", "height": int(size), "width": int(size)},
            {"$type": "set_render_quality", "render_quality": 5}]


def capture_commands(camera_position, camera_rotation, object_position, object_rotation,
                     skybox: str | None) -> list[dict]:
    """Replay an accepted pose (positions and the rotations the build reported) and capture it,
    then adding HDRI skybox ``skybox`` unless it is None (unchanged), as the authors order them."""
    return [{"$type": "teleport_avatar_to", "position": _vec(camera_position), "avatar_id": AVATAR_ID},
            {"$type": "rotate_sensor_container_to", "rotation": _quat(camera_rotation), "avatar_id": AVATAR_ID},
            {"$type": "teleport_object", "id": OBJECT_ID, "position": _vec(object_position)},
            {"$type": "rotate_object_to", "id": OBJECT_ID, "rotation": _quat(object_rotation)},
            *([_tdw()[0].get_add_hdri_skybox(skybox)] if skybox else [])]
