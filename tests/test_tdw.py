"""The ThreeDWorld backend without a TDW build: library order, command stream, latents from TDW
output data (real FlatBuffers messages built here), agreement with the embedded backend, the
writer path with an emulated build, and the no-build error."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from latentzoo.errors import UserError
from latentzoo.latents import euler_to_matrix, look_rotation, project
from latentzoo.rendering.sampler import SamplerConfig, SceneSampler, Variability
from latentzoo.rendering.tdw import backend as tdw_backend
from latentzoo.rendering.tdw import commands
from latentzoo.rendering.tdw.frames import (camera_frame_latents, matrix_to_quaternion, quaternion_to_matrix,
                                            unity_euler_to_matrix, world_to_camera_matrix)
from latentzoo.rendering.tdw.library import TDWLibrary, librarian_categories, model_librarian, read_pinned_models
from latentzoo.rendering.tdw.output import read_frame, read_regions, read_segmentation_color
from latentzoo.rendering.tdw.placement import Region, place

import tdw.flatbuffers as fb  # noqa: E402  (after latentzoo's tdw imports, which silence pkg_resources)
from tdw.FBOutput import (Bounds as FBBounds, CameraMatrices as FBCama, ImagePass as FBPass, Images as FBImages,
                          PassMask as FBPassMask,
                          Occlusion as FBOccl, SceneRegion as FBRegion, SceneRegions as FBRegions,
                          SegmentationColors as FBSegm, Transforms as FBTran)

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


def fb_bounds(object_id: int, center) -> bytes:
    b = fb.Builder(0)
    ids = _vector(b, FBBounds.BoundsStartIdsVector, [object_id], "Int32")
    points = np.zeros((7, 3))
    points[6] = center  # front, back, right, left, top, bottom, center
    pts = _vector(b, FBBounds.BoundsStartBoundPositionsVector, points.reshape(-1), "Float32")
    FBBounds.BoundsStart(b)
    FBBounds.BoundsAddIds(b, ids)
    FBBounds.BoundsAddBoundPositions(b, pts)
    return _finish(b, FBBounds.BoundsEnd(b), "boun")


def fb_camera_matrices(camera_matrix) -> bytes:
    b = fb.Builder(0)
    avatar = b.CreateString("a")
    proj = _vector(b, FBCama.CameraMatricesStartProjectionMatrixVector, np.eye(4).reshape(-1), "Float32")
    cam = _vector(b, FBCama.CameraMatricesStartCameraMatrixVector, camera_matrix, "Float32")
    FBCama.CameraMatricesStart(b)
    FBCama.CameraMatricesAddAvatarId(b, avatar)
    FBCama.CameraMatricesAddProjectionMatrix(b, proj)
    FBCama.CameraMatricesAddCameraMatrix(b, cam)
    return _finish(b, FBCama.CameraMatricesEnd(b), "cama")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def fb_images(rgb: np.ndarray, id_pass: np.ndarray) -> bytes:
    b = fb.Builder(0)
    passes = []
    for mask, image in ((FBPassMask.PassMask._img, rgb), (FBPassMask.PassMask._id, id_pass)):
        data = b.CreateByteVector(_png(image))
        FBPass.ImagePassStart(b)
        FBPass.ImagePassAddPassMask(b, mask)
        FBPass.ImagePassAddImage(b, data)
        FBPass.ImagePassAddExtension(b, 1)
        passes.append(FBPass.ImagePassEnd(b))
    avatar = b.CreateString("a")
    vec = _vector(b, FBImages.ImagesStartPassesVector, passes, "UOffsetTRelative")
    FBImages.ImagesStart(b)
    FBImages.ImagesAddAvatarId(b, avatar)
    FBImages.ImagesAddWidth(b, rgb.shape[1])
    FBImages.ImagesAddHeight(b, rgb.shape[0])
    FBImages.ImagesAddPasses(b, vec)
    return _finish(b, FBImages.ImagesEnd(b), "imag")


def fb_occlusion(occluded: int, unoccluded: int) -> bytes:
    b = fb.Builder(0)
    avatar = b.CreateString("a")
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


def synthetic_frame(center, rotation, camera_position, camera_rotation, size: int = 32,
                    occluded: int = 16, unoccluded: int = 16) -> list[bytes]:
    """A reply as the build sends it for one image: object at ``center``/``rotation``, camera at
    ``camera_position``/``camera_rotation``; the _id pass marks a 5x5 block at the projected centre."""
    M = world_to_camera_matrix(camera_position, camera_rotation)
    W = np.diag([1, 1, -1]) @ M.reshape(4, 4)[:3, :3]
    x, y, z = W @ (np.asarray(center) - np.asarray(camera_position))
    u, v = project(x, y, z, 60.0, size, size)
    id_pass = np.zeros((size, size, 3), np.uint8)
    if z > 0 and 0 <= u < size and 0 <= v < size:
        id_pass[max(int(v) - 2, 0):int(v) + 3, max(int(u) - 2, 0):int(u) + 3] = OBJECT_COLOR
    rgb = np.full((size, size, 3), 90, np.uint8)
    rgb[id_pass.any(axis=-1)] = 200
    return [fb_images(rgb, id_pass), fb_transforms(commands.OBJECT_ID, center, rotation),
            fb_bounds(commands.OBJECT_ID, center),
            fb_camera_matrices(M), fb_occlusion(occluded, unoccluded), (12).to_bytes(4, "little")]


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


# ----------------------------------------------------------------------------- frames: hand-computed poses

def _latents_from(resp) -> dict:
    f = read_frame(resp, commands.OBJECT_ID)
    return camera_frame_latents(f.object_center, f.object_rotation, (0.0, 180.0, 0.0), f.camera_matrix)


CANON = unity_euler_to_matrix((0, 180, 0))


@pytest.mark.parametrize("camera_position, camera_euler, center, turn, expected", [
    # camera at the origin looking along +z; object 2 m ahead, right and below; canonical pose
    ((0, 0, 0), (0, 0, 0), (0.5, -0.2, 2.0), np.eye(3), dict(x=0.5, y=-0.2, z=2.0, rxy=0, ryz=0, rzx=0)),
    # camera yawed 90 degrees (looks along world +x; its right is world -z), object turned with it
    ((1, 2, 3), (0, 90, 0), (3, 2.3, 2.5), unity_euler_to_matrix((0, 90, 0)),
     dict(x=0.5, y=0.3, z=2.0, rxy=0, ryz=0, rzx=0)),
    # ... object left in its world canonical pose: seen turned by -60 degrees about the camera's y
    ((1, 2, 3), (0, 60, 0), (3, 2, 3), np.eye(3), dict(y=0, rxy=0, ryz=0, rzx=np.radians(-60))),
    # roll 30 degrees about the optical axis: object x turns towards camera y
    ((0, 0, 0), (0, 0, 0), (0, 0, 3), unity_euler_to_matrix((0, 0, 30)),
     dict(x=0, y=0, z=3, rxy=np.pi / 6, ryz=0, rzx=0)),
    # pitch 20 degrees about x, yaw -40 degrees about y
    ((0, 0, 0), (0, 0, 0), (0, 0, 3), unity_euler_to_matrix((20, 0, 0)),
     dict(x=0, y=0, z=3, rxy=0, ryz=np.radians(20), rzx=0)),
    ((0, 0, 0), (0, 0, 0), (0, 0, 3), unity_euler_to_matrix((0, -40, 0)),
     dict(x=0, y=0, z=3, rxy=0, ryz=0, rzx=np.radians(-40))),
    # camera pitched down 30 degrees (Unity +x pitch looks down): a point on the old axis rises
    ((0, 1, 0), (30, 0, 0), (0, 1, 2), np.eye(3),
     dict(x=0, y=2 * np.sin(np.radians(30)), z=2 * np.cos(np.radians(30)), rxy=0, ryz=np.radians(-30), rzx=0)),
])
def test_latents_from_synthetic_tdw_output_equal_hand_computed_values(camera_position, camera_euler, center, turn,
                                                                      expected):
    cam_rot = unity_euler_to_matrix(camera_euler)
    rotation = matrix_to_quaternion(turn @ CANON)  # world rotation = turn of the canonical pose
    resp = synthetic_frame(center, rotation, camera_position, matrix_to_quaternion(cam_rot))
    got = _latents_from(resp)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-5), k


def test_camera_matrix_layout_is_checked():
    M = world_to_camera_matrix((1, 2, 3), matrix_to_quaternion(unity_euler_to_matrix((10, 20, 0))))
    with pytest.raises(ValueError, match="row-major"):
        camera_frame_latents((0, 0, 5), (0, 0, 0, 1), (0, 0, 0), M.reshape(4, 4).T.reshape(-1))


def test_quaternions_round_trip_and_match_unity_euler():
    rng = np.random.default_rng(0)
    for _ in range(50):
        R = unity_euler_to_matrix(rng.uniform(-180, 180, 3))
        assert np.allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-12)
    # Unity: Quaternion.Euler(0, 90, 0) = (0, sin 45, 0, cos 45); it turns forward (+z) to +x
    assert np.allclose(matrix_to_quaternion(unity_euler_to_matrix((0, 90, 0))), (0, np.sqrt(0.5), 0, np.sqrt(0.5)))
    assert np.allclose(look_rotation((1, 0, 0)) @ (0, 0, 1), (1, 0, 0))


# ----------------------------------------------------------------------------- command stream

def _sampler(library, seed=3, **kw):
    return SceneSampler(library.identity_category, library.categories, seed,
                        config=SamplerConfig(n_backgrounds=62), **kw)


def _emulate_camera_frame(stream: list[dict], model) -> tuple[np.ndarray, np.ndarray]:
    """Where the commands put the object centre and canonical frame, in the camera frame."""
    cmd = {c["$type"]: c for c in stream}
    cam_p = np.array([cmd["teleport_avatar_to"]["position"][k] for k in "xyz"])
    cam_r = quaternion_to_matrix([cmd["rotate_sensor_container_to"]["rotation"][k] for k in "xyzw"])
    pivot = np.array([cmd["teleport_object"]["position"][k] for k in "xyz"])
    obj_r = quaternion_to_matrix([cmd["rotate_object_to"]["rotation"][k] for k in "xyzw"])
    scale = cmd["scale_object"]["scale_factor"]["x"]
    center = pivot + obj_r @ (scale * np.asarray(model.bounds_center))
    return cam_r.T @ (center - cam_p), cam_r.T @ obj_r @ unity_euler_to_matrix(model.canonical_rotation).T


def test_command_stream_of_a_seeded_image_matches_the_sampled_scene(tdw117):
    skyboxes = commands.skybox_names()
    assert len(skyboxes) == 62
    sampler = _sampler(tdw117)
    for index in (0, 7, 123):
        scene = sampler(index)
        model = tdw117.models[scene.identity]
        placement = place(scene, model, REGIONS)
        assert placement == place(scene, model, REGIONS)  # deterministic from (seed, index)
        stream = commands.image_commands(placement, placement.object_scale, skyboxes[scene.background])
        assert json.loads(json.dumps(stream)) == stream  # plain JSON, as Controller.communicate sends it
        types = [c["$type"] for c in stream]
        assert types == ["add_hdri_skybox", "scale_object", "teleport_avatar_to", "rotate_sensor_container_to",
                         "teleport_object", "rotate_object_to", "send_images", "send_camera_matrices",
                         "send_transforms", "send_bounds", "send_occlusion"]
        assert stream[0]["name"] == skyboxes[scene.background] and stream[0]["url"].endswith(stream[0]["name"])
        assert stream[1]["scale_factor"] == {"x": scene.scale / model.max_extent} | {
            "y": scene.scale / model.max_extent, "z": scene.scale / model.max_extent}
        assert stream[2]["position"] == dict(zip("xyz", placement.camera_position))
        assert stream[3]["rotation"] == dict(zip("xyzw", placement.camera_rotation))
        assert stream[4]["position"] == dict(zip("xyz", placement.object_position))
        assert stream[5]["rotation"] == dict(zip("xyzw", placement.object_rotation))
        # what the commands build is the scene: centre at the scene's camera-frame (x, y, z) ...
        centre, R = _emulate_camera_frame(stream, model)
        assert np.allclose(centre, (scene.x, scene.y, scene.z), atol=1e-9)
        # ... the object faces the camera up to the drawn +-45 degree pitch/yaw/roll
        towards_camera = -centre / np.linalg.norm(centre)
        assert np.degrees(np.arccos(np.clip(R[:, 2] @ towards_camera, -1, 1))) <= 45 * np.sqrt(3) + 1e-6
        assert all(abs(a) <= 45 for a in placement.pose_jitter_deg)
        # ... the camera stands in a region, and the object is not far below the horizon
        cam = np.array(placement.camera_position)
        assert any(np.all(np.abs(cam - r.center) <= np.array(r.size) / 2) for r in REGIONS)
        direction = np.array(placement.object_center) - cam
        assert np.degrees(np.arcsin(direction[1] / np.linalg.norm(direction))) >= -15 - 1e-9
        assert np.linalg.norm(direction) == pytest.approx(np.linalg.norm((scene.x, scene.y, scene.z)))
    # the model is added as the librarian describes it
    add = commands.object_commands(model, previous=True)
    assert [c["$type"] for c in add] == ["destroy_object", "add_object", "send_segmentation_colors"]
    assert add[1]["name"] == model.name and add[1]["url"] == model.url
    assert add[1]["rotation"] == dict(zip("xyz", model.canonical_rotation))
    env = commands.environment_commands("ruin", 256, 60.0)
    assert env[0]["$type"] == "add_scene" and env[0]["name"] == "ruin"
    assert {"$type": "set_field_of_view", "field_of_view": 60.0, "avatar_id": "a"} in env
    assert {"$type": "set_pass_masks", "pass_masks": ["_img", "_id"], "avatar_id": "a"} in env


def test_centered_variant_has_no_camera_jitter(tdw117):
    scene = _sampler(tdw117, variability=Variability(centered=True))(5)
    p = place(scene, tdw117.models[scene.identity], REGIONS)
    forward = quaternion_to_matrix(p.camera_rotation)[:, 2]
    to_object = np.array(p.object_center) - p.camera_position
    assert np.allclose(forward, to_object / np.linalg.norm(to_object), atol=1e-12)  # aimed, not turned


# ----------------------------------------------------------------------------- same convention as embedded

def test_tdw_and_embedded_poses_are_the_same_construction(tdw117):
    """TDW turns the object to face the camera, then +-45 degrees: in the camera frame that is the
    embedded sampler's face-camera pose, look_rotation(-p) @ Rx @ Ry @ Rz, with TDW's jitter."""
    from latentzoo.latents import rot_x, rot_y, rot_z

    sampler = _sampler(tdw117)
    for index in range(20):
        scene = sampler(index)
        model = tdw117.models[scene.identity]
        p = place(scene, model, REGIONS)
        camera = quaternion_to_matrix(p.camera_rotation)  # camera-to-world
        canonical_to_world = quaternion_to_matrix(p.object_rotation) @ unity_euler_to_matrix(model.canonical_rotation).T
        pitch, yaw, roll = np.radians(p.pose_jitter_deg)
        position = (scene.x, scene.y, scene.z)
        expected = look_rotation(-np.asarray(position)) @ rot_x(pitch) @ rot_y(yaw) @ rot_z(roll)
        assert np.allclose(camera.T @ canonical_to_world, expected, atol=1e-9)
        assert np.abs(p.pose_jitter_deg).max() <= 45


def test_tdw_latents_use_the_embedded_backends_convention():
    """Place the embedded renderer's scenes in a TDW world (arbitrary camera pose), read them back
    from synthetic TDW output and compare with the scenes' own labels; then check the embedded
    image shows the object where the TDW-derived latents project."""
    from latentzoo.rendering import RenderSettings, make_backend
    from latentzoo.rendering.libraries import get_library

    library = get_library("procedural")
    sampler = SceneSampler(library.identity_category, library.categories, seed=11)
    embedded = make_backend("embedded", RenderSettings(size=64, fov_deg=60.0, library="procedural"))
    rng = np.random.default_rng(1)
    try:
        for index in range(6):
            scene = sampler(index)
            cam_p = rng.uniform(-5, 5, 3)
            cam_r = unity_euler_to_matrix(rng.uniform(-180, 180, 3))
            canonical_to_camera = euler_to_matrix(scene.rxy, scene.ryz, scene.rzx)
            center = cam_p + cam_r @ (scene.x, scene.y, scene.z)
            rotation = matrix_to_quaternion(cam_r @ canonical_to_camera @ CANON)
            got = _latents_from(synthetic_frame(center, rotation, cam_p, matrix_to_quaternion(cam_r), size=64))
            for k in ("x", "y", "z", "rxy", "ryz", "rzx"):
                assert got[k] == pytest.approx(scene.latents()[k], abs=1e-5), k
            mask = embedded.render(scene).mask
            u, v = project(got["x"], got["y"], got["z"], 60.0, 64, 64)
            rows, cols = np.nonzero(mask)
            assert rows.min() - 1 <= v <= rows.max() + 1 and cols.min() - 1 <= u <= cols.max() + 1
    finally:
        embedded.close()


# ----------------------------------------------------------------------------- emulated build + writer

class EmulatedBuild:
    """Stands in for ``tdw.controller.Controller``: applies the commands the backend sends to a
    world state and answers with the output data a build would send (built from that state)."""

    def __init__(self, library: TDWLibrary, occluded_attempts: int = 0):
        self.library, self.occluded_attempts = library, occluded_attempts
        self.sent: list[list[dict]] = []
        self.socket = type("S", (), {"close": lambda self, linger=0: None})()
        self.model = None
        self.scale = 1.0
        self.images = 0

    def communicate(self, stream):
        stream = [stream] if isinstance(stream, dict) else stream
        self.sent.append(stream)
        cmd = {c["$type"]: c for c in stream}
        if "add_object" in cmd:
            self.model = self.library.models[self.library.identities.index(cmd["add_object"]["name"])]
            self.scale = 1.0
        if "scale_object" in cmd:
            self.scale *= cmd["scale_object"]["scale_factor"]["x"]
        if "send_scene_regions" in cmd:
            return [fb_regions(REGIONS), b"\0\0\0\0"]
        if "send_segmentation_colors" in cmd:
            return [fb_segmentation_colors(commands.OBJECT_ID, OBJECT_COLOR), b"\0\0\0\0"]
        if "send_images" in cmd:
            self.images += 1
            cam_p = [cmd["teleport_avatar_to"]["position"][k] for k in "xyz"]
            cam_r = [cmd["rotate_sensor_container_to"]["rotation"][k] for k in "xyzw"]
            pivot = np.array([cmd["teleport_object"]["position"][k] for k in "xyz"])
            rot = [cmd["rotate_object_to"]["rotation"][k] for k in "xyzw"]
            center = pivot + quaternion_to_matrix(rot) @ (self.scale * np.asarray(self.model.bounds_center))
            occluded = 4 if self.images <= self.occluded_attempts else 16
            return synthetic_frame(center, rot, cam_p, cam_r, size=32, occluded=occluded)
        return [b"\0\0\0\0"]


def test_render_dataset_with_an_emulated_build(tmp_path, monkeypatch, tdw117):
    from latentzoo.datasets import RenderedDataset
    from latentzoo.rendering import render_dataset

    builds = []
    monkeypatch.setattr(tdw_backend, "connect", lambda port: builds.append(EmulatedBuild(tdw117, 1)) or builds[-1])
    monkeypatch.setenv(tdw_backend.PORT_ENV, "1071")  # connect to a running build (emulated here)
    out = tmp_path / "tdw"
    ds = render_dataset(out, images=6, size=32, seed=2, library="tdw117", backend="tdw", shard_size=3,
                        test_fraction=0.5, progress=False)
    assert isinstance(ds, RenderedDataset) and ds.meta["backend"] == "tdw"
    assert ds.meta["library"]["name"] == "tdw117" and len(ds.meta["library"]["categories"]) == 117
    df = ds.latents()
    sampler = _sampler(tdw117, seed=2)
    for _, row in df.iterrows():
        scene = sampler(int(row["key"]))
        assert (row["identity"], row["category"]) == (scene.identity, scene.category)
        assert (row["x"], row["y"], row["z"]) == pytest.approx((scene.x, scene.y, scene.z), abs=1e-4)
        assert row["model"] == tdw117.identities[scene.identity] and row["scene"] == "building_site"
        assert row["visible_fraction"] == pytest.approx(25 / 32 ** 2)  # the 5x5 _id block of the object
    assert df["attempts"].iloc[0] == 2 and (df["attempts"].iloc[1:] == 1).all()  # first pose was occluded
    sample = next(ds.samples("train"))
    assert sample.image.size == (32, 32)
    first = builds[0].sent
    assert first[0][0]["$type"] == "add_scene" and first[1][0]["$type"] == "add_object"
    # resume: nothing left to render, no new build is started
    render_dataset(out, images=6, size=32, seed=2, library="tdw117", backend="tdw", shard_size=3,
                   test_fraction=0.5, progress=False)
    assert len(builds) == 1


def test_replies_are_read_with_the_tdw_package():
    assert read_regions([fb_regions(REGIONS), b""]) == REGIONS
    assert tuple(read_segmentation_color([fb_segmentation_colors(1, OBJECT_COLOR), b""], 1)) == OBJECT_COLOR
    with pytest.raises(RuntimeError, match="lacks"):
        read_frame([fb_regions(REGIONS), b""], 1)


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
