"""Reading the build's replies (lists of TDW output-data byte strings) into numpy values.

Each reply ends with the frame number; every other element is one FlatBuffers message whose type
is the 4-byte id at offset 4 (``tran``, ``boun``, ``cama``, ``imag``, ``occl``, ``segm``,
``sreg``), parsed with the ``tdw`` package's own :mod:`tdw.output_data` classes.
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
    from tdw.output_data import (Bounds, CameraMatrices, Images, Occlusion, OutputData, SceneRegions,
                                 SegmentationColors, Transforms)


@dataclass
class Frame:
    """One captured image and the object/camera state it was rendered with."""

    rgb: np.ndarray            # (H, W, 3) uint8, the _img pass
    id_pass: np.ndarray        # (H, W, 3) uint8, the _id (segmentation) pass
    object_rotation: np.ndarray  # (4,) world quaternion x, y, z, w
    object_center: np.ndarray    # (3,) world position of the bounds centre
    camera_matrix: np.ndarray    # (16,) Unity worldToCameraMatrix, row-major
    occluded: int              # Occlusion: 0-255 image share of the object with the scene ...
    unoccluded: int            # ... and without it

    @property
    def occlusion(self) -> float:
        """Fraction of the object hidden by the environment (TDW's low-resolution estimate)."""
        return 1.0 - self.occluded / self.unoccluded if self.unoccluded else 1.0


def _by_type(resp: list[bytes]) -> dict[str, bytes]:
    return {OutputData.get_data_type_id(r): r for r in resp[:-1]}


def _index_of(ids, object_id: int, what: str) -> int:
    found = [i for i, v in enumerate(ids) if int(v) == object_id]
    if not found:
        raise RuntimeError(f"the build sent no {what} for object {object_id}")
    return found[0]


def _decode(data: np.ndarray) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))


def read_frame(resp: list[bytes], object_id: int) -> Frame:
    """The :class:`Frame` in a reply to :func:`~latentzoo.rendering.tdw.commands.image_commands`."""
    data = _by_type(resp)
    missing = {"imag", "tran", "boun", "cama", "occl"} - set(data)
    if missing:
        raise RuntimeError(f"the build's reply lacks {sorted(missing)} output data")
    images = Images(data["imag"])
    passes = {images.get_pass_mask(i): _decode(images.get_image(i)) for i in range(images.get_num_passes())}
    transforms, bounds = Transforms(data["tran"]), Bounds(data["boun"])
    occlusion = Occlusion(data["occl"])
    return Frame(rgb=passes["_img"], id_pass=passes["_id"],
                 object_rotation=np.array(transforms.get_rotation(
                     _index_of([transforms.get_id(i) for i in range(transforms.get_num())], object_id, "Transforms"))),
                 object_center=np.array(bounds.get_center(
                     _index_of([bounds.get_id(i) for i in range(bounds.get_num())], object_id, "Bounds"))),
                 camera_matrix=np.asarray(CameraMatrices(data["cama"]).get_camera_matrix(), dtype=np.float64),
                 occluded=int(occlusion.get_occluded()), unoccluded=int(occlusion.get_unoccluded()))


def read_regions(resp: list[bytes]) -> list[Region]:
    """The environment's regions from a reply to ``send_scene_regions``."""
    data = _by_type(resp)
    if "sreg" not in data:
        raise RuntimeError("the build's reply lacks SceneRegions output data")
    regions = SceneRegions(data["sreg"])
    return [Region(tuple(regions.get_center(i)), tuple(regions.get_bounds(i))) for i in range(regions.get_num())]


def read_segmentation_color(resp: list[bytes], object_id: int) -> np.ndarray:
    """The ``_id``-pass colour (3 uint8) of ``object_id`` from a ``SegmentationColors`` reply."""
    data = _by_type(resp)
    if "segm" not in data:
        raise RuntimeError("the build's reply lacks SegmentationColors output data")
    colors = SegmentationColors(data["segm"])
    index = _index_of([colors.get_object_id(i) for i in range(colors.get_num())], object_id, "segmentation colour")
    return np.asarray(colors.get_object_color(index), dtype=np.uint8)
