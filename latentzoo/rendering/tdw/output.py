"""Reading the build's replies (lists of TDW output-data byte strings) into numpy values.

Each reply ends with the frame number; every other element is one FlatBuffers message whose type
is the 4-byte id at offset 4 (``tran``, ``occl``, ``imse``, ``imag``, ``segm``, ``sreg``), parsed
with the ``tdw`` package's own :mod:`tdw.output_data` classes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from latentzoo.rendering.tdw.placement import Region

with warnings.catch_warnings():  # tdw imports pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    from tdw.output_data import (ImageSensors, Images, Occlusion, OutputData, SceneRegions, SegmentationColors,
                                 Transforms)

MAX_OCCLUDED_FRACTION = 0.2  # the authors' occl_filter_th
MIN_OCCLUDED_VALUE = 2       # ... and their "v_occl > 2": the object must show at 32x32


@dataclass
class Sample:
    """What the build reports after one sampling attempt (the authors' ``sample_configuration``)."""

    occluded: int                 # Occlusion.get_occluded(): the object's share of the image, with the scene ...
    unoccluded: int               # ... and without it
    camera_rotation: np.ndarray   # (4,) world quaternion x, y, z, w of the camera (ImageSensors)
    object_position: np.ndarray   # (3,) world position of the object's pivot (Transforms)
    object_rotation: np.ndarray   # (4,) world quaternion x, y, z, w of the object (Transforms)

    @property
    def occluded_fraction(self) -> float:
        """The authors' ``1 - occluded / (unoccluded + 0.001)``."""
        return 1.0 - self.occluded / (self.unoccluded + 0.001)

    @property
    def accepted(self) -> bool:
        """The authors' test: less than 20 % hidden by the scene and more than 2 visible."""
        return self.occluded_fraction < MAX_OCCLUDED_FRACTION and self.occluded > MIN_OCCLUDED_VALUE


@dataclass
class Capture:
    """One captured image."""

    jpeg: bytes          # the _img pass as the build encoded it
    rgb: np.ndarray      # (H, W, 3) uint8, decoded
    id_pass: np.ndarray  # (H, W, 3) uint8, the _id (segmentation) pass


def _by_type(resp: list[bytes], needed: set[str]) -> dict[str, bytes]:
    data = {OutputData.get_data_type_id(r): r for r in resp[:-1]}
    missing = needed - set(data)
    if missing:
        raise RuntimeError(f"the build's reply lacks {sorted(missing)} output data")
    return data


def _only(ids, object_id, what: str) -> int:
    found = [i for i, v in enumerate(ids) if v == object_id]
    if not found:
        raise RuntimeError(f"the build sent no {what} for {object_id!r}")
    return found[0]


def read_sample(resp: list[bytes], object_id: int, avatar_id: str) -> Sample:
    """The :class:`Sample` in a reply to a sampling attempt."""
    data = _by_type(resp, {"tran", "occl", "imse"})
    transforms, occlusion, sensors = Transforms(data["tran"]), Occlusion(data["occl"]), ImageSensors(data["imse"])
    if sensors.get_avatar_id() != avatar_id or sensors.get_num_sensors() != 1:
        raise RuntimeError(f"expected one image sensor of avatar {avatar_id!r} in the build's reply")
    i = _only([transforms.get_id(k) for k in range(transforms.get_num())], object_id, "Transforms")
    return Sample(occluded=int(occlusion.get_occluded()), unoccluded=int(occlusion.get_unoccluded()),
                  camera_rotation=np.array(sensors.get_sensor_rotation(0), dtype=np.float64),
                  object_position=np.array(transforms.get_position(i), dtype=np.float64),
                  object_rotation=np.array(transforms.get_rotation(i), dtype=np.float64))


def _decode(data) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))


def read_capture(resp: list[bytes]) -> Capture:
    """The :class:`Capture` in a reply to the capture commands."""
    images = Images(_by_type(resp, {"imag"})["imag"])
    passes = {images.get_pass_mask(i): bytes(images.get_image(i)) for i in range(images.get_num_passes())}
    if set(passes) != {"_img", "_id"}:
        raise RuntimeError(f"the build sent passes {sorted(passes)}, not _img and _id")
    return Capture(jpeg=passes["_img"], rgb=_decode(passes["_img"]), id_pass=_decode(passes["_id"]))


def read_regions(resp: list[bytes]) -> list[Region]:
    """The scene's regions from a reply to ``send_scene_regions``."""
    regions = SceneRegions(_by_type(resp, {"sreg"})["sreg"])
    return [Region(tuple(regions.get_center(i)), tuple(regions.get_bounds(i))) for i in range(regions.get_num())]


def read_segmentation_color(resp: list[bytes], object_id: int) -> np.ndarray:
    """The ``_id``-pass colour (3 uint8) of ``object_id`` from a ``SegmentationColors`` reply."""
    colors = SegmentationColors(_by_type(resp, {"segm"})["segm"])
    index = _only([colors.get_object_id(i) for i in range(colors.get_num())], object_id, "segmentation colour")
    return np.asarray(colors.get_object_color(index), dtype=np.uint8)
