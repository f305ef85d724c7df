"""Labels match pixels: positions project onto the object, area falls as 1/z^2, rotations round-trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from latentzoo.latents import euler_to_matrix, look_rotation, project, quaternion_to_matrix, wrap_angle
from latentzoo.rendering import RenderSettings
from latentzoo.rendering.embedded import EmbeddedBackend
from latentzoo.rendering.libraries.procedural import ProceduralLibrary, assemble, ellipsoid
from latentzoo.rendering.sampler import SamplerConfig, SceneSampler, Variability

FOV = 60.0


@pytest.fixture(scope="module")
def library():
    return ProceduralLibrary()


def _backend(size, library, **kw):
    return EmbeddedBackend(RenderSettings(size=size, fov_deg=FOV, backgrounds="none", **kw), library=library)


def _inside(mask: np.ndarray) -> bool:
    """Object fully inside the frame (not touching the border) and not tiny."""
    return mask.sum() >= 20 and not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    v, u = np.nonzero(mask)
    return u.mean() + 0.5, v.mean() + 0.5  # pixel centres


def _centroid_errors(backend, sampler, n, size):
    errors = []
    for i in range(n):
        scene = sampler(i)
        mask = backend.render(scene).mask
        if _inside(mask):
            u, v = project(scene.x, scene.y, scene.z, FOV, size, size)
            errors.append(np.hypot(*np.subtract(_centroid(mask), (u, v))))
    return np.array(errors)


def test_mask_centroid_matches_projected_position(library):
    size = 64
    backend = _backend(size, library)
    cats = library.categories
    symmetric = SceneSampler(library.identity_category, cats, 3, Variability(("superquadric", "torus")))
    errors = _centroid_errors(backend, symmetric, 300, size)
    assert len(errors) > 200
    # centrally symmetric objects: the silhouette centroid is the projected centre up to perspective
    assert np.median(errors) < 1.0 and np.percentile(errors, 95) < 3.0
    # every category (asymmetric shapes move the centroid off the bounding-box centre a little)
    errors = _centroid_errors(backend, SceneSampler(library.identity_category, cats, 4), 300, size)
    assert np.median(errors) < 2.0
    backend.close()


def test_mask_area_falls_as_inverse_square_of_depth(library):
    # far enough that the object's own depth barely matters, so area ~ 1/z^2
    size, depths = 256, np.array([3.0, 4.5, 6.0])
    backend = _backend(size, library)
    sampler = SceneSampler(library.identity_category, library.categories, 5, Variability(centered=True))
    slopes = []
    for i in range(12):
        scene = sampler(i)
        areas = [backend.render(dataclasses.replace(scene, z=z)).mask.sum() for z in depths]
        slopes.append(np.polyfit(np.log(depths), np.log(areas), 1)[0])
    assert abs(np.median(slopes) + 2) < 0.05 and np.abs(np.array(slopes) + 2).max() < 0.2, slopes
    backend.close()


class _Landmarks:
    """One asymmetric object: red, green, blue balls on the canonical +x, +y, +z axes and a black
    ball at (-1, -1, -1) * 0.42, so its bounding box is already centred with side 1."""

    name = "landmarks"
    attribution = "test"
    categories = ["landmarks"]
    identities = ["landmarks_0"]
    identity_category = [0]
    radius = 0.08
    centres = np.eye(3) * 0.42

    def mesh(self, identity):
        balls = [ellipsoid([self.radius] * 3, np.eye(3)[k]).moved(self.centres[k]) for k in range(3)]
        balls.append(ellipsoid([self.radius] * 3, [0, 0, 0]).moved(-self.centres.sum(0)))
        return assemble(balls)


def test_rotation_label_round_trips_through_pixels():
    size, lib = 160, _Landmarks()
    mesh = lib.mesh(0)
    assert np.allclose(mesh.positions.min(0), -0.5, atol=1e-6) and np.allclose(mesh.positions.max(0), 0.5, atol=1e-6)
    f = (size / 2) / np.tan(np.radians(FOV) / 2)
    backend = _backend(size, lib, msaa=0)
    sampler = SceneSampler([0], ["landmarks"], 11, Variability(centered=True))
    checked = 0
    for i in range(40):
        # flat colours: no diffuse or specular light, ambient 1
        scene = dataclasses.replace(sampler(i), z=1.6, light_color=(0.0, 0.0, 0.0), ambient=1.0, tint=(1, 1, 1))
        R = euler_to_matrix(scene.rot_x, scene.rot_y, scene.rot_z)  # the labels alone say where the balls are
        assert np.allclose(R, quaternion_to_matrix(scene.rotation), atol=1e-9)
        rgb = backend.render(scene).rgb.astype(int)
        for k in range(3):
            blob = (rgb[..., k] > 200) & (np.delete(rgb, k, axis=2).max(axis=2) < 60)
            p = R @ lib.centres[k] + (scene.x, scene.y, scene.z)
            if blob.sum() < 0.9 * np.pi * (lib.radius * f / p[2]) ** 2:
                continue  # partly hidden behind another ball
            u, v = project(*p, FOV, size, size)
            assert np.hypot(*np.subtract(_centroid(blob), (u, v))) < 1.0, (i, k)
            checked += 1
    assert checked >= 90
    backend.close()


def _xyz_angles(M: np.ndarray) -> np.ndarray:
    """(a, b, c) with ``M = Rx(a) @ Ry(b) @ Rz(c)``."""
    return np.array([np.arctan2(-M[1, 2], M[2, 2]), np.arcsin(M[0, 2]), np.arctan2(-M[0, 1], M[0, 0])])


def test_face_camera_pose_is_the_papers_jitter_about_facing_the_camera(library):
    face = SceneSampler(library.identity_category, library.categories, 4)
    anywhere = SceneSampler(library.identity_category, library.categories, 4, Variability(pose="uniform"))
    jitters, facing_cos, uniform_cos = [], [], []
    for i in range(2000):
        s, u = face(i), anywhere(i)
        to_camera = -np.array([s.x, s.y, s.z]) / np.linalg.norm([s.x, s.y, s.z])
        R = quaternion_to_matrix(s.rotation)
        assert np.allclose(euler_to_matrix(s.rot_x, s.rot_y, s.rot_z), R, atol=1e-9)
        jitters.append(_xyz_angles(look_rotation(to_camera).T @ R))  # undo "turned to face the camera"
        facing_cos.append(R[:, 2] @ to_camera)
        uniform_cos.append(quaternion_to_matrix(u.rotation)[:, 2] @ to_camera)
        assert (s.x, s.y, s.z, s.identity) == (u.x, u.y, u.z, u.identity)  # only the pose differs
    jitters = np.degrees(jitters)
    assert np.abs(jitters).max() <= 45 + 1e-6 and (np.abs(jitters).max(0) > 44).all()  # +-45 degrees, all three
    assert np.abs(jitters.mean(0)).max() < 2 and np.allclose(jitters.std(0), 90 / np.sqrt(12), atol=1.5)  # uniform
    assert min(facing_cos) >= np.cos(np.radians(60)) - 1e-9  # the canonical front sees the camera
    assert abs(np.mean(uniform_cos)) < 0.05 and min(uniform_cos) < -0.99  # any direction
    with pytest.raises(ValueError, match="unknown pose"):
        SceneSampler(library.identity_category, library.categories, 4, Variability(pose="sideways"))


def test_sampler_labels(library):
    cats = library.categories
    sampler = SceneSampler(library.identity_category, cats, 0, config=SamplerConfig(n_backgrounds=5))
    scenes = [sampler(i) for i in range(500)]
    assert scenes[17] == SceneSampler(library.identity_category, cats, 0, config=SamplerConfig(n_backgrounds=5))(17)
    z = np.array([s.z for s in scenes])
    assert z.min() >= 0.9 and z.max() <= 4.2
    u, v = project(np.array([s.x for s in scenes]), np.array([s.y for s in scenes]), z, FOV, 100, 100)
    assert (u > 10).all() and (u < 90).all() and (v > 10).all() and (v < 90).all()
    assert len({s.category for s in scenes}) == len(cats)
    assert {s.background for s in scenes} == set(range(5))
    centred = SceneSampler(library.identity_category, cats, 0, Variability(("mug", "car"), centered=True))
    picked = [centred(i) for i in range(100)]
    assert all(s.x == 0 and s.y == 0 for s in picked)
    assert {cats[s.category] for s in picked} == {"mug", "car"}
    with pytest.raises(ValueError, match="unknown categories"):
        SceneSampler(library.identity_category, cats, 0, Variability(("unicorn",)))


def test_embedded_angles_are_the_authors_by_tdw_quaternion_utils(library, monkeypatch):
    """The embedded camera is the world frame (identity rotation), so the authors' latent is TDW's
    Euler angles of the object's quaternion; checked with the installed tdw package on both poses."""
    from tdw.quaternion_utils import QuaternionUtils

    for pose in ("face-camera", "uniform"):
        sampler = SceneSampler(library.identity_category, library.categories, 9, Variability(pose=pose))
        worst = 0.0
        for i in range(1000):
            s = sampler(i)
            q_rel = QuaternionUtils.multiply(QuaternionUtils.get_inverse(QuaternionUtils.IDENTITY), np.array(s.rotation))
            tdw = np.radians(QuaternionUtils.quaternion_to_euler_angles(q_rel))
            worst = max(worst, float(np.abs(wrap_angle(np.subtract((s.rot_x, s.rot_y, s.rot_z), tdw))).max()))
        assert worst < 1e-9, pose
    monkeypatch.setattr("latentzoo.rendering.sampler.POSE_JITTER_DEG", 0.0)
    still = SceneSampler(library.identity_category, library.categories, 9, Variability(centered=True))(3)
    assert (still.rot_x, still.rot_y, still.rot_z) == pytest.approx((0, np.pi, 0), abs=1e-12)


