"""`latentzoo reproduce` on tiny model folders (snapshots, full and reduced variability, two dataset sizes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from latentzoo.analysis.published import paper_performance_alignment, paper_scores
from latentzoo.analysis.reproduce import variability_label
from latentzoo.cli import main
from latentzoo.fileio import sha256_file
from latentzoo.hub import read_config, save_pretrained
from latentzoo.models.brainscore import score
from latentzoo.models.network import LatentNet

from zoo_helpers import no_network

REGIONS = {"V1": "FreemanZiemba2013public.V1-pls", "V2": "FreemanZiemba2013public.V2-pls",
           "V4": "MajajHong2015public.V4-pls", "IT": "MajajHong2015public.IT-pls",
           "behavior": "Rajalingham2018public-i2n"}
#: Hand-made scores: model -> (V1, V2, V4, IT, behavior) and its test loss.
SCORES = {"d0": ((0.20, 0.10, 0.50, 0.40, 0.05), 0.5), "d0@step-1": ((0.10, 0.05, 0.30, 0.20, 0.01), 0.9),
          "d0@step-2": ((0.15, 0.08, 0.40, 0.30, 0.02), 0.7), "d1": ((0.30, 0.20, 0.60, 0.50, 0.10), 0.4),
          "r2": ((0.22, 0.11, 0.52, 0.41, 0.04), 0.5), "r3": ((0.24, 0.12, 0.53, 0.42, 0.03), 0.5),
          "c4": ((0.25, 0.15, 0.55, 0.45, 0.30), 1.2)}


def test_published_values_load():
    scores = paper_scores().set_index(["arch", "objective"])
    assert len(scores) == 24 and scores.loc[("r18", "distance"), "V1"] == 0.264
    assert scores.loc[("r50", "category"), "output_units"] == 117
    assert paper_performance_alignment().set_index("objective").loc["identity", "behavior"] == 0.984


def test_variability_labels():
    assert variability_label({"categories": None, "centered": False}) == "full"
    assert variability_label({"categories": ["chair"], "centered": False}) == "1 category"
    assert variability_label({"categories": None, "centered": True}) == "centred"
    assert variability_label(None) == "full"
    assert variability_label({"categories": None, "centered": True, "models_per_category": 1}) == \
        "1 model per category, centred"


@pytest.fixture(scope="module")
def repro(tiny_dataset, tmp_path_factory):
    from latentzoo.rendering import render_dataset

    root = tmp_path_factory.mktemp("repro")
    reduced = render_dataset(root / "one-category", images=64, size=32, seed=1, categories=("mug",), shard_size=64,
                             test_fraction=0.25, progress=False)
    full_sha, reduced_sha = (sha256_file(d.root / "dataset.json") for d in (tiny_dataset, reduced))

    def save(name, objective, seed, folder, **fields):
        net = LatentNet.create("r18", objective, n_categories=8, n_identities=8, seed=seed, input_size=32, id=name)
        return save_pretrained(net, folder, seed=seed, metrics={"loss": SCORES[name][1]}, **fields)

    folders = {"d0": save("d0", "distance", 0, root / "d0", dataset_sha256=full_sha),
               "d1": save("d1", "distance", 1, root / "d1", train_images=1000),  # trained on data not given
               "r2": save("r2", "distance", 2, root / "r2", dataset_sha256=reduced_sha),
               "r3": save("r3", "distance", 3, root / "r3", dataset_sha256=reduced_sha),
               "c4": save("c4", "category", 4, root / "c4", dataset_sha256=full_sha)}
    for step in (1, 2):
        save(f"d0@step-{step}", "distance", 10 + step, root / "d0" / "snapshots" / f"step-{step}",
             dataset_sha256=full_sha)
    rows = [{"model": m, "benchmark": REGIONS[r], "score": s}
            for m, (values, _) in SCORES.items() for r, s in zip(REGIONS, values)]
    pd.DataFrame(rows).to_csv(root / "scores.csv", index=False)
    out = root / "out"
    assert main(["reproduce", "--models", *map(str, folders.values()), "--data", str(tiny_dataset.root),
                 str(reduced.root), "--out", str(out), "--benchmarks", "none", "--brainscore-results",
                 str(root / "scores.csv"), "--n-images", "40", "--quiet"]) == 0
    return out


def test_models_and_groups(repro):
    models = pd.read_csv(repro / "models.csv").set_index("name")
    assert len(models) == 7 and models.loc["d0@step-2", "kind"] == "snapshot"
    assert models.loc["d0@step-2", "steps"] == 2 and models.loc["d0@step-2", "parent"] == "d0"
    assert models.loc["r2", "group"] == "distance (1 category)" and models.loc["r2", "variability"] == "1 category"
    assert models.loc["d0", "group"] == models.loc["d1", "group"] == "distance"
    assert models.loc["d0", "train_images"] == 256 and models.loc["d1", "train_images"] == 1000
    assert models.loc["c4", "output_units"] == 8 and models.loc["d0", "performance"] == -0.5


def test_table_c1_c2_means_sds_and_paper_values(repro):
    table = pd.read_csv(repro / "table_c1_c2.csv").set_index("group")
    d = table.loc["distance"]
    v1 = [SCORES["d0"][0][0], SCORES["d1"][0][0]]
    assert d["table"] == "C.2" and d["n"] == 2
    assert d["V1"] == pytest.approx(np.mean(v1)) and d["V1_sd"] == pytest.approx(np.std(v1, ddof=1))
    neural = [np.mean(SCORES[m][0][:4]) for m in ("d0", "d1")]
    assert d["neural_mean"] == pytest.approx(np.mean(neural))
    assert d["V1_paper"] == 0.264 and d["behavior_paper"] == 0.109  # Table C.2
    assert np.isnan(table.loc["distance (1 category)", "V1_paper"])  # the paper has no such row
    fig2 = pd.read_csv(repro / "figure2.csv")
    assert set(fig2["output_units"]) == {1, 8}


def test_table_c3_correlation_across_snapshots_and_seeds(repro):
    c3 = pd.read_csv(repro / "table_c3.csv").set_index(["group", "region"])
    members = ["d0", "d0@step-1", "d0@step-2", "d1"]
    expected = pearsonr([-SCORES[m][1] for m in members], [SCORES[m][0][3] for m in members])
    assert c3.loc[("distance", "IT"), "r"] == pytest.approx(expected.statistic)
    assert c3.loc[("distance", "IT"), "n"] == 4 and c3.loc[("distance", "IT"), "r_paper"] == 0.948
    assert ("category", "IT") not in c3.index  # one model: no correlation
    c2 = pd.read_csv(repro / "figure_c2.csv")
    assert set(c2["group"]) == {"distance"} and set(c2["train_images"]) == {256, 1000}


def test_nontarget_decoding_and_u_test(repro):
    nt = pd.read_csv(repro / "figure5_nontarget.csv")
    assert "z" not in set(nt.loc[nt["group"] == "distance", "target"])
    assert "category" not in set(nt.loc[nt["model"] == "c4", "target"])
    assert "z" in set(nt.loc[nt["model"] == "c4", "target"]) and (nt["model"] == "pixels").any()
    u = pd.read_csv(repro / "figure5_u_test.csv")
    assert set(u["objective"]) == {"distance"} and set(u["reduced"]) == {"1 category"}
    assert (u["n_full"] == 1).all() and (u["n_reduced"] == 2).all() and u["p"].between(0, 1).all()
    row = u[(u["layer"] == "avgpool") & (u["target"] == "x")].iloc[0]
    dec = pd.read_csv(repro / "decoding_paper.csv").set_index(["model", "layer", "target"])["score"]
    assert row["mean_full"] == pytest.approx(dec["d0", "avgpool", "x"], abs=1e-5)  # CSVs keep 6 digits
    reduced = (dec["r2", "avgpool", "x"] + dec["r3", "avgpool", "x"]) / 2
    assert row["mean_reduced"] == pytest.approx(reduced, abs=1e-5)
    groups = pd.read_csv(repro / "cka_groups.csv")
    assert set(groups["group_a"]) == {"distance", "distance (1 category)", "category"}


def test_report_names_every_result(repro):
    html = (repro / "index.html").read_text()
    for title in ("Table C.1 / C.2", "Figure 2:", "Figure 3 / Table C.3", "Figure 4:", "Figure 5 / E.1",
                  "Figure C.2"):
        assert title in html
    assert "Not computed" not in html


def test_bad_input(tmp_path, capsys):
    assert main(["reproduce", "--models", str(tmp_path / "nope"), "--data", str(tmp_path), "--out",
                 str(tmp_path / "o"), "--benchmarks", "none"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_public_benchmarks_unreachable_fall_back_to_spatial_ones(monkeypatch):
    from latentzoo.analysis.reproduce import resolve_benchmarks

    no_network(monkeypatch)
    names, label = resolve_benchmarks(None)
    assert len(names) == 16 and all(n.startswith("latentzoo.") for n in names)
    assert names[:2] == ["latentzoo.Distance-V1", "latentzoo.Translation-V1"]  # region by region
    assert "could not be downloaded" in label and "not the paper's" in label
    assert resolve_benchmarks(["none"])[0] == []


@pytest.fixture
def local_it(tmp_path, monkeypatch):
    """A 60-image local IT benchmark (random responses, 2 repetitions) and Brain-Score caches in tmp_path."""
    import json

    from PIL import Image

    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    d = tmp_path / "it"
    (d / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    stimuli = []
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / "images" / f"{i}.png")
        stimuli.append({"stimulus_id": f"s{i}", "filename": f"images/{i}.png", "object_name": f"o{i % 4}"})
    pd.DataFrame(stimuli).to_csv(d / "stimuli.csv", index=False)
    pd.DataFrame([{"stimulus_id": f"s{i}", "repetition": r, "neuroid_id": f"n{n}", "response": rng.normal()}
                  for i in range(60) for r in range(2) for n in range(8)]).to_csv(d / "responses.csv", index=False)
    (d / "benchmark.json").write_text(json.dumps({"region": "IT", "splits": 2}))
    return d


def test_scores_a_model_and_its_snapshots_on_given_benchmarks(tiny_dataset, local_it, tmp_path, capsys):
    layers = {"V1": "layer1.0.relu", "V2": "layer2.0.relu", "V4": "layer3.0.relu", "IT": "layer4.0.relu"}

    def save(seed, folder, loss, **fields):
        net = LatentNet.create("r18", "distance", n_categories=8, n_identities=8, seed=seed, input_size=32, id="s")
        return save_pretrained(net, folder, metrics={"loss": loss}, **fields)

    folder = save(0, tmp_path / "s", 0.5)  # no layer maps: --layer-map for the model, its own for snapshots
    for step, loss in ((1, 2.0), (2, 1.0)):
        save(step, folder / "snapshots" / f"step-{step}", loss)
    out = tmp_path / "out"
    args = ["reproduce", "--models", str(folder), "--data", str(tiny_dataset.root), "--out", str(out),
            "--benchmarks", f"local:{local_it}", "--quiet"]
    assert main([*args, "--layer-map", *(f"{r}={layer}" for r, layer in layers.items())]) == 0
    for f in (folder, folder / "snapshots" / "step-1", folder / "snapshots" / "step-2"):
        assert read_config(f).extra["layers"] == layers
    names = ("s", "s@step-1", "s@step-2")
    scored = {m: pd.read_csv(next((out / "scores").glob(f"{m}-*")) / "scores.csv") for m in names}
    assert all(len(t) == 1 and t["region"].iloc[0] == "IT" for t in scored.values())
    it = [scored[m]["score"].iloc[0] for m in names]
    c12 = pd.read_csv(out / "table_c1_c2.csv").set_index("group")
    assert c12.loc["distance", "IT"] == pytest.approx(it[0], abs=1e-5) and c12.loc["distance", "n"] == 1
    c3 = pd.read_csv(out / "table_c3.csv").set_index(["group", "region"])
    assert c3.loc[("distance", "IT"), "r"] == pytest.approx(pearsonr([-0.5, -2.0, -1.0], it).statistic, abs=1e-5)
    html = (out / "index.html").read_text()
    assert "local (not the paper" in html and "Figures 4, 5 and E.1: need at least two models" in html

    # --benchmark-images: scored again on the first 40 of the 60 stimuli, as `brainscore score --images 40` scores
    capped = tmp_path / "capped"
    assert main([*args[:6], str(capped), *args[7:], "--benchmark-images", "40"]) == 0
    again = pd.read_csv(next((capped / "scores").glob("s-*-images40")) / "scores.csv").set_index("model")["score"]
    direct = score(str(folder), [f"local:{local_it}"], protocol="paper", images=40)["score"].iloc[0]
    assert again["s"] == pytest.approx(direct, abs=1e-9) and again["s"] != pytest.approx(it[0], abs=1e-6)
    assert "at most 40 stimuli each" in (capped / "index.html").read_text()

    bare = save(3, tmp_path / "bare", 1.0)  # id "s" too: its weights differ, so the scores of "s" are not reused
    # and it has no layer map, nor a V1/V2/V4 benchmark to choose one with
    assert main([*args[:2], str(bare), *args[3:]]) == 1
    assert "no V1/V2/V4 benchmark to choose one with" in capsys.readouterr().err
