"""Procedural library, backgrounds, the embedded backend's drawing options, contact sheets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latentzoo.cli import main
from latentzoo.latents import project
from latentzoo.rendering import RenderSettings, make_backend
from latentzoo.rendering.backgrounds import UNIFORM_COLOR, load_backgrounds, procedural_texture
from latentzoo.rendering.contact import contact_sheet
from latentzoo.rendering.libraries import get_library
from latentzoo.rendering.libraries.procedural import ProceduralLibrary
from latentzoo.rendering.sampler import SamplerConfig, SceneSampler


def test_procedural_library_size_and_normalisation():
    lib = get_library("procedural")
    assert len(lib.categories) >= 30
    counts = np.bincount(lib.identity_category)
    assert len(counts) == len(lib.categories) and counts.min() >= 5
    assert len(lib.identities) == len(set(lib.identities))
    for identity in range(0, len(lib.identities), 7):
        mesh = lib.mesh(identity)
        lo, hi = mesh.positions.min(0), mesh.positions.max(0)
        assert np.isclose((hi - lo).max(), 1.0, atol=1e-5) and np.allclose((hi + lo) / 2, 0, atol=1e-5)
        assert mesh.faces.max() < len(mesh.positions) and mesh.colors.shape == mesh.positions.shape
        assert np.isfinite(mesh.normals).all() and 0 <= mesh.colors.min() and mesh.colors.max() <= 1


def test_procedural_meshes_are_deterministic_and_identities_differ():
    a, b = ProceduralLibrary(), ProceduralLibrary()
    for identity in (0, 13, 100):
        assert np.array_equal(a.mesh(identity).positions, b.mesh(identity).positions)
        assert np.array_equal(a.mesh(identity).colors, b.mesh(identity).colors)
    for category in range(len(a.categories)):
        ids = [i for i, c in enumerate(a.identity_category) if c == category]
        shapes = {(len(a.mesh(i).positions), round(float(a.mesh(i).positions.std()), 4),
                   round(float(a.mesh(i).colors.mean()), 4)) for i in ids}
        assert len(shapes) == len(ids), a.categories[category]


def test_background_sets():
    procedural = load_backgrounds("procedural")
    assert len(procedural) == 32
    first = [procedural[i] for i in range(5)]  # one of each kind of texture
    assert len({t.tobytes() for t in first}) == 5 and all(t.dtype == np.uint8 and t.shape == (512, 512, 3) for t in first)
    assert np.array_equal(procedural[3], procedural_texture(3)) and procedural[-1] is procedural[31]
    photos = load_backgrounds("photos")
    assert len(photos) >= 8 and all(p.shape == (512, 512, 3) for p in photos)
    (uniform,) = load_backgrounds("none")
    assert (uniform == UNIFORM_COLOR).all()


@pytest.fixture(scope="module")
def scenes():
    lib = get_library("procedural")
    return SceneSampler(lib.identity_category, lib.categories, 2, config=SamplerConfig(n_backgrounds=32))


def test_uniform_background_and_mask(scenes):
    backend = make_backend("embedded", RenderSettings(size=64, fov_deg=60.0, backgrounds="none", msaa=0))
    for i in range(20):
        r = backend.render(scenes(i))
        assert r.rgb.shape == (64, 64, 3) and r.mask.shape == (64, 64) and r.mask.any()
        assert (r.rgb[~r.mask] == UNIFORM_COLOR).all()
        assert r.latents == scenes(i).latents()
    backend.close()


def test_msaa_smooths_edges_without_moving_the_object(scenes):
    sharp = make_backend("embedded", RenderSettings(size=96, fov_deg=60.0, backgrounds="none", msaa=0))
    smooth = make_backend("embedded", RenderSettings(size=96, fov_deg=60.0, backgrounds="none", msaa=4))
    blended = []
    for i in range(10):
        scene = scenes(i)
        a, b = sharp.render(scene), smooth.render(scene)
        assert (a.mask ^ b.mask).sum() < 0.1 * a.mask.sum() + 10
        grey = lambda rgb: np.abs(rgb.astype(int) - UNIFORM_COLOR).sum(-1)  # noqa: E731
        edge = a.mask ^ np.roll(a.mask, 1, axis=1)
        blended.append(((grey(b.rgb) > 0) & (grey(b.rgb) < grey(a.rgb)) & edge).sum())
    assert sum(blended) > 0
    sharp.close()
    smooth.close()


def test_contact_sheet_marks_projected_centres(tiny_dataset, tmp_path):
    out = contact_sheet(tiny_dataset, tmp_path / "sheet.png", n=16, columns=8, cell=100)
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert sheet.shape[1] == 800 and sheet.shape[0] > 200
    row = tiny_dataset.latents("test").iloc[0]
    u, v = project(row["x"], row["y"], row["z"], 60.0, 64, 64)
    r, g, b = sheet[int(v * 100 / 64), int(u * 100 / 64)]
    assert r > 200 and g < 60 and b < 60  # the red cross sits on the projected object centre


def test_show_and_assets_commands(tiny_dataset, tmp_path, capsys):
    assert main(["show", str(tiny_dataset.root), "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size[0] > 0
    assert main(["assets"]) == 0
    out = capsys.readouterr().out
    assert "library procedural: 35 categories, 210 identities" in out and "backgrounds:" in out