def _spread(values, keys) -> int:
    counts = [int(np.sum(np.asarray(values) == k)) for k in keys]
    return max(counts) - min(counts)


def test_balance_is_per_category_then_per_model_in_each_block(library):
    cats = library.categories
    ic = np.asarray(library.identity_category)
    n, n_train = 1000, 900
    sampler = SceneSampler(ic, cats, 5, blocks=(0, n_train))
    scenes = [sampler(i) for i in range(n)]
    for lo, hi in ((0, n_train), (n_train, n), (0, 37), (n_train, n_train + 50)):  # splits and their prefixes
        part = scenes[lo:hi]
        assert _spread([s.category for s in part], range(len(cats))) <= 1, (lo, hi)
        for c in range(len(cats)):
            models = np.flatnonzero(ic == c)
            assert _spread([s.identity for s in part if s.category == c], models) <= 1, (lo, hi, c)
    assert all(ic[s.identity] == s.category for s in scenes)
    assert len({tuple(s.category for s in scenes[k:k + 35]) for k in range(0, 350, 35)}) > 1  # no fixed cycle
    # uneven libraries: a category with one model gets as many images as one with many
    uneven = [0] * 25 + [1]
    picked = [SceneSampler(uneven, ["many", "one"], 0)(i).category for i in range(200)]
    assert picked.count(1) == 100
    models = [SceneSampler(uneven, ["many", "one"], 0, Variability(balance="models"))(i).category for i in range(2000)]
    assert 30 < models.count(1) < 130  # the old behaviour: 1/26 of the images
    with pytest.raises(ValueError, match="unknown balance"):
        SceneSampler(uneven, ["many", "one"], 0, Variability(balance="scenes"))


