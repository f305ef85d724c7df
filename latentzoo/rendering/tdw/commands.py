"""The TDW command stream (JSON-able dicts of TDW's Command API) for environments, models and images.

Three kinds of messages go to the build:

* :func:`environment_commands` once per environment: the scene asset bundle, a kinematic image
  avatar ``"a"``, screen size, 60 degree vertical field of view, the ``_img`` and ``_id`` passes,
  lossless ``_img`` (PNG, encoded once as JPEG by the writer), best render quality, physics off,
  and a request for the environment's regions;
* :func:`object_commands` when the model changes: destroy the previous one, add the model from the
  librarian at the origin in its canonical rotation, scale it, and ask for segmentation colours;
* :func:`image_commands` per image: skybox (when it changes), camera and object transforms from a
  :class:`~latentzoo.rendering.tdw.placement.Placement`, and one-frame requests for what the
  latents, mask and rejection test are computed from: ``Images``, ``Transforms``, ``Bounds``,
  ``CameraMatrices``, ``Occlusion``.
"""

from __future__ import annotations

import warnings

from latentzoo.rendering.tdw.library import TDWModel
from latentzoo.rendering.tdw.placement import Placement

AVATAR_ID = "a"
OBJECT_ID = 1
PASS_MASKS = ["_img", "_id"]
#: Ten environments from TDW's scene librarian (scenes.json): seven outdoor, three indoor.
ENVIRONMENTS = ("building_site", "dead_grotto", "downtown_alleys", "iceland_beach", "lava_field", "ruin",
                "suburb_scene_2018", "tdw_room", "mm_kitchen_1a", "mm_craftroom_1a")


def _vec(v) -> dict:
    return dict(zip("xyz", (float(a) for a in v)))


def _quat(q) -> dict:
    return dict(zip("xyzw", (float(a) for a in q)))


def _controller():
    with warnings.catch_warnings():  # tdw imports pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        from tdw.controller import Controller
    return Controller


def skybox_names() -> list[str]:
    """The 62 outdoor HDRI skyboxes of TDW's ``hdri_skyboxes.json``, sorted by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from tdw.librarian import HDRISkyboxLibrarian
    return sorted(r.name for r in HDRISkyboxLibrarian().records if r.location == "exterior")


def environment_commands(environment: str, size: int, fov_deg: float) -> list[dict]:
    """Load ``environment`` and set up the camera; the reply holds its ``SceneRegions``."""
    return [_controller().get_add_scene(environment),
            {"$type": "create_avatar", "type": "A_Img_Caps_Kinematic", "id": AVATAR_ID},
            {"$type": "set_screen_size", "width": int(size), "height": int(size)},
            {"$type": "set_field_of_view", "field_of_view": float(fov_deg), "avatar_id": AVATAR_ID},
            {"$type": "set_camera_clipping_planes", "near": 0.05, "far": 160.0, "avatar_id": AVATAR_ID},
            {"$type": "set_pass_masks", "pass_masks": PASS_MASKS, "avatar_id": AVATAR_ID},
            {"$type": "set_img_pass_encoding", "value": True},
            {"$type": "set_render_quality", "render_quality": 5},
            {"$type": "simulate_physics", "value": False},
            {"$type": "send_scene_regions", "frequency": "once"}]


def object_commands(model: TDWModel, previous: bool) -> list[dict]:
    """Replace the scene's object by ``model`` (canonical rotation, record scale); the reply holds
    its ``SegmentationColors``."""
    commands = [{"$type": "destroy_object", "id": OBJECT_ID}] if previous else []
    return commands + [
        {"$type": "add_object", "name": model.name, "url": model.url, "scale_factor": model.scale_factor,
         "position": _vec((0, 0, 0)), "rotation": _vec(model.canonical_rotation), "category": model.wcategory,
         "id": OBJECT_ID},
        {"$type": "send_segmentation_colors", "ids": [OBJECT_ID], "frequency": "once"}]


def image_commands(placement: Placement, scale_by: float, skybox: str | None) -> list[dict]:
    """Pose camera and object as ``placement`` says and request one frame of output data.

    ``scale_by`` is the factor to apply with ``scale_object`` (TDW scales relative to the current
    scale; 1 when unchanged); ``skybox`` is the HDRI skybox to add, or None to keep the current one.
    """
    commands = [_controller().get_add_hdri_skybox(skybox)] if skybox else []
    if scale_by != 1.0:
        commands.append({"$type": "scale_object", "id": OBJECT_ID, "scale_factor": _vec((scale_by,) * 3)})
    return commands + [
        {"$type": "teleport_avatar_to", "position": _vec(placement.camera_position), "avatar_id": AVATAR_ID},
        {"$type": "rotate_sensor_container_to", "rotation": _quat(placement.camera_rotation),
         "avatar_id": AVATAR_ID},
        {"$type": "teleport_object", "id": OBJECT_ID, "position": _vec(placement.object_position)},
        {"$type": "rotate_object_to", "id": OBJECT_ID, "rotation": _quat(placement.object_rotation)},
        {"$type": "send_images", "frequency": "once", "ids": [AVATAR_ID]},
        {"$type": "send_camera_matrices", "frequency": "once", "ids": [AVATAR_ID]},
        {"$type": "send_transforms", "frequency": "once", "ids": [OBJECT_ID]},
        {"$type": "send_bounds", "frequency": "once", "ids": [OBJECT_ID]},
        {"$type": "send_occlusion", "frequency": "once", "ids": [AVATAR_ID]}]
