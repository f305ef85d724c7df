"""From what the TDW build reports to latentzoo's camera-frame latents, exactly as the authors did.

Unity (hence TDW) world space: x right, y up, z forward; quaternions ``(x, y, z, w)``. A camera's
local axes are x right, y up, z forward, which is latentzoo's camera frame, so no axis is
mirrored between the two.

The authors' generator records, per image (``image_dataset.py``):

* ``rel_pos = QuaternionUtils.world_to_local_vector(object_centre, camera_position, q_cam)``: the
  sampled object centre (where ``teleport_object(use_centroid=True)`` put the object's centroid)
  in the camera's local frame; latentzoo's ``x, y, z``;
* ``rel_rot = QuaternionUtils.multiply(QuaternionUtils.get_inverse(q_cam), q_obj)`` with ``q_cam``
  the image sensor's rotation (``ImageSensors``) and ``q_obj`` the object's (``Transforms``), both
  as the build reports them; ``QuaternionUtils.quaternion_to_euler_angles(rel_rot)`` are
  latentzoo's ``rot_x, rot_y, rot_z`` (radians in (-pi, pi] here, degrees in [0, 360) there).

:func:`latentzoo.latents.relative_quaternion` is TDW's quaternion product (the inverse divides by the squared norm,
as TDW's does, so the float32 quaternions of the build give the authors' numbers to rounding), and
:func:`latentzoo.latents.quaternion_to_euler` is TDW's conversion.
"""

from __future__ import annotations

import numpy as np

from latentzoo.latents import quaternion_to_euler, quaternion_to_matrix, relative_quaternion


def camera_frame_latents(object_center, camera_position, camera_rotation, object_rotation) -> dict:
    """Latents ``x, y, z, rot_x, rot_y, rot_z`` and the camera-frame quaternion ``qx, qy, qz, qw``
    of an object (world positions; world quaternions as the build reports them)."""
    x, y, z = quaternion_to_matrix(camera_rotation).T @ (np.asarray(object_center, dtype=np.float64)
                                                         - np.asarray(camera_position, dtype=np.float64))
    q = relative_quaternion(camera_rotation, object_rotation)
    rot_x, rot_y, rot_z = quaternion_to_euler(q)
    return {"x": float(x), "y": float(y), "z": float(z), "rot_x": rot_x, "rot_y": rot_y, "rot_z": rot_z,
            "qx": float(q[0]), "qy": float(q[1]), "qz": float(q[2]), "qw": float(q[3])}
