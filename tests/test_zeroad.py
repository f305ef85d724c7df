"""The 0 A.D. library on synthetic game data: PMD/DDS/actor readers, decimation, import, cache, errors.

No 0ad-data is needed: each test writes a tiny mod tree (PMD meshes, DDS/PNG textures, actor and
variant XML, part of it inside a .zip like the real ``public.zip``) into tmp_path.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from latentzoo.errors import UserError
from latentzoo.rendering.libraries import pmd as pmdlib
from latentzoo.rendering.libraries import zeroad


def pmd_bytes(positions, faces, uvs, normals=None, version=4, props=()):
    """A PMD file (versions 3/4) with one UV set, no bones and ``props`` = [(name, xyz)]."""
    n = len(positions)
    normals = np.tile([0.0, 1.0, 0.0], (n, 1)) if normals is None else normals
    vertex = np.zeros(n, [("pos", "<f4", 3), ("normal", "<f4", 3), ("uv", "<f4", (1, 2)),
                          ("bones", "u1", 4), ("weights", "<f4", 4)])
    vertex["pos"], vertex["normal"], vertex["uv"][:, 0] = positions, normals, uvs
    vertex["bones"] = 0xFF
    body = struct.pack("<I", n) + (struct.pack("<I", 1) if version >= 4 else b"") + vertex.tobytes()
    body += struct.pack("<I", len(faces)) + np.asarray(faces, "<u2").tobytes() + struct.pack("<I", 0)
    body += struct.pack("<I", len(props))
    for name, xyz in props:
        body += struct.pack("<I", len(name)) + name.encode() + struct.pack("<7f", *xyz, 0, 0, 0, 1) + b"\xff"
    return b"PSMD" + struct.pack("<II", version, len(body)) + body


def uv_sphere(rings=32, segments=64, radii=(1.0, 2.0, 0.5)):
    """An ellipsoid with a UV seam (the first and last column duplicate their positions)."""
    theta = np.linspace(0, np.pi, rings + 1)
    phi = np.linspace(0, 2 * np.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    pos = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3) * radii
    uvs = np.stack([p / (2 * np.pi), t / np.pi], -1).reshape(-1, 2)
    i = np.arange(rings)[:, None] * (segments + 1) + np.arange(segments)[None]
    quads = np.stack([i, i + segments + 1, i + 1, i + 1, i + segments + 1, i + segments + 2], -1).reshape(-1, 3)
    return pos.astype(np.float32), quads, uvs.astype(np.float32)


def image_bytes(rgba: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "DDS":
        Image.fromarray(rgba).save(buf, "DDS", pixel_format="DXT5")
    else:
        Image.fromarray(rgba).save(buf, "PNG")
    return buf.getvalue()


ACTOR = """<?xml version="1.0" encoding="utf-8"?>
<actor version="1">
  <group>
    <variant frequency="1" name="round"><mesh>test/sphere.dae</mesh></variant>
    <variant frequency="1" name="boxy"><mesh>test/box.dae</mesh></variant>
  </group>
  <group>
    <variant file="test/red.xml" frequency="1" name="red"/>
    <variant name="death"><textures><texture file="test/unused.png" name="baseTex"/></textures></variant>
  </group>
</actor>"""
VARIANT = """<variant name="red"><textures>
  <texture file="test/red.png" name="baseTex"/><texture file="test/red_norm.png" name="normTex"/>
