"""The ThreeDWorld backend without a TDW build: the authors' generator (YudiXie/tdw_image_dataset)
setting by setting, up to the command stream and the build's replies. An emulated build applies
the commands with Unity's semantics and answers with real FlatBuffers output data built here; the
rotation latents are checked against the installed ``tdw`` package's QuaternionUtils."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from latentzoo.errors import UserError
from latentzoo.latents import (about_x, about_y, about_z, euler_to_matrix, look_rotation, matrix_to_quaternion,
                               project, quaternion_to_matrix)
from latentzoo.rendering.sampler import SceneSampler, Variability
from latentzoo.rendering.tdw import backend as tdw_backend
from latentzoo.rendering.tdw import commands, placement
from latentzoo.rendering.tdw.frames import camera_frame_latents
from latentzoo.rendering.tdw.library import (EXCLUDED_MODELS, TDWLibrary, librarian_categories, model_librarian,
                                             read_pinned_models)
from latentzoo.rendering.tdw.output import read_capture, read_regions, read_sample, read_segmentation_color
from latentzoo.rendering.tdw.placement import Region, camera_boxes, sample_configuration

import tdw.flatbuffers as fb  # noqa: E402  (after latentzoo's tdw imports, which silence pkg_resources)
from tdw.FBOutput import (ImagePass as FBPass, Images as FBImages, ImageSensor as FBSensor,
                          ImageSensors as FBSensors, Occlusion as FBOccl, PassMask as FBPassMask,
                          Quaternion as FBQuat, SceneRegion as FBRegion, SceneRegions as FBRegions,
                          SegmentationColors as FBSegm, Transforms as FBTran, Vector3 as FBVec3)
from tdw.librarian import HDRISkyboxLibrarian  # noqa: E402
from tdw.quaternion_utils import QuaternionUtils  # noqa: E402
from tdw.tdw_utils import TDWUtils  # noqa: E402

REGIONS = [Region((0.0, 2.0, 0.0), (12.0, 4.0, 10.0)), Region((20.0, 1.5, -5.0), (6.0, 3.0, 6.0))]
OBJECT_COLOR = (12, 200, 77)


@pytest.fixture(scope="module")
def tdw117() -> TDWLibrary:
    return TDWLibrary()


# ----------------------------------------------------------------------------- synthetic TDW output

def _finish(b: fb.Builder, root: int, ident: str) -> bytes:
    """Finish a FlatBuffer with a 4-byte file identifier (what the build puts at bytes 4:8)."""
    b.Prep(b.minalign, 8)
    for c in reversed(ident.encode()):
        b.PrependUint8(c)
    b.PrependUOffsetTRelative(root)
    b.finished = True
    return bytes(b.Output())


def _vector(b: fb.Builder, start, values, kind: str) -> int:
    start(b, len(values))
    for v in reversed(list(values)):
        getattr(b, f"Prepend{kind}")(v)
    return b.EndVector(len(values))


def fb_transforms(object_id: int, position, rotation) -> bytes:
    b = fb.Builder(0)
    ids = _vector(b, FBTran.TransformsStartIdsVector, [object_id], "Int32")
    pos = _vector(b, FBTran.TransformsStartPositionsVector, position, "Float32")
    rot = _vector(b, FBTran.TransformsStartRotationsVector, rotation, "Float32")
    fwd = _vector(b, FBTran.TransformsStartForwardsVector, quaternion_to_matrix(rotation)[:, 2], "Float32")
    FBTran.TransformsStart(b)
    FBTran.TransformsAddIds(b, ids)
    FBTran.TransformsAddPositions(b, pos)
    FBTran.TransformsAddRotations(b, rot)
    FBTran.TransformsAddForwards(b, fwd)
    return _finish(b, FBTran.TransformsEnd(b), "tran")


def fb_image_sensors(rotation) -> bytes:
    b = fb.Builder(0)
    name, avatar = b.CreateString("SensorContainer"), b.CreateString(commands.AVATAR_ID)
    FBSensor.ImageSensorStart(b)
    FBSensor.ImageSensorAddName(b, name)
    FBSensor.ImageSensorAddIsOn(b, True)
    FBSensor.ImageSensorAddRotation(b, FBQuat.CreateQuaternion(b, *rotation))
    FBSensor.ImageSensorAddForward(b, FBVec3.CreateVector3(b, *quaternion_to_matrix(rotation)[:, 2]))
    FBSensor.ImageSensorAddFieldOfView(b, 60.0)
    sensor = FBSensor.ImageSensorEnd(b)
    sensors = _vector(b, FBSensors.ImageSensorsStartSensorsVector, [sensor], "UOffsetTRelative")
    FBSensors.ImageSensorsStart(b)
    FBSensors.ImageSensorsAddAvatarId(b, avatar)
    FBSensors.ImageSensorsAddSensors(b, sensors)
    return _finish(b, FBSensors.ImageSensorsEnd(b), "imse")


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def fb_images(passes: dict[str, bytes], size: int) -> bytes:
    b = fb.Builder(0)
    offsets = []
    for mask, data in passes.items():
        vec = b.CreateByteVector(data)
        FBPass.ImagePassStart(b)
        FBPass.ImagePassAddPassMask(b, getattr(FBPassMask.PassMask, mask))
        FBPass.ImagePassAddImage(b, vec)
        FBPass.ImagePassAddExtension(b, 0 if mask == "_img" else 1)  # JPEG _img, PNG _id
        offsets.append(FBPass.ImagePassEnd(b))
    avatar = b.CreateString(commands.AVATAR_ID)
    vec = _vector(b, FBImages.ImagesStartPassesVector, offsets, "UOffsetTRelative")
    FBImages.ImagesStart(b)
    FBImages.ImagesAddAvatarId(b, avatar)
    FBImages.ImagesAddWidth(b, size)
    FBImages.ImagesAddHeight(b, size)
    FBImages.ImagesAddPasses(b, vec)
    return _finish(b, FBImages.ImagesEnd(b), "imag")


def fb_occlusion(occluded: int, unoccluded: int) -> bytes:
    b = fb.Builder(0)
    avatar = b.CreateString(commands.AVATAR_ID)
    FBOccl.OcclusionStart(b)
    FBOccl.OcclusionAddAvatarId(b, avatar)
    FBOccl.OcclusionAddOccluded(b, occluded)
    FBOccl.OcclusionAddUnoccluded(b, unoccluded)
    return _finish(b, FBOccl.OcclusionEnd(b), "occl")


def fb_regions(regions: list[Region]) -> bytes:
    b = fb.Builder(0)
    FBRegions.SceneRegionsStartRegionsVector(b, len(regions))
    for i, r in reversed(list(enumerate(regions))):
        FBRegion.CreateSceneRegion(b, i, *r.center, *r.size)
    vec = b.EndVector(len(regions))
    FBRegions.SceneRegionsStart(b)
    FBRegions.SceneRegionsAddRegions(b, vec)
    return _finish(b, FBRegions.SceneRegionsEnd(b), "sreg")


def fb_segmentation_colors(object_id: int, color) -> bytes:
    b = fb.Builder(0)
    names = [b.CreateString("model")]
    cats = [b.CreateString("category")]
    ids = _vector(b, FBSegm.SegmentationColorsStartIdsVector, [object_id], "Int32")
    nv = _vector(b, FBSegm.SegmentationColorsStartNamesVector, names, "UOffsetTRelative")
    cv = _vector(b, FBSegm.SegmentationColorsStartCategoriesVector, cats, "UOffsetTRelative")
    colors = _vector(b, FBSegm.SegmentationColorsStartColorsVector, [int(c) for c in color], "Int32")
    FBSegm.SegmentationColorsStart(b)
    FBSegm.SegmentationColorsAddIds(b, ids)
    FBSegm.SegmentationColorsAddNames(b, nv)
    FBSegm.SegmentationColorsAddCategories(b, cv)
    FBSegm.SegmentationColorsAddColors(b, colors)
    return _finish(b, FBSegm.SegmentationColorsEnd(b), "segm")


# ----------------------------------------------------------------------------- emulated build

_AXES = {"pitch": about_x, "yaw": about_y, "roll": about_z}


def _v(d: dict) -> np.ndarray:
    return np.array([d[k] for k in "xyz"], dtype=np.float64)


class EmulatedBuild:
    """Stands in for ``tdw.controller.Controller``: applies the commands with Unity's semantics
    (``Transform.LookAt`` with world up, ``Rotate`` about local axes, centroid teleports) and
    answers with the output data a build would send, as float32 FlatBuffers.

    The object is visible (Occlusion) in proportion to how much of a 5x5 block at its projected
    centroid lies in the 32x32 frame; the first ``occluded_attempts`` sampling frames report it
    hidden. ``bounds_center`` overrides the model's (e.g. zeros: the pivot is the centroid)."""

    def __init__(self, library: TDWLibrary, occluded_attempts: int = 0, bounds_center=None):
        self.library, self.occluded_attempts, self.bounds_center = library, occluded_attempts, bounds_center
        self.sent: list[list[dict]] = []
        self.socket = type("S", (), {"close": lambda self, linger=0: None})()
        self.model = None
        self.pivot, self.rotation, self.scale = np.zeros(3), np.eye(3), 1.0
        self.camera, self.camera_rotation = np.zeros(3), np.eye(3)
        self.size, self.passes, self.skybox = 256, [], None
        self.always: set[str] = set()
        self.sampling_frames = 0
        self.images: list[bytes] = []  # the _img JPEGs sent

    def centroid(self) -> np.ndarray:
        b = self.model.bounds_center if self.bounds_center is None else self.bounds_center
        return self.pivot + self.rotation @ (self.scale * np.asarray(b, dtype=np.float64))

    def apply(self, c: dict) -> None:
        kind = c["$type"]
        if kind == "add_object":
            self.model = self.library.models[self.library.identities.index(c["name"])]
            self.pivot, self.scale = np.zeros(3), 1.0
            self.rotation = euler_to_matrix(*np.radians([c["rotation"][k] for k in "xyz"]))
        elif kind == "scale_object":
            self.scale *= c["scale_factor"]["x"]
        elif kind == "teleport_object":
            target = _v(c["position"])
            self.pivot = target - (self.centroid() - self.pivot) if c.get("use_centroid") else target
        elif kind == "object_look_at_position":
            self.rotation = look_rotation(_v(c["position"]) - self.pivot)
        elif kind == "rotate_object_by":
            assert c["is_world"] is False
            self.rotation = self.rotation @ _AXES[c["axis"]](np.radians(c["angle"]))
        elif kind == "rotate_object_to":
            self.rotation = quaternion_to_matrix([c["rotation"][k] for k in "xyzw"])
        elif kind == "teleport_avatar_to":
            self.camera = _v(c["position"])
        elif kind == "look_at":
            assert c["use_centroid"] is True
            self.camera_rotation = look_rotation(self.centroid() - self.camera)
        elif kind == "rotate_sensor_container_by":
            self.camera_rotation = self.camera_rotation @ _AXES[c["axis"]](np.radians(c["angle"]))
        elif kind == "rotate_sensor_container_to":
            self.camera_rotation = quaternion_to_matrix([c["rotation"][k] for k in "xyzw"])
        elif kind == "set_screen_size":
            self.size = c["width"]
        elif kind == "set_pass_masks":
            self.passes = c["pass_masks"]
        elif kind == "add_hdri_skybox":
            self.skybox = c["name"]
        elif kind.startswith("send_") and "frequency" in c and kind != "send_segmentation_colors":
            (self.always.add if c["frequency"] == "always" else self.always.discard)(kind)

    def _block(self, size: int) -> np.ndarray:
        """Where a 5x5 block at the projected centroid lies on a size x size image."""
        x, y, z = self.camera_rotation.T @ (self.centroid() - self.camera)
        u, v = project(x, y, z, 60.0, size, size) if z > 0 else (-size, -size)
        block = np.zeros((size, size), bool)
        if -3 < u < size + 2 and -3 < v < size + 2:
            block[max(int(v) - 2, 0):max(int(v) + 3, 0), max(int(u) - 2, 0):max(int(u) + 3, 0)] = True
        return block

    def communicate(self, stream):
        stream = [stream] if isinstance(stream, dict) else stream
        self.sent.append(stream)
        for c in stream:
            self.apply(c)
        kinds = {c["$type"] for c in stream}
        reply = []
        if "send_scene_regions" in kinds:
            reply.append(fb_regions(REGIONS))
        if "send_segmentation_colors" in kinds:
            reply.append(fb_segmentation_colors(commands.OBJECT_ID, OBJECT_COLOR))
        if "send_transforms" in self.always:
            reply.append(fb_transforms(commands.OBJECT_ID, self.pivot, matrix_to_quaternion(self.rotation)))
        if "send_image_sensors" in self.always:
            reply.append(fb_image_sensors(matrix_to_quaternion(self.camera_rotation)))
        if "send_occlusion" in self.always:
            self.sampling_frames += "look_at" in kinds  # an attempt
            visible = int(self._block(commands.SAMPLING_SIZE).sum())
            reply.append(fb_occlusion(0 if self.sampling_frames <= self.occluded_attempts else visible, 25))
        if "send_images" in self.always:
            block = self._block(self.size)
            rgb = np.full((self.size, self.size, 3), 90, np.uint8)
            rgb[block] = 200
            id_pass = np.zeros_like(rgb)
            id_pass[block] = OBJECT_COLOR
            self.images.append(_encoded(rgb, "JPEG"))
            encoded = {"_img": self.images[-1], "_id": _encoded(id_pass, "PNG")}
            reply.append(fb_images({p: encoded[p] for p in self.passes}, self.size))
        return reply + [(len(self.sent)).to_bytes(4, "little")]


