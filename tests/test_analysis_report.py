"""The whole `latentzoo analyze` report on two tiny models and the tiny rendered dataset."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from latentzoo.analysis.activations import Stimuli, extract
from latentzoo.analysis.cka import linear_cka
from latentzoo.cli import main
from latentzoo.hub import save_pretrained
from latentzoo.models.network import LatentNet

LAYERS = {"V1": "layer1.0.relu", "V2": "layer2.0.relu", "V4": "layer3.0.relu", "IT": "layer4.0.relu",
          "behavior": "avgpool"}
COMPARED = ["layer1.0.relu", "layer2.0.relu", "avgpool", "fc"]
pytestmark = pytest.mark.slow  # the module's report takes 15-60 s on 2 shared cores


@pytest.fixture(scope="module")
def report(tiny_dataset, tmp_path_factory):
    """Two random-init r18 models (different objectives and seeds) saved as folders, a Brain-Score
    results CSV for them, and the report the CLI writes."""
    root = tmp_path_factory.mktemp("report")
    folders = []
    for objective, seed, loss in (("distance", 0, 0.8), ("translation", 1, 0.5)):
        net = LatentNet.create("r18", objective, n_categories=8, n_identities=8, seed=seed, input_size=32,
                               id=f"tiny-{objective}")
        folders.append(save_pretrained(net, root / objective, metrics={"loss": loss, "performance": -loss},
                                       layers=LAYERS))
    pd.DataFrame({"model": ["tiny-distance", "tiny-translation"] * 2,
                  "benchmark": ["MajajHong2015public.IT-pls"] * 2 + ["FreemanZiemba2013public.V1-pls"] * 2,
                  "score": [0.3, 0.4, 0.2, 0.1]}).to_csv(root / "scores.csv", index=False)
    out = root / "out"
    code = main(["analyze", *map(str, folders), "--data", str(tiny_dataset.root), "--out", str(out),
                 "--n-images", "60", "--layers", *COMPARED, "--brainscore-results", str(root / "scores.csv"),
                 "--quiet"])
    assert code == 0
    return out, folders, tiny_dataset


def test_similarity_table_matches_direct_cka(report):
    out, folders, ds = report
    table = pd.read_csv(out / "similarity.csv")
    assert list(dict.fromkeys(table["layer"])) == COMPARED
    assert len(table) == 2 * 2 * len(COMPARED)
    assert len(list((out / "cache").rglob("*.npy"))) == 2 * len(COMPARED)  # reruns reuse these
    same = table[table["model_a"] == table["model_b"]]
    np.testing.assert_allclose(same[["cka", "cka_debiased"]], 1.0, atol=1e-9)
    pivot = table.set_index(["model_a", "model_b", "layer"])["cka"]
    assert pivot["tiny-distance", "tiny-translation", "avgpool"] == pytest.approx(
        pivot["tiny-translation", "tiny-distance", "avgpool"])
    from latentzoo.hub import load_pretrained

    stim = Stimuli.from_dataset(ds.root, "test", n=60)
    acts = [extract(load_pretrained(f), stim, ["layer2.0.relu"], progress=False)["layer2.0.relu"] for f in folders]
    assert pivot["tiny-distance", "tiny-translation", "layer2.0.relu"] == pytest.approx(
        linear_cka(*acts), abs=1e-5)
    assert 0.5 < linear_cka(*acts) < 1.0  # random nets on the same images: similar, not identical


def test_decoding_and_alignment_tables(report):
    out, _, ds = report
    dec = pd.read_csv(out / "decoding.csv")
    # identity is skipped: the tiny dataset's 48 identities in 60 images leave under 2 images per class
    targets = ["x", "y", "z", "sin_rot_x", "cos_rot_x", "sin_rot_y", "cos_rot_y", "sin_rot_z", "cos_rot_z", "category"]
    assert list(dict.fromkeys(dec["target"])) == targets
    assert len(dec) == 2 * len(COMPARED) * len(targets)
    acc = dec[dec["metric"] == "accuracy"]["score"]
    assert acc.between(0, 1).all()
    assert (dec[dec["metric"] == "r2"]["score"] <= 1).all()
    corr = pd.read_csv(out / "performance_alignment.csv").set_index("region")
    assert corr.loc["IT", "n"] == 2 and np.isnan(corr.loc["IT", "r"])  # r needs 3+ models
    bs = pd.read_csv(out / "brainscore.csv")
    assert bs.set_index(["model", "region"])["performance"]["tiny-translation", "IT"] == -0.5
    assign = pd.read_csv(out / "layer_assignment.csv")
    assert set(assign["layer"]) == set(LAYERS.values()) and assign["depth"].notna().all()
    dims = pd.read_csv(out / "effective_dimensionality.csv")
    assert (dims["effective_dimensionality"] >= 1).all()
    assert len(pd.read_csv(out / "mds.csv")) == 2 * len(COMPARED)


def test_every_figure_exists_and_is_a_valid_image(report):
    out = report[0]
    stems = ["cka_heatmaps", "cka_debiased_heatmaps", "similarity_to_reference", "mds", "decoding",
             "alignment", "layer_assignment"]
    html = (out / "index.html").read_text()
    for stem in stems:
        with Image.open(out / f"{stem}.png") as im:
            im.verify()
        with Image.open(out / f"{stem}.png") as im:
            assert im.size[0] > 300 and im.size[1] > 150
        assert ET.parse(out / f"{stem}.svg").getroot().tag.endswith("svg")
        assert f'src="{stem}.png"' in html and f'href="{stem}.svg"' in html
    for csv in out.glob("*.csv"):
        assert f'href="{csv.name}"' in html


def test_bad_input_is_one_clear_error(report, tmp_path, capsys):
    _, folders, ds = report
    assert main(["analyze", str(folders[0]), "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "needs at least two models" in capsys.readouterr().err
    assert main(["analyze", *map(str, folders), "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dataset.json is missing" in err
    assert main(["analyze", *map(str, folders), "--data", str(ds.root), "--out", str(tmp_path),
                 "--layers", "nope"]) == 1
    assert "layer 'nope'" in capsys.readouterr().err
