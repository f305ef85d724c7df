"""The latent schema: layouts, losses' targets, the authors' rotation convention (TDW's own
QuaternionUtils is the oracle), projection."""

import numpy as np
import pytest

from tdw.quaternion_utils import QuaternionUtils

from latentzoo.latents import (ANGLE_LATENTS, OBJECTIVES, Normalisation, camera_relative_euler,
                               decode_outputs, encode_targets, euler_to_matrix, layout_size, look_rotation,
                               matrix_to_euler, matrix_to_quaternion, objective_latents, output_layout,
                               project, quaternion_to_euler, quaternion_to_matrix, wrap_angle)
from latentzoo.rendering.sampler import uniform_quaternion

EXPECTED_UNITS = {"distance": 1, "translation": 2, "rotation": 6, "distance-translation": 3,
                  "distance-rotation": 7, "translation-rotation": 8,
                  "distance-translation-rotation": 9, "category": 117, "identity": 548, "all": 674,
                  "untrained": 0, "imagenet": 0}


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_layout_sizes_match_the_paper(objective):
    assert layout_size(output_layout(objective)) == EXPECTED_UNITS[objective]


def test_all_layout_is_the_authors_674_unit_head():
    slots = {s.task: (s.start, s.stop) for s in output_layout("all")}
    assert slots == {"category": (0, 117), "identity": (117, 665), "distance": (665, 666),
                     "translation": (666, 668), "rotation": (668, 674)}


def test_combination_layout_is_contiguous_in_head_order():
    slots = output_layout("distance-translation-rotation", n_categories=5, n_identities=9)
    assert [(s.task, s.start, s.stop) for s in slots] == [
        ("distance", 0, 1), ("translation", 1, 3), ("rotation", 3, 9)]
    assert objective_latents("translation-rotation") == ("x", "y", "rot_x", "rot_y", "rot_z")


def test_unknown_objective_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown objective 'depth'.*distance"):
        output_layout("depth")