def _sampler(library, seed=3, n_train=None, **kw) -> SceneSampler:
    blocks = (0,) if n_train is None else (0, n_train)
    return SceneSampler(library.identity_category, library.categories, seed, blocks=blocks, **kw)


# ----------------------------------------------------------------------------- library

def test_tdw117_order_is_the_pinned_one_and_comes_from_the_librarian(tdw117):
    rows = read_pinned_models()
    assert len(tdw117.categories) == 117 and len(tdw117.identities) == 548
    assert tdw117.identities == [r["model_name"] for r in rows] == sorted(tdw117.identities)
    assert tdw117.identity_category == [int(r["category_label"]) for r in rows]
    assert tdw117.wnids == sorted(tdw117.wnids) and len(set(tdw117.categories)) == 117
    assert tdw117.categories[tdw117.wnids.index("n02942699")] == "camera"
    assert sum(c.startswith("bowl (") for c in tdw117.categories) == 2  # two wnids named "bowl"
    # the librarian query is what defines the order; the same query twice gives the same order
    assert librarian_categories([r["model_name"] for r in rows]) == list(zip(tdw117.wnids, tdw117.categories))
    # ... and today's librarian without the pinned list would not give TDW-117
    usable = {r.wnid for r in model_librarian().records if not r.do_not_use}
    assert len(usable) != 117
    m = tdw117.models[0]
    assert (m.name, m.wnid, m.max_extent, m.canonical_rotation) == ("034_vray", "n02942699", 0.1667, (0.0, 180.0, 0.0))
    assert m.url.endswith("/034_vray")


