"""The latent schema: layouts, losses' targets, Euler convention, projection."""

import numpy as np
import pytest

from latentzoo.latents import (OBJECTIVES, Normalisation, decode_outputs, encode_targets,
                               euler_to_matrix, layout_size, matrix_to_euler, objective_latents,
                               output_layout, project, wrap_angle)

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
    assert objective_latents("translation-rotation") == ("x", "y", "rxy", "ryz", "rzx")


def test_unknown_objective_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown objective 'depth'.*distance"):
        output_layout("depth")


def test_encode_decode_round_trip_in_physical_units():
    rng = np.random.default_rng(0)
    n = 50
    lat = {"x": rng.normal(0, 0.5, n), "y": rng.normal(0, 0.5, n), "z": rng.uniform(1, 4, n),
           "rxy": rng.uniform(-np.pi, np.pi, n), "ryz": rng.uniform(-np.pi, np.pi, n),
           "rzx": rng.uniform(-np.pi / 2, np.pi / 2, n),
           "category": rng.integers(0, 117, n), "identity": rng.integers(0, 548, n)}
    norm = Normalisation.fit(lat)
    layout = output_layout("all")
    targets = encode_targets(lat, layout, norm)
    assert targets["distance"].shape == (n, 1) and targets["rotation"].shape == (n, 6)
    np.testing.assert_allclose(targets["distance"].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(targets["distance"].std(), 1, atol=1e-5)
    np.testing.assert_allclose(targets["rotation"][:, 0], np.sin(lat["rxy"]), atol=1e-6)
    np.testing.assert_allclose(targets["rotation"][:, 5], np.cos(lat["rzx"]), atol=1e-6)
    # Build the network output the targets describe, then decode it back.
    out = np.zeros((n, 674), np.float32)
    out[np.arange(n), lat["category"]] = 5
    out[np.arange(n), 117 + lat["identity"]] = 5
    out[:, 665:666] = targets["distance"]
    out[:, 666:668] = targets["translation"]
    out[:, 668:674] = targets["rotation"]
    back = decode_outputs(out, layout, norm)
    for name in ("x", "y", "z", "rxy", "ryz", "rzx"):
        np.testing.assert_allclose(back[name], lat[name], atol=1e-5)
    assert (back["category"] == lat["category"]).all() and (back["identity"] == lat["identity"]).all()


def test_euler_worked_example_from_the_docstring():
    R = euler_to_matrix(rxy=np.pi / 2, ryz=0, rzx=0)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(R), (np.pi / 2, 0, 0), atol=1e-12)
    # ryz turns about x: +y goes to +z; rzx turns about y: +z goes to +x.
    np.testing.assert_allclose(euler_to_matrix(0, np.pi / 2, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(euler_to_matrix(0, 0, np.pi / 2) @ [0, 0, 1], [1, 0, 0], atol=1e-12)


def test_euler_round_trip_and_composition_order():
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = (rng.uniform(-np.pi, np.pi), rng.uniform(-np.pi, np.pi), rng.uniform(-1.5, 1.5))
        R = euler_to_matrix(*a)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1)
        np.testing.assert_allclose(matrix_to_euler(R), a, atol=1e-9)
    rxy, ryz, rzx = 0.3, -0.7, 0.4
    c, s = np.cos, np.sin
    Rx = np.array([[1, 0, 0], [0, c(ryz), -s(ryz)], [0, s(ryz), c(ryz)]])
    Ry = np.array([[c(rzx), 0, s(rzx)], [0, 1, 0], [-s(rzx), 0, c(rzx)]])
    Rz = np.array([[c(rxy), -s(rxy), 0], [s(rxy), c(rxy), 0], [0, 0, 1]])
    np.testing.assert_allclose(euler_to_matrix(rxy, ryz, rzx), Rz @ Ry @ Rx, atol=1e-12)


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
