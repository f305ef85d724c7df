"""The latent schema: names, units, objectives, output layouts, normalisation and Euler angles.

Every part of latentzoo agrees on what is written here (see DESIGN.md):

* Camera frame: pinhole camera looking along +z, x to the right, y up. ``x, y, z`` are the object
  centre's coordinates in metres; ``z`` is the depth along the optical axis (not the Euclidean
  distance). A point projects to ``u = W/2 + f*x/z, v = H/2 - f*y/z`` with ``f = (H/2)/tan(fov/2)``.
* Rotation: three Euler angles ``rxy, ryz, rzx`` in radians in (-pi, pi], the rotation of the
  object from its canonical pose expressed in the camera frame. ``rxy`` turns in the x-y plane
  (about the optical axis z), ``ryz`` in the y-z plane (about x), ``rzx`` in the z-x plane
  (about y). The composition order is fixed here, once::

      R = Rz(rxy) @ Ry(rzx) @ Rx(ryz)

  i.e. first turn about x by ``ryz``, then about y by ``rzx``, then about z by ``rxy`` (all about
  the fixed camera axes). A canonical-frame vector ``v`` appears in the camera frame as ``R @ v``.
  Worked example: ``euler_to_matrix(rxy=pi/2, ryz=0, rzx=0)`` maps the object's +x axis to the
  camera's +y axis (the object rolled 90 degrees counter-clockwise as seen by the camera), and
  ``matrix_to_euler`` of that matrix returns ``(pi/2, 0, 0)``. ``rzx`` is kept in [-pi/2, pi/2]
  by ``matrix_to_euler`` so that the triple is unique away from gimbal lock.
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
ANGLE_LATENTS = ("rxy", "ryz", "rzx")
CLASS_LATENTS = ("category", "identity")
LATENTS = POSITION_LATENTS + ANGLE_LATENTS + CLASS_LATENTS

UNITS = {"x": "m", "y": "m", "z": "m", "rxy": "rad", "ryz": "rad", "rzx": "rad",
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

#: Objective name -> its tasks (DESIGN.md spelling). ``untrained``/``imagenet`` have no latent task.
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

    Rotation units are ``sin(rxy), sin(ryz), sin(rzx), cos(rxy), cos(ryz), cos(rzx)``.
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


# ---------------------------------------------------------------- Euler angles

def rot_x(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the camera's x axis (right-handed)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about the camera's y axis (right-handed)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
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


def euler_to_matrix(rxy: float, ryz: float, rzx: float) -> np.ndarray:
    """Rotation matrix ``Rz(rxy) @ Ry(rzx) @ Rx(ryz)`` (camera frame, right-handed, x right, y up)."""
    return rot_z(rxy) @ rot_y(rzx) @ rot_x(ryz)


def matrix_to_euler(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`euler_to_matrix`: ``(rxy, ryz, rzx)`` with ``rzx`` in [-pi/2, pi/2]."""
    R = np.asarray(R, dtype=np.float64)
    rzx = float(np.arcsin(np.clip(-R[2, 0], -1.0, 1.0)))
    if abs(R[2, 0]) < 1 - 1e-9:
        ryz = float(np.arctan2(R[2, 1], R[2, 2]))
        rxy = float(np.arctan2(R[1, 0], R[0, 0]))
    else:  # gimbal lock: put all of the remaining turn into rxy
        ryz = 0.0
        rxy = float(np.arctan2(-R[0, 1], R[1, 1]))
    return wrap_angle(rxy), wrap_angle(ryz), wrap_angle(rzx)


def project(x: float, y: float, z: float, fov_deg: float, width: int, height: int) -> tuple[float, float]:
    """Pixel (u, v) of a camera-frame point: ``u = W/2 + f*x/z, v = H/2 - f*y/z``."""
    f = (height / 2) / np.tan(np.radians(fov_deg) / 2)
    return width / 2 + f * x / z, height / 2 - f * y / z