def test_models_are_scaled_to_unit_size_as_tdw_does_and_the_excluded_ones_are_out(tdw117):
    records = {r.name: r for r in model_librarian().records}
    for m in tdw117.models:
        assert m.unit_scale == TDWUtils.get_unit_scale(records[m.name])  # the authors' scale_object factor
        assert 1 / m.unit_scale == pytest.approx(m.max_extent, abs=5.1e-5)  # the pinned list's 4 decimals
    assert not set(EXCLUDED_MODELS) & set(tdw117.identities)
    add = commands.object_commands(tdw117.models[0], previous=False)
    assert [c["$type"] for c in add] == ["send_images", "add_object", "set_screen_size", "set_pass_masks",
                                         "set_render_quality", "scale_object", "send_transforms", "send_occlusion",
                                         "send_image_sensors", "send_segmentation_colors"]
    m = tdw117.models[0]
    assert add[1] == {"$type": "add_object", "name": m.name, "url": records[m.name].get_url(),
                      "scale_factor": records[m.name].scale_factor, "category": records[m.name].wcategory,
                      "rotation": records[m.name].canonical_rotation, "id": commands.OBJECT_ID}
    assert add[5]["scale_factor"] == {k: TDWUtils.get_unit_scale(records[m.name]) for k in "xyz"}
    assert [c["$type"] for c in commands.object_commands(m, previous=True)][:3] == ["send_images", "destroy_object",
                                                                                   "add_object"]


