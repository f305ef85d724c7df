"""From TDW/Unity coordinates to latentzoo's camera-frame latents, and back (for placement and tests).

Unity (hence TDW) world space is **left-handed**: x right, y up, z forward. Quaternions are
``(x, y, z, w)`` and turn a vector with the usual formula (:func:`quaternion_to_matrix`); Unity's
Euler angles ``(ex, ey, ez)`` in degrees mean ``Ry(ey) @ Rx(ex) @ Rz(ez)`` (z first, then x, then y).

A camera's local axes are x right, y up, z forward (the way it looks). latentzoo's camera frame
(DESIGN.md: x right, y up, z along the optical axis) uses the very same axes, so camera-frame
coordinates *are* Unity camera-local coordinates: no axis is mirrored between the two, and a
rotation matrix means the same numbers in both (both frames share their handedness).

The one mirror is inside ``CameraMatrices.get_camera_matrix()``: it is Unity's
``Camera.worldToCameraMatrix``, which maps into OpenGL eye space, where the camera looks along
**-z**. TDW sends it row-major (``TDWUtils.get_point_cloud`` reshapes it to 4x4 and applies it
to column vectors), so ``p_cam = diag(1, 1, -1) @ (M[:3, :3] @ p_world + M[:3, 3])``.

Rotation latent: the object's canonical pose is the model turned by its record's
``canonical_rotation``; if the model's world rotation is ``Ro`` (from ``Transforms``) and the
canonical turn is ``Rc``, a canonical-frame vector ``v`` lies at ``Ro @ Rc.T @ v`` in the world
and at ``W @ Ro @ Rc.T @ v`` in the camera frame (``W`` the world-to-camera rotation). That
matrix gives ``rxy, ryz, rzx`` through :func:`latentzoo.latents.matrix_to_euler`.
"""

from __future__ import annotations

import numpy as np

from latentzoo.latents import matrix_to_euler

#: Unity eye space (looks along -z) <-> camera frame (looks along +z).
EYE_TO_CAMERA = np.diag([1.0, 1.0, -1.0])


def quaternion_to_matrix(q) -> np.ndarray:
    """3x3 rotation of a Unity quaternion ``(x, y, z, w)`` (normalised first)."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quaternion(R) -> np.ndarray:
    """Unity quaternion ``(x, y, z, w)`` of a rotation matrix, with ``w >= 0``."""
    R = np.asarray(R, dtype=np.float64)
    # Shepperd's method: pivot on the largest of w, x, y, z for numerical stability.
    t = np.array([R[0, 0] + R[1, 1] + R[2, 2], R[0, 0], R[1, 1], R[2, 2]])
    k = int(np.argmax(t))
    if k == 0:
        w = 0.5 * np.sqrt(1 + t[0])
        q = np.array([(R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w), w])
    else:
        i, j, m = (k - 1), k % 3, (k + 1) % 3
        s = 2 * np.sqrt(1 + R[i, i] - R[j, j] - R[m, m])
        q = np.empty(4)
        q[i] = s / 4
        q[j] = (R[j, i] + R[i, j]) / s
        q[m] = (R[m, i] + R[i, m]) / s
        q[3] = (R[m, j] - R[j, m]) / s
    return q if q[3] >= 0 else -q


def unity_euler_to_matrix(euler_deg) -> np.ndarray:
    """Rotation of Unity Euler angles ``(ex, ey, ez)`` in degrees: ``Ry(ey) @ Rx(ex) @ Rz(ez)``."""
    ex, ey, ez = np.radians(np.asarray(euler_deg, dtype=np.float64))
    cx, sx, cy, sy, cz, sz = np.cos(ex), np.sin(ex), np.cos(ey), np.sin(ey), np.cos(ez), np.sin(ez)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return ry @ rx @ rz


def world_to_camera_matrix(position, rotation) -> np.ndarray:
    """What TDW reports as the camera matrix (row-major 16 floats) for a camera at ``position``
    with world rotation ``rotation`` (quaternion or 3x3): Unity's ``worldToCameraMatrix``."""
    R = np.asarray(rotation, dtype=np.float64)
    R = quaternion_to_matrix(R) if R.shape == (4,) else R
    M = np.eye(4)
    M[:3, :3] = EYE_TO_CAMERA @ R.T
    M[:3, 3] = -M[:3, :3] @ np.asarray(position, dtype=np.float64)
    return M.reshape(-1)


def camera_extrinsics(camera_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``(W, t)`` with ``p_cam = W @ p_world + t`` from TDW's camera matrix (16 floats).

    Raises ValueError if the matrix is not a rigid world-to-camera transform laid out row-major.
    """
    M = np.asarray(camera_matrix, dtype=np.float64).reshape(4, 4)
    if not np.allclose(M[3], (0, 0, 0, 1), atol=1e-4):
        raise ValueError(f"camera matrix bottom row is {M[3].round(4).tolist()}, not (0, 0, 0, 1): "
                         "not a row-major worldToCameraMatrix")
    W = EYE_TO_CAMERA @ M[:3, :3]
    if not np.allclose(W @ W.T, np.eye(3), atol=1e-4) or np.linalg.det(W) < 0:
        raise ValueError("camera matrix rotation block is not a proper rotation")
    return W, EYE_TO_CAMERA @ M[:3, 3]


def camera_frame_latents(center_world, object_rotation, canonical_rotation_deg, camera_matrix) -> dict:
    """Latents ``x, y, z, rxy, ryz, rzx`` of an object from TDW output data.

    ``center_world``: the object's bounds centre in world space (``Bounds.get_center``);
    ``object_rotation``: its world quaternion (``Transforms.get_rotation``);
    ``canonical_rotation_deg``: the model record's ``canonical_rotation`` (Unity Euler, degrees);
    ``camera_matrix``: ``CameraMatrices.get_camera_matrix()``.
    """
    W, t = camera_extrinsics(camera_matrix)
    x, y, z = W @ np.asarray(center_world, dtype=np.float64) + t
    R = W @ quaternion_to_matrix(object_rotation) @ unity_euler_to_matrix(canonical_rotation_deg).T
    rxy, ryz, rzx = matrix_to_euler(R)
    return {"x": float(x), "y": float(y), "z": float(z), "rxy": rxy, "ryz": ryz, "rzx": rzx}