def test_models_per_category_draws_the_first_k_models_of_each_category_evenly():
    # interleaved categories with 4, 3 and 1 models: the first two of each (by library order) are drawn
    ic = [0, 1, 0, 2, 1, 0, 1, 0]
    first_two = {0: {0, 2}, 1: {1, 4}, 2: {3}}
    for balance in ("categories", "models"):
        sampler = SceneSampler(ic, ["a", "b", "c"], 3, Variability(balance=balance, models_per_category=2))
        scenes = [sampler(i) for i in range(600)]
        assert {s.identity for s in scenes} == {0, 1, 2, 3, 4}, balance
        assert all(s.identity in first_two[s.category] for s in scenes)
    balanced = [SceneSampler(ic, ["a", "b", "c"], 3, Variability(models_per_category=2))(i) for i in range(600)]
    assert [sum(s.category == c for s in balanced) for c in range(3)] == [200, 200, 200]
    assert sorted(sum(s.identity == m for s in balanced) for m in (0, 2, 1, 4)) == [100, 100, 100, 100]
    assert SceneSampler(ic, ["a", "b", "c"], 3, Variability(models_per_category=9))(7) == SceneSampler(ic, ["a", "b", "c"], 3)(7)
    assert Variability(models_per_category=2).to_dict()["models_per_category"] == 2
    assert "models_per_category" not in Variability().to_dict()  # plans of renders before the option stay valid
    with pytest.raises(ValueError, match="at least 1"):
        SceneSampler(ic, ["a", "b", "c"], 3, Variability(models_per_category=0))