def test_tdw_n_subsets_and_registry():
    from latentzoo.rendering.libraries import get_library

    full = get_library("tdw117")
    sub = get_library("tdw10")
    assert sub.name == "tdw10" and sub.categories == full.categories[:10] and sub.wnids == full.wnids[:10]
    assert sorted(set(sub.identity_category)) == list(range(10))
    assert sub.identities == [n for n, c in zip(full.identities, full.identity_category) if c < 10]
    with pytest.raises(UserError, match="1 <= N <= 117"):
        get_library("tdw500")
    with pytest.raises(UserError, match="--backend tdw"):
        full.mesh(0)


# ----------------------------------------------------------------------------- the authors' settings

def test_scene_setup_is_the_authors():
    setup = commands.scene_commands("ruin", 60.0)
    assert setup[0]["$type"] == "add_scene" and setup[0]["name"] == "ruin" and setup[0]["url"]
    assert setup[1:] == [
        {"$type": "create_avatar", "type": "A_Img_Caps_Kinematic", "id": "a"},
        {"$type": "simulate_physics", "value": False},
        {"$type": "set_img_pass_encoding", "value": False},
        {"$type": "set_field_of_view", "field_of_view": 60},
        {"$type": "set_camera_clipping_planes", "far": 160, "near": 0.01},
        {"$type": "set_anti_aliasing", "mode": "subpixel"},
        {"$type": "set_aperture", "aperture": 70},
        {"$type": "send_scene_regions"},
        {"$type": "set_post_exposure", "post_exposure": 0.6},
        {"$type": "set_contrast", "contrast": -20},
        {"$type": "set_saturation", "saturation": 10},
        {"$type": "set_screen_space_reflections", "enabled": False},
        {"$type": "set_shadow_strength", "strength": 1.0}]
    assert not any("vignette" in c["$type"] for c in setup)  # TDW >= 1.9 has none (the authors send none)
    assert commands.SCENES == ("box_room_2018", "building_site", "dead_grotto", "downtown_alleys", "iceland_beach",
                               "lava_field", "ruin", "savanna_flat_6km", "suburb_scene_2023", "tdw_room")
    assert commands.capture_mode_commands(256) == [
        {"$type": "send_transforms", "frequency": "never"},
        {"$type": "send_occlusion", "ids": ["a"], "frequency": "never"},
        {"$type": "send_image_sensors", "frequency": "never"},
        {"$type": "send_images", "frequency": "always"},
        {"$type": "set_pass_masks", "pass_masks": ["_img", "_id"]},
        {"$type": "set_screen_size", "height": 256, "width": 256},
        {"$type": "set_render_quality", "render_quality": 5}]


def test_skybox_cycle_is_the_62_exterior_skyboxes_then_the_20_daylight_ones_again():
    records = HDRISkyboxLibrarian().records
    exterior = [r.name for r in records if r.location == "exterior"]
    daylight = [r.name for r in records if r.location == "exterior" and r.sun_elevation >= 145]
    cycle = commands.skybox_cycle()
    assert (len(exterior), len(daylight), len(cycle)) == (62, 20, 82)
    assert cycle == exterior + daylight
    stream = commands.capture_commands((1, 2, 3), (0, 0, 0, 1), (4, 5, 6), (0, 1, 0, 0), cycle[3])
    assert [c["$type"] for c in stream] == ["teleport_avatar_to", "rotate_sensor_container_to", "teleport_object",
                                            "rotate_object_to", "add_hdri_skybox"]
    assert stream[-1]["name"] == cycle[3] and "rotate_hdri_skybox_by" not in json.dumps(stream)


def test_camera_boxes_shrink_regions_and_apply_the_scene_overrides():
    box, small = camera_boxes(REGIONS, "ruin")
    assert box.low == pytest.approx((-5.7, 0.4, -4.7)) and box.high == pytest.approx((5.7, 3.7, 4.7))
    assert box.object_y_max == 4.0 and small.high[1] == pytest.approx(2.7)
    savanna = camera_boxes(REGIONS, "savanna_flat_6km")[0]
    assert (savanna.low[1], savanna.high[1], savanna.object_y_max) == (5.0, 10.0, 15.0)
    suburb = camera_boxes(REGIONS, "suburb_scene_2023")[0]
    assert (suburb.low, suburb.high) == ((-68.0, 0.4, -11.0), (68.0, pytest.approx(3.7), 11.0))
    alleys = camera_boxes(REGIONS, "downtown_alleys")[1]
    assert (alleys.low, alleys.high, alleys.object_y_max) == ((29.0, 2.0, -15.0), (33.0, 5.0, 8.0), 7.0)
    with pytest.raises(RuntimeError, match="too small"):
        camera_boxes([Region((0, 0.3, 0), (10, 0.6, 10))], "ruin")