</textures></variant>"""
SINGLE = """<actor version="1"><group><variant><mesh>test/box.dae</mesh>
  <textures><texture file="test/stripes.dds" name="baseTex"/></textures>
  <props><prop actor="props/cap.xml" attachpoint="top"/><prop actor="props/decals/dirt.xml" attachpoint="root"/>
  </props></variant></group></actor>"""
CAP = """<actor version="1"><group><variant><mesh>test/cap.dae</mesh>
  <textures><texture file="test/red.png" name="baseTex"/></textures></variant></group></actor>"""
DIRT = """<actor version="1"><group><variant><mesh>test/box.dae</mesh></variant></group></actor>"""
BAD = "<actor><group><variant>"
BOX = np.array([[x, y, z] for x in (0, 4) for y in (0, 1) for z in (0, 2)], np.float32)
BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


@pytest.fixture
def source(tmp_path):
    """A mod tree: actors + variants + the sphere mesh in public.zip, the rest as loose files."""
    root = tmp_path / "0ad" / "mods" / "public"
    sphere = uv_sphere()
    red = np.zeros((32, 64, 4), np.uint8)
    red[..., 0], red[..., 3] = 200, 255
    stripes = np.zeros((16, 16, 4), np.uint8)
    stripes[:, ::2, 1], stripes[..., 3] = 255, 255
    stripes[:8, :, 3] = 0  # a transparent half, like foliage cut-outs
    terrain = (np.random.default_rng(0).random((64, 64, 4)) * 255).astype(np.uint8)
    flat = np.full((40, 40, 4), 255, np.uint8)
    flat[..., 2] = 0  # a yellow swatch: uniform, though its channels differ
    root.mkdir(parents=True)
    with zipfile.ZipFile(root / "public.zip", "w") as z:
        z.writestr("art/actors/fauna/ball.xml", ACTOR)
        z.writestr("art/actors/fauna/brick.xml", SINGLE)
        z.writestr("art/actors/fauna/broken.xml", BAD)
        z.writestr("art/actors/props/cap.xml", CAP)
        z.writestr("art/actors/props/decals/dirt.xml", DIRT)
        z.writestr("art/variants/test/red.xml", VARIANT)
        z.writestr("art/meshes/test/sphere.dae.cached.pmd", pmd_bytes(*sphere))
        z.writestr("art/textures/skins/test/red.png.cached.dds", image_bytes(red, "DDS"))
    loose = {
        "art/meshes/test/box.pmd": pmd_bytes(BOX, BOX_FACES, BOX[:, :2] / 4, version=3, props=[("top", (2, 1, 1))]),
        "art/meshes/test/cap.pmd": pmd_bytes(BOX / [4, 1, 2] - [0.5, 0, 0.5], BOX_FACES, BOX[:, :2] / 4),
        "art/textures/skins/test/stripes.dds": image_bytes(stripes, "DDS"),
        "art/textures/terrain/types/temperate/grass.png": image_bytes(terrain, "PNG"),
        "art/textures/terrain/types/yellow.png": image_bytes(flat, "PNG"),
        "art/textures/terrain/types/tiny.png": image_bytes(terrain[:2, :2], "PNG"),
        "art/textures/terrain/types/grass_norm.png": image_bytes(terrain, "PNG"),
        "art/textures/skies/clear/front.dds": image_bytes(terrain, "DDS"),
        "art/textures/skies/clear/top.dds": image_bytes(terrain, "DDS"),
    }
    for name, data in loose.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    categories = tmp_path / "categories.yaml"
    categories.write_text("max_identities: 5\ncategories:\n  ball: [fauna/ball.xml, fauna/broken.xml]\n"
                          "  brick: [fauna/brick.xml]\n  ghost: [fauna/nothing*.xml]\n")
    return tmp_path / "0ad", categories


def test_read_pmd_versions_and_props():
    pos, faces, uvs = uv_sphere(4, 6)
    for version in (3, 4):
        m = pmdlib.read_pmd(pmd_bytes(pos, faces, uvs, version=version, props=[("sail", (1, 2, 3))]))
        assert m.version == version and m.positions.shape == (35, 3) and m.faces.shape == (48, 3)
        np.testing.assert_array_equal(m.positions, pos)
        np.testing.assert_array_equal(m.faces, faces)
        np.testing.assert_array_equal(m.uvs, uvs)
        np.testing.assert_array_equal(m.prop_points["sail"][0], [1, 2, 3])
        assert m.prop_points["sail"][2] == 0xFF and m.rest_states.shape == (0, 7)


def test_read_pmd_rejects_bad_files():
    good = pmd_bytes(BOX, BOX_FACES, BOX[:, :2])
    with pytest.raises(ValueError, match="magic"):
        pmdlib.read_pmd(b"XXXX" + good[4:])
    with pytest.raises(ValueError, match="truncated"):
        pmdlib.read_pmd(good[:-5])
    with pytest.raises(ValueError, match="version 2"):
        pmdlib.read_pmd(good[:4] + struct.pack("<I", 2) + good[8:])


def test_decode_image_dxt_and_png():
    rgba = np.zeros((8, 12, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 255
    for fmt in ("DDS", "PNG"):
        out = pmdlib.decode_image(image_bytes(rgba, fmt))
        assert out.shape == (8, 12, 4) and out.dtype == np.uint8
        assert abs(int(out[..., 2].mean()) - 255) <= 4 and out[..., 0].max() <= 4


def test_actor_looks_follow_groups_frequencies_and_variant_files():
    variants = {"test/red.xml": VARIANT}
    looks = pmdlib.actor_looks(ACTOR, variants.get)
    # The 'death' state variant has no frequency next to a weighted one: never picked.
    assert looks == [pmdlib.Look("test/sphere.dae", "test/red.png"), pmdlib.Look("test/box.dae", "test/red.png")]
    assert pmdlib.actor_looks(SINGLE, variants.get) == [pmdlib.Look("test/box.dae", "test/stripes.dds")]
    actors = {"props/cap.xml": CAP, "props/decals/dirt.xml": DIRT}
    # With actors to read, props resolve to their first look; decals are effects, not shape.
    cap = pmdlib.Look("test/cap.dae", "test/red.png")
    assert pmdlib.actor_looks(SINGLE, variants.get, actors.get) == [
        pmdlib.Look("test/box.dae", "test/stripes.dds", (("top", cap),))]


def test_prop_transform_composes_bone_rest_pose():
    quarter_turn_z = [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)]
    model = pmdlib.PMD(4, BOX, BOX, BOX[:, :2], BOX_FACES, np.array([[1, 0, 0, *quarter_turn_z]], np.float32),
                       {"hand": (np.array([1.0, 0, 0]), np.array([0, 0, 0, 1.0]), 0),
                        "hat": (np.array([0, 2.0, 0]), np.array([0, 0, 0, 1.0]), 0xFF)})
    np.testing.assert_allclose(pmdlib.prop_transform(model, "hand") @ [0, 0, 0, 1], [1, 1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(pmdlib.prop_transform(model, "hat") @ [1, 0, 0, 1], [1, 2, 0, 1], atol=1e-6)
    np.testing.assert_array_equal(pmdlib.prop_transform(model, "root"), np.eye(4))
    assert pmdlib.prop_transform(model, "tail") is None


def test_decimate_reaches_target_and_keeps_bbox_and_uvs():
    pos, faces, uvs = uv_sphere(48, 96)  # 9216 faces
    normals = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    p, f, u, n = pmdlib.decimate(pos, faces, uvs, normals, 1000)
    assert 900 <= len(f) <= 1000 < len(faces)
    assert f.max() < len(p) and u.shape == (len(p), 2) and n.shape == (len(p), 3)
    np.testing.assert_allclose(p.min(0), pos.min(0), atol=0.05)
    np.testing.assert_allclose(p.max(0), pos.max(0), atol=0.05)
    # Every UV comes from an input vertex near the output vertex (no smearing across the seam).
    corner_uv = u[f].reshape(-1, 2)
    assert np.ptp(u[f][..., 0], axis=1).max() < 0.5  # no triangle spans the u = 0/1 seam
    assert set(map(tuple, corner_uv.round(6))) <= set(map(tuple, uvs.round(6)))
    same = pmdlib.decimate(pos, faces, uvs, normals, 10_000)
    assert same[1] is faces  # within budget: untouched


def test_decimate_keeps_open_sheets_whole():
    """A sail-like open sheet keeps its outline (and so its area) while its interior collapses."""
    n = 40
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, n + 1), np.linspace(-1, 1, n + 1), indexing="ij"), -1).reshape(-1, 2)
    pos = np.column_stack([grid[:, 0], 0.05 * np.sin(3 * grid[:, 0]), grid[:, 1]]).astype(np.float32)
    i = (np.arange(n)[:, None] * (n + 1) + np.arange(n)[None]).ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + n + 1], 1), np.stack([i + 1, i + n + 2, i + n + 1], 1)])
    p, f, _, _ = pmdlib.decimate(pos, faces, grid.astype(np.float32), np.tile([0, 1, 0], (len(pos), 1)), 400)

    def area(points, tris):
        return 0.5 * np.linalg.norm(np.cross(points[tris[:, 1]] - points[tris[:, 0]],
                                             points[tris[:, 2]] - points[tris[:, 0]]), axis=1).sum()

    assert len(f) <= 800 < len(faces)
    assert area(p, f) == pytest.approx(area(pos, faces), rel=1e-3)  # collapsing the border loses ~0.5%


def test_normalise_centres_and_scales_longest_side():
    out = pmdlib.normalise(BOX * 3 + 7)
    np.testing.assert_allclose(out.max(0) - out.min(0), [1, 0.25, 0.5], atol=1e-6)
    np.testing.assert_allclose((out.max(0) + out.min(0)) / 2, 0, atol=1e-6)
    with pytest.raises(ValueError):
        pmdlib.normalise(np.zeros((4, 3)))


def test_import_builds_cache_and_library(source, tmp_path):
    src, categories = source
    cache = tmp_path / "cache"
    report = zeroad.import_0ad(src, cache, categories, target_faces=800, progress=False)
    assert (report.categories, report.identities) == (2, 3)  # 'ghost' has no actor; sphere+box, box+stripes
    assert report.faces_before == 4096 + 12 + 12 + 12 and report.faces_after <= 800 + 12 + 24
    assert [s[0] for s in report.skipped] == ["art/actors/fauna/broken.xml"]
    index = json.loads((cache / "index.json").read_text())
    assert index["categories"] == ["ball", "brick"]
    assert "CC-BY-SA-3.0" in (cache / "ATTRIBUTION").read_text()

    lib = zeroad.ZeroADLibrary(cache)
    assert lib.name == "0ad" and "Wildfire Games" in lib.attribution
    assert lib.identities == ["ball/ball", "ball/ball-2", "brick/brick"]
    assert lib.identity_category == [0, 0, 1]
    sphere, box, brick = (lib.mesh(i) for i in range(3))
    assert 700 <= len(sphere.faces) <= 800  # 4096 faces decimated to the budget
    assert (len(box.positions), len(box.faces)) == (8, 12)  # small meshes stay as they are
    for m in (sphere, box, brick):
        extent = m.positions.max(0) - m.positions.min(0)
        assert extent.max() == pytest.approx(1, abs=1e-6)
        np.testing.assert_allclose((m.positions.max(0) + m.positions.min(0)) / 2, 0, atol=1e-6)
        assert m.texture.dtype == np.uint8 and m.texture.ndim == 3 and m.texture.shape[2] == 3
        assert m.uvs.shape == (len(m.positions), 2) and m.normals.shape == m.positions.shape
    np.testing.assert_allclose(box.positions.max(0) - box.positions.min(0), [1, 0.25, 0.5], atol=1e-6)
    # The brick carries its cap (a 1 x 1 x 1 prop on its top point): 4 x 2 x 2, 24 faces, and an
    # atlas of its stripes (resized to the cap texture's width, 64) above the cap's red texture.
    assert len(brick.faces) == 24
    np.testing.assert_allclose(brick.positions.max(0) - brick.positions.min(0), [1, 0.5, 0.5], atol=1e-6)
    assert brick.texture.shape == (96, 64, 3)
    cap_corners = brick.faces[12:].ravel()
    assert brick.uvs[cap_corners, 1].min() >= 64 / 96 - 1e-6 and brick.uvs[brick.faces[:12].ravel(), 1].max() <= 64 / 96
    assert sphere.texture.shape == (32, 64, 3) and abs(int(sphere.texture[..., 0].mean()) - 200) <= 8  # DXT5 quantises to 5-6 bits
    # Transparent texels take the mean opaque colour (green stripes on black -> ~half green).
    assert abs(int(brick.texture[:32, :, 1].mean()) - int(brick.texture[32:64, :, 1].mean())) <= 8

    backgrounds = zeroad.background_images(cache)
    # grass + sky front; not the normal map, the flat swatch or the sky top.
    assert [p.name for p in backgrounds] == ["skies_clear_front.jpg", "terrain_types_temperate_grass.jpg"]
    assert Image.open(backgrounds[0]).mode == "RGB"


def test_import_resumes_without_rewriting(source, tmp_path):
    src, categories = source
    cache = tmp_path / "cache"
    zeroad.import_0ad(src, cache, categories, target_faces=800, progress=False)
    files = sorted(p for p in cache.rglob("*") if p.is_file() and p.name not in ("index.json", "ATTRIBUTION"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    lost = cache / "meshes" / "ball__ball-2.npz"
    lost.unlink()
    report = zeroad.import_0ad(src, cache, categories, target_faces=800, progress=False)
    assert report.identities == 3 and lost.exists()
    assert all(p.stat().st_mtime_ns == stamps[p] for p in files if p != lost)
    assert not list(cache.rglob("*.tmp"))


def test_missing_cache_and_source_give_one_clear_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError) as e:
        zeroad.ZeroADLibrary(tmp_path / "nothing")
    assert "latentzoo assets import 0ad" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="not a folder"):
        zeroad.import_0ad(tmp_path / "no_such_dir", tmp_path / "cache", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no 0 A.D. actors"):
        zeroad.import_0ad(tmp_path / "empty", tmp_path / "cache", progress=False)

    from latentzoo.cli import main
    from latentzoo.rendering.libraries import get_library

    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "lz"))
    get_library.cache_clear()
    code = main(["render", "--out", str(tmp_path / "ds"), "--images", "4", "--size", "32",
                 "--library", "0ad", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "latentzoo assets import 0ad" in err


def test_cli_import_then_render(source, tmp_path, monkeypatch, capsys):
    from latentzoo.cli import main
    from latentzoo.rendering.libraries import get_library

    src, categories = source
    monkeypatch.setenv("LATENTZOO_CACHE", str(tmp_path / "lz"))
    code = main(["assets", "import", "0ad", "--source", str(src), "--categories", str(categories),
                 "--faces", "800", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "2 categories, 3 identities" in out
    assert (tmp_path / "lz" / "0ad" / "index.json").is_file()
    get_library.cache_clear()
    try:
        code = main(["render", "--out", str(tmp_path / "ds"), "--images", "8", "--size", "32",
                     "--library", "0ad", "--backgrounds", "0ad", "--shard-size", "8", "--quiet"])
        assert code == 0
        meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
        assert "Wildfire Games" in json.dumps(meta)
    finally:
        get_library.cache_clear()