def test_encode_decode_round_trip_in_physical_units():
    rng = np.random.default_rng(0)
    n = 50
    lat = {"x": rng.normal(0, 0.5, n), "y": rng.normal(0, 0.5, n), "z": rng.uniform(1, 4, n),
           "rot_x": rng.uniform(-np.pi, np.pi, n), "rot_y": rng.uniform(-np.pi, np.pi, n),
           "rot_z": rng.uniform(-np.pi / 2, np.pi / 2, n),
           "category": rng.integers(0, 117, n), "identity": rng.integers(0, 548, n)}
    norm = Normalisation.fit(lat)
    layout = output_layout("all")
    targets = encode_targets(lat, layout, norm)
    assert targets["distance"].shape == (n, 1) and targets["rotation"].shape == (n, 6)
    np.testing.assert_allclose(targets["distance"].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(targets["distance"].std(), 1, atol=1e-5)
    np.testing.assert_allclose(targets["rotation"][:, 0], np.sin(lat["rot_x"]), atol=1e-6)
    np.testing.assert_allclose(targets["rotation"][:, 5], np.cos(lat["rot_z"]), atol=1e-6)
    # Build the network output the targets describe, then decode it back.
    out = np.zeros((n, 674), np.float32)
    out[np.arange(n), lat["category"]] = 5
    out[np.arange(n), 117 + lat["identity"]] = 5
    out[:, 665:666] = targets["distance"]
    out[:, 666:668] = targets["translation"]
    out[:, 668:674] = targets["rotation"]
    back = decode_outputs(out, layout, norm)
    for name in ("x", "y", "z", *ANGLE_LATENTS):
        np.testing.assert_allclose(back[name], lat[name], atol=1e-5)
    assert (back["category"] == lat["category"]).all() and (back["identity"] == lat["identity"]).all()


def _tdw_angles(q_cam, q_obj) -> np.ndarray:
    """The authors' rel_rot_euler (degrees in [0, 360)) by TDW's own code, in radians."""
    q_rel = QuaternionUtils.multiply(QuaternionUtils.get_inverse(q_cam), q_obj)
    return np.radians(QuaternionUtils.quaternion_to_euler_angles(q_rel))


def _angle_error(a, b) -> float:
    return float(np.abs(wrap_angle(np.asarray(a) - np.asarray(b))).max())


def test_angles_equal_tdw_quaternion_utils_on_random_poses():
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(2000):
        q_cam, q_obj = uniform_quaternion(*rng.random(3)), uniform_quaternion(*rng.random(3))
        ours = camera_relative_euler(q_cam, q_obj)
        assert all(-np.pi < a <= np.pi for a in ours)
        errors.append(_angle_error(ours, _tdw_angles(q_cam, q_obj)))
        # the same from matrices (what the renderers hold)
        mats = camera_relative_euler(quaternion_to_matrix(q_cam), quaternion_to_matrix(q_obj))
        errors.append(_angle_error(mats, ours))
        # a build's float32, not quite unit quaternions are used as given, like TDW does
        raw_cam, raw_obj = (q.astype(np.float32).astype(np.float64) * 1.001 for q in (q_cam, q_obj))
        errors.append(_angle_error(camera_relative_euler(raw_cam, raw_obj), _tdw_angles(raw_cam, raw_obj)))
    assert max(errors) < 1e-9


def test_tdw_pole_rule_is_reproduced():
    # rot_x beyond TDW's pole threshold (sin > 0.9999): TDW puts the whole turn in the second angle
    rng = np.random.default_rng(3)
    for _ in range(200):
        pitch = np.radians(rng.uniform(89.3, 90.0)) * rng.choice([-1, 1])
        q = matrix_to_quaternion(euler_to_matrix(pitch, rng.uniform(-3, 3), rng.uniform(-3, 3)))
        ours = quaternion_to_euler(q)
        assert abs(abs(ours[0]) - np.pi / 2) < 1e-12 and ours[2] == 0
        assert _angle_error(ours, np.radians(QuaternionUtils.quaternion_to_euler_angles(q))) < 1e-9


def test_facing_the_camera_is_0_pi_0_and_unity_composition():
    # object +z towards the camera, up = camera up: rotated 180 degrees about y
    facing = look_rotation((0, 0, -1))
    np.testing.assert_allclose(matrix_to_euler(facing), (0, np.pi, 0), atol=1e-12)
    # in a world frame: camera at the origin looking along +z, object at (0, 0, 3) looking back at it
    q_cam = matrix_to_quaternion(np.eye(3))
    q_obj = matrix_to_quaternion(look_rotation(np.array([0, 0, 0]) - np.array([0, 0, 3])))
    np.testing.assert_allclose(_tdw_angles(q_cam, q_obj), (0, np.pi, 0), atol=1e-12)
    # Unity order: Ry(rot_y) @ Rx(rot_x) @ Rz(rot_z), i.e. z first, then x, then y
    rx, ry, rz = 0.3, -0.7, 0.4
    c, s = np.cos, np.sin
    Rx = np.array([[1, 0, 0], [0, c(rx), -s(rx)], [0, s(rx), c(rx)]])
    Ry = np.array([[c(ry), 0, s(ry)], [0, 1, 0], [-s(ry), 0, c(ry)]])
    Rz = np.array([[c(rz), -s(rz), 0], [s(rz), c(rz), 0], [0, 0, 1]])
    np.testing.assert_allclose(euler_to_matrix(rx, ry, rz), Ry @ Rx @ Rz, atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(Ry @ Rx @ Rz), (rx, ry, rz), atol=1e-12)


def test_euler_round_trip_away_from_the_poles():
    rng = np.random.default_rng(1)
    for _ in range(500):
        a = (rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi), rng.uniform(-np.pi, np.pi))
        R = euler_to_matrix(*a)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1)
        np.testing.assert_allclose(matrix_to_euler(R), a, atol=1e-9)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-12)


def test_wrap_angle_range_is_half_open():
    assert wrap_angle(np.pi) == pytest.approx(np.pi)
    assert wrap_angle(-np.pi) == pytest.approx(np.pi)
    np.testing.assert_allclose(wrap_angle(np.array([3 * np.pi / 2, -3 * np.pi / 2])),
                               [-np.pi / 2, np.pi / 2])


def test_projection_matches_the_design_formula():
    # 60 deg vertical FOV, 64 x 64: f = 32 / tan(30 deg) = 55.4256
    u, v = project(0.5, 0.25, 2.0, 60, 64, 64)
    f = 32 / np.tan(np.radians(30))
    assert (u, v) == pytest.approx((32 + f * 0.25, 32 - f * 0.125))
    assert project(0, 0, 3, 60, 64, 48) == pytest.approx((32, 24))