def test_configurations_follow_the_authors_distribution():
    from scipy import stats

    boxes = camera_boxes(REGIONS + [Region((0.0, 20.0, 0.0), (12.0, 40.0, 10.0))], "ruin")
    rng = np.random.default_rng(0)
    configs = [sample_configuration(rng, boxes, centered=False) for _ in range(3000)]
    offsets = np.array([np.subtract(c.object_center, c.camera_position) for c in configs])
    distance = np.linalg.norm(offsets, axis=1)
    direction_y = offsets[:, 1] / distance
    for c in configs:
        box = boxes[c.region]
        assert all(lo <= v <= hi for lo, v, hi in zip(box.low, c.camera_position, box.high))
        assert c.object_center[1] < box.object_y_max or c.resamples == placement.MAX_RESAMPLES
        assert max(map(abs, c.object_jitter)) <= 45 and max(map(abs, c.camera_jitter)) <= 20
    assert distance.min() >= 0.9 and distance.max() <= 4.2
    assert direction_y.min() > -0.2
    # uniform on the sphere: the height of a uniform direction is uniform (Archimedes), here on (-0.2, 1)
    # where the ceiling cannot be reached (the camera at least 4.2 m below it)
    free = np.array([c.resamples == 0 and c.camera_position[1] + 4.2 < boxes[c.region].object_y_max
                     for c in configs])
    assert stats.kstest(direction_y[free], stats.uniform(-0.2, 1.2).cdf).pvalue > 0.01
    assert stats.kstest(distance[free], stats.uniform(0.9, 3.3).cdf).pvalue > 0.01
    assert free.sum() > 500 and {c.region for c in configs} == {0, 1, 2}
    centred = sample_configuration(np.random.default_rng(1), boxes, centered=True)
    assert centred.camera_jitter is None
    stream = commands.configuration_commands(centred)
    assert "rotate_sensor_container_by" not in [c["$type"] for c in stream]


def test_attempts_are_a_pure_function_of_seed_index_and_attempt(tdw117):
    boxes = camera_boxes(REGIONS, "ruin")

    def draw(seed, index, attempt):
        scene = _sampler(tdw117, seed=seed)(index)
        return sample_configuration(placement.attempt_rng(scene, attempt), boxes, centered=False)

    assert draw(1, 5, 0) == draw(1, 5, 0)
    assert len({draw(1, 5, 0), draw(2, 5, 0), draw(1, 6, 0), draw(1, 5, 1)}) == 4


def test_configuration_commands_are_the_authors_sample_configuration():
    config = sample_configuration(np.random.default_rng(2), camera_boxes(REGIONS, "ruin"), centered=False)
    camera, center = (dict(zip("xyz", v)) for v in (config.camera_position, config.object_center))
    (pitch, yaw, roll), (cam_pitch, cam_yaw) = config.object_jitter, config.camera_jitter
    assert commands.configuration_commands(config) == [
        {"$type": "teleport_object", "id": 1, "position": center},
        {"$type": "teleport_avatar_to", "position": camera, "avatar_id": "a"},
        {"$type": "object_look_at_position", "position": camera, "id": 1},
        {"$type": "rotate_object_by", "id": 1, "angle": pitch, "axis": "pitch", "is_world": False},
        {"$type": "rotate_object_by", "id": 1, "angle": yaw, "axis": "yaw", "is_world": False},
        {"$type": "rotate_object_by", "id": 1, "angle": roll, "axis": "roll", "is_world": False},
        {"$type": "teleport_object", "id": 1, "position": center, "use_centroid": True},
        {"$type": "look_at", "object_id": 1, "use_centroid": True, "avatar_id": "a"},
        {"$type": "rotate_sensor_container_by", "angle": cam_pitch, "axis": "pitch", "avatar_id": "a"},
        {"$type": "rotate_sensor_container_by", "angle": cam_yaw, "axis": "yaw", "avatar_id": "a"}]
    assert commands.sampling_commands()[1:4] == [{"$type": "set_screen_size", "height": 32, "width": 32},
                                                 {"$type": "set_pass_masks", "pass_masks": []},
                                                 {"$type": "set_render_quality", "render_quality": 0}]


def test_acceptance_is_the_authors_occlusion_test():
    def accepted(occluded, unoccluded):
        resp = [fb_transforms(1, (0, 0, 0), (0, 0, 0, 1)), fb_image_sensors((0, 0, 0, 1)),
                fb_occlusion(occluded, unoccluded), b"\0\0\0\0"]
        return read_sample(resp, 1, "a").accepted

    # their test: 1 - occluded / (unoccluded + 0.001) < 0.2 and occluded > 2
    assert accepted(81, 100) and not accepted(80, 100) and not accepted(2, 2) and accepted(3, 3)
    assert not accepted(0, 0)


# ----------------------------------------------------------------------------- latents: TDW is the oracle

def _tdw_latents(sample, config) -> tuple[np.ndarray, np.ndarray]:
    """The authors' rel_pos and rel_rot_euler (radians) from what the build reported."""
    q_cam, q_obj = sample.camera_rotation, sample.object_rotation
    rel_pos = QuaternionUtils.world_to_local_vector(np.array(config.object_center), np.array(config.camera_position),
                                                    q_cam)
    euler = QuaternionUtils.quaternion_to_euler_angles(QuaternionUtils.multiply(QuaternionUtils.get_inverse(q_cam),
                                                                                q_obj))
    return rel_pos, np.radians(euler)


