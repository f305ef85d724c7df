"""The latent schema: names, units, objectives, output layouts, normalisation and rotation angles.

Every part of latentzoo agrees on what is written here (docs/latents.md explains it with examples):

* Camera frame: pinhole camera looking along +z, x to the right, y up. ``x, y, z`` are the object
  centre's coordinates in metres; ``z`` is the depth along the optical axis (not the Euclidean
  distance). A point projects to ``u = W/2 + f*x/z, v = H/2 - f*y/z`` with ``f = (H/2)/tan(fov/2)``.
  These are Unity's camera-local axes, so a rotation matrix or quaternion means the same numbers in
  the camera frame and in a TDW/Unity camera's local space.
* Rotation: the authors' ``rel_rot_euler_0/1/2`` (Xie et al., ICLR 2025), exactly. With the object's
  and the camera's rotations as Unity quaternions ``(x, y, z, w)``, the camera-relative quaternion
  is ``q_rel = inverse(q_cam) * q_obj`` and ``(rot_x, rot_y, rot_z)`` are TDW's
  ``QuaternionUtils.quaternion_to_euler_angles(q_rel)`` (Unity's convention: the rotation is
  ``Ry(rot_y) @ Rx(rot_x) @ Rz(rot_z)``; near ``rot_x = +-90`` degrees TDW's pole rule puts the
  whole turn in ``rot_y``), in radians wrapped to (-pi, pi]. The object's own mesh frame is its
  identity pose. An object that faces the camera (its +z towards the camera, its up the camera's
  up) has ``(rot_x, rot_y, rot_z) = (0, pi, 0)``.
* Objectives: each is a set of tasks; the network head concatenates the tasks' units in
  ``TASK_ORDER`` (the paper authors' 674-unit order: category, identity, distance, translation,
  rotation), so the ``all`` layout equals the authors' head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from latentzoo.errors import unknown

#: Continuous latents in physical units.
POSITION_LATENTS = ("x", "y", "z")
ANGLE_LATENTS = ("rot_x", "rot_y", "rot_z")
CLASS_LATENTS = ("category", "identity")
LATENTS = POSITION_LATENTS + ANGLE_LATENTS + CLASS_LATENTS

UNITS = {"x": "m", "y": "m", "z": "m", "rot_x": "rad", "rot_y": "rad", "rot_z": "rad",
         "category": "class index", "identity": "class index"}

#: Task -> the latents it estimates.
TASK_LATENTS: dict[str, tuple[str, ...]] = {
    "category": ("category",),
    "identity": ("identity",),
    "distance": ("z",),
    "translation": ("x", "y"),
    "rotation": ANGLE_LATENTS,
}
TASK_ORDER = ("category", "identity", "distance", "translation", "rotation")

#: Objective name -> its tasks (the zoo's spelling, docs/latents.md). ``untrained``/``imagenet`` have no latent task.
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "distance": ("distance",),
    "translation": ("translation",),
    "rotation": ("rotation",),
    "distance-translation": ("distance", "translation"),
    "distance-rotation": ("distance", "rotation"),
    "translation-rotation": ("translation", "rotation"),
    "distance-translation-rotation": ("distance", "translation", "rotation"),
    "category": ("category",),
    "identity": ("identity",),
    "all": ("category", "identity", "distance", "translation", "rotation"),
    "untrained": (),
    "imagenet": (),
}


def objective_tasks(objective: str) -> tuple[str, ...]:
    """Tasks of an objective in head order; an unknown one raises UnknownNameError (a ValueError)."""
    if objective not in OBJECTIVES:
        raise unknown("objective", objective, OBJECTIVES)
    return tuple(t for t in TASK_ORDER if t in OBJECTIVES[objective])


def objective_latents(objective: str) -> tuple[str, ...]:
    """Latent names an objective is trained to estimate, in head order."""
    return tuple(name for task in objective_tasks(objective) for name in TASK_LATENTS[task])


def task_units(task: str, n_categories: int, n_identities: int) -> int:
    """Number of output units of one task."""
    return {"category": n_categories, "identity": n_identities, "distance": 1,
            "translation": 2, "rotation": 6}[task]


@dataclass(frozen=True)
class Slot:
    """One task's slice of the network output: units ``[start, stop)``."""

    task: str
    start: int
    stop: int

    def to_dict(self) -> dict:
        return {"task": self.task, "start": self.start, "stop": self.stop}