def _place(build: EmulatedBuild, model, config) -> object:
    """One sampling attempt with a new model through the emulated build (one frame); the parsed reply."""
    stream = commands.object_commands(model, previous=build.model is not None) + commands.configuration_commands(config)
    return read_sample(build.communicate(stream), commands.OBJECT_ID, commands.AVATAR_ID)


def test_rotation_latents_equal_tdw_quaternion_utils_on_1000_placements(tdw117):
    sampler = _sampler(tdw117)
    build = EmulatedBuild(tdw117)
    worst_angle = worst_position = 0.0
    for index in range(1000):
        scene = sampler(index)
        boxes = camera_boxes(REGIONS, tdw_backend.scene_of(scene)[0])
        config = sample_configuration(placement.attempt_rng(scene, 0), boxes, centered=False)
        sample = _place(build, tdw117.models[scene.identity], config)
        assert sample.camera_rotation.dtype == np.float64 and np.any(sample.camera_rotation.astype(np.float32)
                                                                      == sample.camera_rotation)
        got = camera_frame_latents(config.object_center, config.camera_position, sample.camera_rotation,
                                   sample.object_rotation)
        rel_pos, euler = _tdw_latents(sample, config)
        angles = np.array([got["rot_x"], got["rot_y"], got["rot_z"]])
        assert np.all((angles > -np.pi) & (angles <= np.pi))
        worst_angle = max(worst_angle, np.abs(np.angle(np.exp(1j * (angles - euler)))).max())
        worst_position = max(worst_position, np.abs(np.array([got["x"], got["y"], got["z"]]) - rel_pos).max())
    assert worst_angle < 1e-9
    assert worst_position < 1e-5  # QuaternionUtils does not normalise the build's float32 quaternions


def test_facing_pose_is_0_pi_0_the_embedded_construction_and_centred_on_the_axis(tdw117):
    build = EmulatedBuild(tdw117, bounds_center=(0.0, 0.0, 0.0))  # pivot = centroid: facing is exact
    config = placement.Configuration(0, (1.0, 1.5, -2.0), (2.5, 2.0, 0.5), (0.0, 0.0, 0.0), None, 0)
    sample = _place(build, tdw117.models[7], config)
    got = camera_frame_latents(config.object_center, config.camera_position, sample.camera_rotation,
                               sample.object_rotation)
    assert (got["rot_x"], abs(got["rot_y"]), got["rot_z"]) == pytest.approx((0, np.pi, 0), abs=1e-6)
    assert (got["x"], got["y"]) == pytest.approx((0, 0), abs=1e-6)
    assert got["z"] == pytest.approx(np.linalg.norm(np.subtract(config.object_center, config.camera_position)))
    # with jitter, the build's pose in the camera frame is the embedded sampler's face-camera
    # construction at the same camera-frame position: look_rotation(-p) @ Rx @ Ry @ Rz of the jitter
    boxes = camera_boxes(REGIONS, "ruin")
    for seed in range(50):
        config = sample_configuration(np.random.default_rng(seed), boxes, centered=False)
        sample = _place(build, tdw117.models[seed], config)
        got = camera_frame_latents(config.object_center, config.camera_position, sample.camera_rotation,
                                   sample.object_rotation)
        pitch, yaw, roll = np.radians(config.object_jitter)
        facing = look_rotation(-np.array([got["x"], got["y"], got["z"]]))
        expected = facing @ about_x(pitch) @ about_y(yaw) @ about_z(roll)
        assert quaternion_to_matrix([got[f"q{k}"] for k in "xyzw"]) == pytest.approx(expected, abs=1e-5)
    # a real model (centroid off its pivot) in the centred variant: the centre still on the optical axis
    build = EmulatedBuild(tdw117)
    for seed in range(20):
        config = sample_configuration(np.random.default_rng(seed), boxes, centered=True)
        sample = _place(build, tdw117.models[seed], config)
        got = camera_frame_latents(config.object_center, config.camera_position, sample.camera_rotation,
                                   sample.object_rotation)
        assert (got["x"], got["y"]) == pytest.approx((0, 0), abs=1e-5)


# ----------------------------------------------------------------------------- scene blocks and balance

def test_scene_blocks_are_category_balanced_and_scenes_equal(tdw117):
    n_train, n_test = 11 * 585, 585 + 117
    sampler = _sampler(tdw117, seed=5, n_train=n_train)
    scenes = [sampler(i) for i in range(n_train + n_test)]
    placed = [tdw_backend.scene_of(s) for s in scenes]
    assert [p[0] for p in placed[:585]] == ["box_room_2018"] * 585 and placed[585][0] == "building_site"
    assert placed[n_train][0] == "box_room_2018"  # the test split starts its own blocks
    blocks: dict[tuple, list] = {}
    for i, (s, (name, _)) in enumerate(zip(scenes, placed)):
        blocks.setdefault((i >= n_train, s.cycle // 5), []).append((name, s))
    for part in blocks.values():
        assert len({name for name, _ in part}) == 1
        counts = np.bincount([s.category for _, s in part], minlength=117)
        assert counts.max() - counts.min() <= (0 if len(part) == 585 else 1)
        for c in range(117):
            models = [s.identity for _, s in part if s.category == c]
            per_model = np.unique(models, return_counts=True)[1]
            n_models = tdw117.identity_category.count(c)
            # a block is a window on the category's model cycles: it may straddle two of them
            assert per_model.max() - (per_model.min() if len(per_model) == n_models else 0) <= 2
    train = dict(zip(*np.unique([p[0] for p in placed[:n_train]], return_counts=True)))
    assert train == {name: 585 * (1 + (name == "box_room_2018")) for name in commands.SCENES}  # +-1 block
    # a scene's cycles count on across its blocks: the skybox cycle advances one entry per cycle
    box_room = [c for name, c in placed[:n_train] if name == "box_room_2018"]
    assert box_room == [c for c in range(10) for _ in range(117)]
    # a subset of 3 categories: blocks of ceil(500 / 3) cycles = 501 images
    small = _sampler(tdw117, seed=5, variability=Variability(categories=tuple(tdw117.categories[:3])))
    assert [tdw_backend.scene_of(small(i))[0] for i in (500, 501)] == ["box_room_2018", "building_site"]


# ----------------------------------------------------------------------------- the backend, end to end

def test_render_dataset_with_an_emulated_build(tmp_path, monkeypatch, tdw117):
    from latentzoo.datasets import RenderedDataset, iter_shard
    from latentzoo.rendering import render_dataset

    builds = []
    monkeypatch.setattr(tdw_backend, "connect", lambda port: builds.append(EmulatedBuild(tdw117, 1)) or builds[-1])
    monkeypatch.setenv(tdw_backend.PORT_ENV, "1071")  # connect to a running build (emulated here)
    out = tmp_path / "tdw"
    ds = render_dataset(out, images=6, size=48, seed=2, library="tdw117", backend="tdw", shard_size=3,
                        test_fraction=0.5, progress=False)
    assert isinstance(ds, RenderedDataset) and ds.meta["backend"] == "tdw"
    assert ds.meta["library"]["name"] == "tdw117" and len(ds.meta["library"]["categories"]) == 117
    generator = ds.meta["generator"]
    assert generator["scenes"] == list(commands.SCENES) and len(generator["skybox_cycle"]) == 82
    assert generator["scene_setup"] == commands.scene_commands("box_room_2018", 60.0)[1:]
    assert generator["capture_mode"] == json.loads(json.dumps(commands.capture_mode_commands(48)))
    df = ds.latents()
    sampler = _sampler(tdw117, seed=2, n_train=3)
    cycle = commands.skybox_cycle()
    for _, row in df.iterrows():
        scene = sampler(int(row["key"]))
        assert (row["identity"], row["category"]) == (scene.identity, scene.category)
        assert row["model"] == tdw117.identities[scene.identity] and row["scene"] == "box_room_2018"
        assert row["skybox"] == cycle[scene.cycle]
        # the latents are TDW's functions of what the build reported
        q_cam = np.array([row[f"camera_q{k}"] for k in "xyzw"])
        q_obj = np.array([row[f"object_q{k}"] for k in "xyzw"])
        euler = np.radians(QuaternionUtils.quaternion_to_euler_angles(
            QuaternionUtils.multiply(QuaternionUtils.get_inverse(q_cam), q_obj)))
        assert np.abs(np.angle(np.exp(1j * (row[["rot_x", "rot_y", "rot_z"]].to_numpy(float) - euler)))).max() < 1e-9
        rel = QuaternionUtils.world_to_local_vector(np.array([row[f"object_{k}"] for k in "xyz"]),
                                                    np.array([row[f"camera_{k}"] for k in "xyz"]), q_cam)
        assert row[["x", "y", "z"]].to_numpy(float) == pytest.approx(rel, abs=1e-5)
        assert 0.9 - 1e-6 <= np.linalg.norm(rel) <= 4.2 + 1e-6
        assert row["occlusion"] < 0.2 and row["visible_fraction"] > 0
    assert df["attempts"].iloc[0] == 2 and (df["attempts"].iloc[1:] == 1).all()  # first pose was occluded
    # the shards hold the build's own JPEGs, byte for byte (each image's second frame with images:
    # the first is the switch to capturing, whose image the authors also discard)
    jpegs = sorted(sample for shard in (out / "shards").glob("*.tar") for sample in iter_shard(shard))
    assert [jpeg for _, jpeg, _ in jpegs] == builds[0].images[1::2]
    # the command stream of the first image, message by message
    kinds = [[c["$type"] for c in message] for message in builds[0].sent]
    assert kinds[0][0] == "add_scene" and kinds[1][:2] == ["send_images", "add_object"]
    assert kinds[2][0] == kinds[3][0] == "teleport_object"  # two attempts
    assert kinds[4] == [c["$type"] for c in commands.capture_mode_commands(48)]
    assert kinds[5] == ["teleport_avatar_to", "rotate_sensor_container_to", "teleport_object", "rotate_object_to",
                        "add_hdri_skybox"]
    assert kinds[6][:2] == ["send_images", "destroy_object"]  # the next image's model
    # resume: nothing left to render, no new build is started
    render_dataset(out, images=6, size=48, seed=2, library="tdw117", backend="tdw", shard_size=3,
                   test_fraction=0.5, progress=False)
    assert len(builds) == 1


def test_replies_are_read_with_the_tdw_package():
    assert read_regions([fb_regions(REGIONS), b""]) == REGIONS
    assert tuple(read_segmentation_color([fb_segmentation_colors(1, OBJECT_COLOR), b""], 1)) == OBJECT_COLOR
    with pytest.raises(RuntimeError, match="lacks"):
        read_sample([fb_regions(REGIONS), b""], 1, "a")
    rgb = np.full((8, 8, 3), 50, np.uint8)
    jpeg = _encoded(rgb, "JPEG")
    capture = read_capture([fb_images({"_img": jpeg, "_id": _encoded(rgb, "PNG")}, 8), b""])
    assert capture.jpeg == jpeg and capture.rgb.shape == (8, 8, 3) and (capture.id_pass == 50).all()
    with pytest.raises(RuntimeError, match="not _img and _id"):
        read_capture([fb_images({"_img": jpeg}, 8), b""])


# ----------------------------------------------------------------------------- no build

def test_without_a_build_the_backend_stops_with_one_clear_line(tmp_path, monkeypatch, capsys):
    from latentzoo.cli import main
    from latentzoo.rendering import RenderSettings, make_backend

    monkeypatch.delenv(tdw_backend.BUILD_ENV, raising=False)
    monkeypatch.delenv(tdw_backend.PORT_ENV, raising=False)
    monkeypatch.setattr(tdw_backend, "default_build_path", lambda: tmp_path / "no-build" / "TDW.x86_64")
    with pytest.raises(UserError) as err:
        make_backend("tdw", RenderSettings(size=64, fov_deg=60.0, library="tdw117"))
    message = str(err.value)
    assert "\n" not in message
    for part in ("no ThreeDWorld build", "--tdw-build", "TDW_BUILD_PATH", "--backend embedded"):
        assert part in message
    assert re.search(r"unpack https://github.com/threedworld-mit/tdw/releases/download/v\d+\.\d+\.\d+/"
                     r"TDW_Linux.tar.gz", message)
    monkeypatch.setenv(tdw_backend.BUILD_ENV, str(tmp_path / "missing.x86_64"))
    with pytest.raises(UserError, match="missing.x86_64 does not exist .*TDW_BUILD_PATH.*--backend embedded"):
        tdw_backend.find_build()
    monkeypatch.delenv(tdw_backend.BUILD_ENV)
    args = ["render", "--out", str(tmp_path / "d"), "--backend", "tdw", "--library", "tdw117", "--images", "4",
            "--quiet"]
    assert main(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no ThreeDWorld build" in lines[0] and "--backend embedded" in lines[0]
    assert not list((tmp_path / "d" / "shards").glob("*.tar"))
    # the same render, resumed with a build path, is not refused as "a different render"
    assert main(args + ["--tdw-build", str(tmp_path / "b" / "TDW.x86_64")]) == 1
    assert "b/TDW.x86_64 does not exist" in capsys.readouterr().err


def test_a_busy_port_is_one_clear_error():
    import zmq

    port = tdw_backend.free_port()
    holder = zmq.Context().socket(zmq.REP)
    holder.bind(f"tcp://*:{port}")
    try:
        with pytest.raises(UserError, match=f"port {port}.*--workers 1"):
            tdw_backend.connect(port)
    finally:
        holder.close(linger=0)


FAKE_BUILD = '''#!{python}
"""A stand-in for TDW.x86_64: connects to the controller like the real build and answers with
tests/test_tdw.py's EmulatedBuild."""
import json, os, sys
import zmq
sys.path.insert(0, {tests!r})
from test_tdw import EmulatedBuild
from latentzoo.rendering.tdw.library import TDWLibrary

port = int([a for a in sys.argv[1:] if a.startswith("-port=")][0].split("=")[1])
with open(os.path.join({pids!r}, str(os.getpid())), "w") as f:
    f.write(str(port))
sock = zmq.Context().socket(zmq.REQ)
sock.connect(f"tcp://localhost:{{port}}")
sock.send(b"ready")
build = EmulatedBuild(TDWLibrary())
while True:
    stream = json.loads(sock.recv_multipart()[0])
    sock.send_multipart(build.communicate(stream))
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_parallel_workers_launch_one_build_each(tmp_path, monkeypatch):
    """Two writer workers launch two builds (a fake TDW.x86_64 speaking TDW's protocol) on distinct
    ports; the builds end with the workers."""
    import sys
    import time
    from pathlib import Path

    from latentzoo.rendering import render_dataset

    pids = tmp_path / "pids"
    pids.mkdir()
    build = tmp_path / "TDW" / "TDW.x86_64"
    build.parent.mkdir()
    build.write_text(FAKE_BUILD.format(python=sys.executable, tests=str(Path(__file__).parent), pids=str(pids)))
    build.chmod(0o755)
    monkeypatch.setenv(tdw_backend.BUILD_ENV, str(build))
    monkeypatch.delenv(tdw_backend.PORT_ENV, raising=False)
    ds = render_dataset(tmp_path / "d", images=8, size=32, seed=4, library="tdw117", backend="tdw", shard_size=2,
                        test_fraction=0.25, workers=2, progress=False)
    assert ds.meta["splits"] == {"train": 6, "test": 2} and len(ds.latents()) == 8
    ports = {p.name: p.read_text() for p in pids.iterdir()}
    assert len(ports) == 2 and len(set(ports.values())) == 2  # one build per worker, distinct ports
    deadline = time.time() + 10
    while any(_alive(int(pid)) for pid in ports) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(int(pid)) for pid in ports)