def output_layout(objective: str, n_categories: int = 117, n_identities: int = 548) -> list[Slot]:
    """Output layout of an objective's head, e.g. ``all`` -> 117 + 548 + 1 + 2 + 6 = 674 units.

    Rotation units are ``sin(rot_x), sin(rot_y), sin(rot_z), cos(rot_x), cos(rot_y), cos(rot_z)``
    (the authors' units [668, 674)).
    """
    slots, start = [], 0
    for task in objective_tasks(objective):
        n = task_units(task, n_categories, n_identities)
        slots.append(Slot(task, start, start + n))
        start += n
    return slots


def layout_size(layout: Sequence[Slot]) -> int:
    """Total number of units of a layout (0 for an objective without tasks)."""
    return max((s.stop for s in layout), default=0)


def layout_from_dicts(items: Sequence[Mapping]) -> list[Slot]:
    """Inverse of ``[s.to_dict() for s in layout]`` (as stored in config.json)."""
    return [Slot(str(d["task"]), int(d["start"]), int(d["stop"])) for d in items]


@dataclass(frozen=True)
class Normalisation:
    """Per-latent mean and std (train split) used to z-score x, y, z for the squared-error loss."""

    mean: Mapping[str, float]
    std: Mapping[str, float]

    @classmethod
    def fit(cls, latents: Mapping[str, np.ndarray]) -> "Normalisation":
        """Statistics of the position latents present in ``latents`` (train split)."""
        names = [n for n in POSITION_LATENTS if n in latents]
        return cls({n: float(np.mean(latents[n])) for n in names},
                   {n: float(np.std(latents[n])) or 1.0 for n in names})

    def to_dict(self) -> dict:
        return {"mean": dict(self.mean), "std": dict(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Normalisation":
        return cls(dict(d["mean"]), dict(d["std"]))

    def normalise(self, name: str, values: np.ndarray) -> np.ndarray:
        return (values - self.mean[name]) / self.std[name]

    def denormalise(self, name: str, values: np.ndarray) -> np.ndarray:
        return values * self.std[name] + self.mean[name]


def encode_targets(latents: Mapping[str, np.ndarray], layout: Sequence[Slot],
                   normalisation: Normalisation | None) -> dict[str, np.ndarray]:
    """Regression/classification targets per task: z-scored positions, sin/cos of angles, indices.

    Returns {task: array}; distance -> (N, 1), translation -> (N, 2), rotation -> (N, 6) as
    sin(3 angles) then cos(3 angles), category/identity -> (N,) int64.
    """
    out = {}
    for slot in layout:
        names = TASK_LATENTS[slot.task]
        if slot.task in CLASS_LATENTS:
            out[slot.task] = np.asarray(latents[slot.task], dtype=np.int64)
        elif slot.task == "rotation":
            angles = np.stack([np.asarray(latents[n], dtype=np.float64) for n in names], axis=1)
            out[slot.task] = np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)
        else:
            cols = [np.asarray(latents[n], dtype=np.float64) for n in names]
            if normalisation is not None:
                cols = [normalisation.normalise(n, c) for n, c in zip(names, cols)]
            out[slot.task] = np.stack(cols, axis=1).astype(np.float32)
    return out


def decode_outputs(outputs: np.ndarray, layout: Sequence[Slot],
                   normalisation: Normalisation | None) -> dict[str, np.ndarray]:
    """Network outputs (N, units) -> {latent: values in physical units}.

    Positions are de-normalised (left as z-scores when ``normalisation`` is None), angles come from
    ``atan2(sin, cos)``, classes from argmax.
    """
    out = {}
    for slot in layout:
        block = outputs[:, slot.start:slot.stop]
        names = TASK_LATENTS[slot.task]
        if slot.task in CLASS_LATENTS:
            out[slot.task] = block.argmax(axis=1)
        elif slot.task == "rotation":
            for i, name in enumerate(names):
                out[name] = np.arctan2(block[:, i], block[:, i + 3])
        else:
            for i, name in enumerate(names):
                v = block[:, i].astype(np.float64)
                out[name] = normalisation.denormalise(name, v) if normalisation is not None else v
    return out


# ---------------------------------------------------------------- rotations

def about_x(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the camera's x axis (right-handed)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def about_y(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the camera's y axis (right-handed)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def about_z(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the camera's z axis (right-handed)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _cross(a, b) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross is ~10x slower on single vectors)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def look_rotation(forward, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Rotation whose local +z points along ``forward`` and local +y as close to ``up`` as possible
    (Unity's ``Quaternion.LookRotation``); columns are the local right, up and forward axes."""
    f = np.asarray(forward, dtype=np.float64)
    f = f / np.linalg.norm(f)
    r = _cross(up, f)
    if np.linalg.norm(r) < 1e-9:  # looking straight up or down: any right axis will do
        r = _cross((0.0, 0.0, 1.0), f)
    r = r / np.linalg.norm(r)
    return np.stack([r, _cross(f, r), f], axis=1)


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to (-pi, pi]."""
    w = np.pi - np.mod(np.pi - np.asarray(a, dtype=np.float64), 2 * np.pi)
    return float(w) if np.ndim(w) == 0 else w


def circular_mean(a: np.ndarray) -> float:
    """Mean direction of angles (radians), in (-pi, pi]: the angle of the mean unit vector."""
    return float(np.angle(np.exp(1j * np.asarray(a, dtype=np.float64)).mean()))


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


#: TDW's pole threshold: beyond it ``rot_x`` is +-90 degrees and ``rot_z`` is 0.
_POLE = 0.49995


def quaternion_to_euler(q) -> tuple[float, float, float]:
    """``(rot_x, rot_y, rot_z)`` in radians in (-pi, pi] of a Unity quaternion ``(x, y, z, w)``:
    TDW's ``QuaternionUtils.quaternion_to_euler_angles`` (Unity's ``Ry @ Rx @ Rz`` decomposition with
    its pole rule), without the conversion to degrees in [0, 360)."""
    x, y, z, w = (float(v) for v in q)
    unit = x * x + y * y + z * z + w * w
    test = x * w - y * z
    if test > _POLE * unit:
        ex, ey, ez = np.pi / 2, 2 * np.arctan2(y, x), 0.0
    elif test < -_POLE * unit:
        ex, ey, ez = -np.pi / 2, -2 * np.arctan2(y, x), 0.0
    else:
        ex = np.arcsin(2 * (w * x - y * z))
        ey = np.arctan2(2 * w * y + 2 * z * x, 1 - 2 * (x * x + y * y))
        ez = np.arctan2(2 * w * z + 2 * x * y, 1 - 2 * (z * z + x * x))
    return wrap_angle(ex), wrap_angle(ey), wrap_angle(ez)


def matrix_to_euler(R: np.ndarray) -> tuple[float, float, float]:
    """``(rot_x, rot_y, rot_z)`` of a camera-frame rotation matrix (see :func:`quaternion_to_euler`)."""
    return quaternion_to_euler(matrix_to_quaternion(R))


def euler_to_matrix(rot_x: float, rot_y: float, rot_z: float) -> np.ndarray:
    """Rotation of Unity Euler angles in radians: ``Ry(rot_y) @ Rx(rot_x) @ Rz(rot_z)`` (z first, then
    x, then y); the inverse of :func:`matrix_to_euler` away from TDW's poles."""
    return about_y(rot_y) @ about_x(rot_x) @ about_z(rot_z)


def relative_quaternion(camera_rotation, object_rotation) -> np.ndarray:
    """``inverse(q_cam) * q_obj`` of two Unity quaternions ``(x, y, z, w)``, with TDW's ``get_inverse``
    (divided by the squared norm) and ``multiply``: the object's rotation in the camera frame."""
    cx, cy, cz, cw = np.asarray(camera_rotation, dtype=np.float64)
    inv = np.array([-cx, -cy, -cz, cw]) / (cx * cx + cy * cy + cz * cz + cw * cw)
    (x1, y1, z1, w1), (x2, y2, z2, w2) = inv, np.asarray(object_rotation, dtype=np.float64)
    return np.array([w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 + y1 * w2 + z1 * x2 - x1 * z2,
                     w1 * z2 + z1 * w2 + x1 * y2 - y1 * x2,
                     w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2])


def camera_relative_euler(camera_rotation, object_rotation) -> tuple[float, float, float]:
    """The authors' rotation latents of an object: TDW's Euler angles of ``inverse(q_cam) * q_obj``.

    Both rotations are world rotations, as Unity quaternions ``(x, y, z, w)`` (used as given, like
    TDW, so a build's float32 quaternions give the authors' numbers) or 3x3 matrices."""
    q_cam, q_obj = (np.asarray(r, dtype=np.float64) if np.shape(r) == (4,) else matrix_to_quaternion(r)
                    for r in (camera_rotation, object_rotation))
    return quaternion_to_euler(relative_quaternion(q_cam, q_obj))


def project(x: float, y: float, z: float, fov_deg: float, width: int, height: int) -> tuple[float, float]:
    """Pixel (u, v) of a camera-frame point: ``u = W/2 + f*x/z, v = H/2 - f*y/z``."""
    f = (height / 2) / np.tan(np.radians(fov_deg) / 2)
    return width / 2 + f * x / z, height / 2 - f * y / z
