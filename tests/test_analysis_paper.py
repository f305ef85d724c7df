"""The paper's analysis protocol, step by step, against sklearn/scipy/numpy computed independently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV
from sklearn.random_projection import GaussianRandomProjection, johnson_lindenstrauss_min_dim
from sklearn.svm import LinearSVC

from latentzoo.analysis.activations import Stimuli, extract
from latentzoo.analysis.cka import centered_gram, cka_from_grams, linear_cka
from latentzoo.analysis.decoding import (PAPER_ALPHAS, gaussian_projection, jl_dim, paper_decode_classes,
                                         paper_decode_continuous, paper_splits)
from latentzoo.analysis.groups import group_similarity, labels_of, parse_groups
from latentzoo.analysis.protocol import trained_units
from latentzoo.cli import main
from latentzoo.errors import UserError
from latentzoo.hub import save_pretrained
from latentzoo.latents import output_layout
from latentzoo.models.network import LatentNet


def test_jl_dimension_is_sklearns_6515_for_2000_images():
    assert jl_dim(2000) == johnson_lindenstrauss_min_dim(2000, eps=0.1) == 6515


def test_gaussian_projection_streams_a_memmap_and_preserves_distances_like_sklearn(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 9000)).astype(np.float32)  # 3 projection blocks
    path = tmp_path / "x.npy"
    np.save(path, x)
    k = int(johnson_lindenstrauss_min_dim(40, eps=0.3))
    ours = gaussian_projection(np.load(path, mmap_mode="r"), k, seed=1)
    assert ours.shape == (40, k)
    np.testing.assert_allclose(ours, gaussian_projection(x, k, seed=1), rtol=1e-5)  # memmap == in memory
    assert not np.allclose(ours, gaussian_projection(x, k, seed=2))

    def ratios(p):
        iu = np.triu_indices(len(x), 1)
        d0 = ((x[:, None] - x[None]) ** 2).sum(-1)[iu]
        return ((p[:, None] - p[None]) ** 2).sum(-1)[iu] / d0

    theirs = GaussianRandomProjection(k, random_state=0).fit_transform(x)
    for r in (ratios(ours), ratios(theirs)):  # the JL guarantee at eps = 0.3
        assert 0.7 < r.min() and r.max() < 1.3
    assert ratios(ours).std() == pytest.approx(ratios(theirs).std(), rel=0.3)  # same distortion spread


def test_paper_splits_are_random_80_20_partitions():
    splits = paper_splits(101, seed=3)
    assert len(splits) == 5
    for train, test in splits:
        assert len(train) == 80 and len(test) == 21
        assert sorted(np.concatenate([train, test])) == list(range(101))
    assert not np.array_equal(splits[0][0], splits[1][0])


def test_ridge_pearson_and_linear_svc_on_a_planted_signal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 50))
    signal = x @ rng.standard_normal(50)
    y = np.column_stack([signal + 0.1 * rng.standard_normal(300), rng.standard_normal(300)])  # planted, noise
    splits = paper_splits(300, seed=0)
    r = paper_decode_continuous(x, y, splits)
    assert r.shape == (5, 2)
    for (train, test), row in zip(splits, r):  # each split, each column against sklearn + scipy directly
        for j in range(2):
            pred = RidgeCV(alphas=PAPER_ALPHAS).fit(x[train], y[train, j]).predict(x[test])
            assert row[j] == pytest.approx(pearsonr(pred, y[test, j]).statistic, abs=1e-9)
    assert r[:, 0].mean() > 0.98 and abs(r[:, 1].mean()) < 0.2

    labels = rng.integers(0, 4, 300)
    x[np.arange(300), labels] += 4.0  # 4 classes, each shifting its own feature
    acc = paper_decode_classes(x, labels, splits)
    for (train, test), a in zip(splits, acc):
        assert a == LinearSVC(C=5e-3, dual=True, random_state=0).fit(x[train], labels[train]).score(x[test], labels[test])
    assert acc.mean() > 0.8  # chance is 0.25
    assert paper_decode_classes(x, rng.integers(0, 4, 300), splits).mean() < 0.4


def test_group_means_and_sds_on_a_known_matrix():
    m = np.array([[1.0, 0.9, 0.8, 0.2, 0.3],
                  [0.9, 1.0, 0.7, 0.4, 0.1],
                  [0.8, 0.7, 1.0, 0.5, 0.6],
                  [0.2, 0.4, 0.5, 1.0, 0.5],
                  [0.3, 0.1, 0.6, 0.5, 1.0]])
    table = group_similarity(m, ["a", "a", "a", "b", "b"]).set_index(["group_a", "group_b"])
    within_a = [0.9, 0.8, 0.7] * 2  # off-diagonal pairs, both orders
    assert table.loc[("a", "a"), "mean"] == pytest.approx(0.8)
    assert table.loc[("a", "a"), "sd"] == pytest.approx(np.std(within_a, ddof=1))
    assert table.loc[("a", "a"), "n"] == 6
    between = [0.2, 0.3, 0.4, 0.1, 0.5, 0.6]
    assert table.loc[("a", "b"), "mean"] == pytest.approx(np.mean(between))
    assert table.loc[("a", "b"), "sd"] == pytest.approx(np.std(between, ddof=1))
    assert table.loc[("b", "a"), "mean"] == table.loc[("a", "b"), "mean"]
    assert table.loc[("b", "b"), "mean"] == 0.5 and table.loc[("b", "b"), "sd"] == 0
    single = group_similarity(m[:3, :3], ["a", "a", "c"]).set_index(["group_a", "group_b"])
    assert np.isnan(single.loc[("c", "c"), "mean"]) and single.loc[("c", "c"), "n"] == 0


def test_group_specs():
    assert labels_of(parse_groups(["d=m1,m2", "r=m3"])) == {"m1": "d", "m2": "d", "m3": "r"}
    with pytest.raises(UserError, match="expected NAME=MODEL1"):
        parse_groups(["nomodels="])
    with pytest.raises(UserError, match="in two groups"):
        labels_of(parse_groups(["a=m1", "b=m1"]))


def test_flattened_streamed_cka_equals_the_hsic_formula(tmp_path):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((30, 4, 5, 5)), rng.standard_normal((30, 60)) ** 2]
    xs.append(xs[0].reshape(30, -1) @ rng.standard_normal((100, 7)))  # related to the first
    np.save(tmp_path / "x0.npy", xs[0])
    grams = [centered_gram(np.load(tmp_path / "x0.npy", mmap_mode="r"), chunk=7)]
    grams += [centered_gram(x, chunk=13) for x in xs[1:]]
    h = np.eye(30) - 1 / 30

    def hsic(a, b):
        ka, kb = a.reshape(30, -1) @ a.reshape(30, -1).T, b.reshape(30, -1) @ b.reshape(30, -1).T
        return np.trace(ka @ h @ kb @ h)

    matrix = cka_from_grams(grams)
    for i in range(3):
        for j in range(3):
            direct = hsic(xs[i], xs[j]) / np.sqrt(hsic(xs[i], xs[i]) * hsic(xs[j], xs[j]))
            assert matrix[i, j] == pytest.approx(direct, abs=1e-12)
    assert matrix[0, 2] == pytest.approx(linear_cka(xs[0], xs[2]), abs=1e-12)


def test_fc_keeps_only_the_trained_units():
    net = LatentNet.create("r18", "distance-rotation", n_categories=8, n_identities=8, input_size=32)
    assert list(trained_units(net)) == list(range(7))
    tasks = ("distance", "rotation")
    net.config.layout = [s for s in output_layout("all") if s.task in tasks]  # the authors' 674-unit head
    assert list(trained_units(net)) == [665, 668, 669, 670, 671, 672, 673]
    assert len(trained_units(LatentNet.create("r18", "untrained", input_size=32))) == 0
    assert len(trained_units(LatentNet.create("r18", "imagenet", input_size=32))) == 1000


@pytest.fixture(scope="module")
def paper_report(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    folders = []
    for objective, seed in (("distance", 0), ("distance", 1), ("category", 2)):
        net = LatentNet.create("r18", objective, n_categories=8, n_identities=8, seed=seed, input_size=32,
                               id=f"tiny-{objective}-{seed}")
        folders.append(save_pretrained(net, root / f"{objective}{seed}"))
    out = root / "out"
    code = main(["analyze", *map(str, folders), "--data", str(tiny_dataset.root), "--out", str(out),
                 "--protocol", "paper", "--group", f"dist={folders[0]},{folders[1]}", "--compare", "dist",
                 "category", "--quiet"])
    assert code == 0
    return out, folders, tiny_dataset


def test_paper_protocol_report(paper_report):
    out, folders, ds = paper_report
    from latentzoo.hub import load_pretrained

    stim = Stimuli.from_dataset(ds.root, "test")
    assert len(stim) == 64  # the protocol's 2,000 images, capped by the split
    acts = [extract(load_pretrained(f), stim, ["layer1.0.relu"], pooling="none", progress=False)["layer1.0.relu"]
            for f in folders]
    assert acts[0].shape[1] == 64 * 8 * 8  # flattened C*H*W at 32 px
    cka = pd.read_csv(out / "cka_paper.csv").set_index(["model_a", "model_b", "layer"])["cka"]
    assert cka["tiny-distance-0", "tiny-category-2", "layer1.0.relu"] == pytest.approx(
        linear_cka(acts[0], acts[2]), abs=1e-6)
    groups = pd.read_csv(out / "cka_groups.csv").set_index(["layer", "group_a", "group_b"])
    assert groups.loc[("layer1.0.relu", "dist", "dist"), "mean"] == pytest.approx(
        linear_cka(acts[0], acts[1]), abs=1e-6)
    assert groups.loc[("layer1.0.relu", "dist", "category"), "mean"] == pytest.approx(
        (linear_cka(acts[0], acts[2]) + linear_cka(acts[1], acts[2])) / 2, abs=1e-6)
    assert sorted(set(groups.index.get_level_values("layer"))) == sorted(
        ["layer1.0.relu", "layer2.0.relu", "layer3.0.relu", "layer4.0.relu", "avgpool"])

    dec = pd.read_csv(out / "decoding_paper.csv")
    assert set(dec["metric"]) == {"accuracy", "pearson_r"}
    assert set(dec.loc[dec["model"] == "pixels", "layer"]) == {"pixels"}
    fc = dec[dec["layer"] == "fc"]
    assert set(fc["model"]) == {"tiny-distance-0", "tiny-distance-1", "tiny-category-2"}
    assert dec["sd"].notna().all() and dec["score"].between(-1, 1).all()
    u = pd.read_csv(out / "decoding_paper_groups.csv")
    assert len(u) and u["p"].between(0, 1).all()
    html = (out / "index.html").read_text()
    for stem in ("cka_group_heatmaps", "cka_group_to_reference", "mds_paper", "decoding_paper"):
        assert f'src="{stem}.png"' in html


def test_paper_decoding_of_models_in_parallel_equals_one_at_a_time(paper_report, tmp_path):
    from latentzoo.analysis.protocol import paper_activations, paper_decoding
    from latentzoo.hub import load_pretrained

    _, folders, ds = paper_report
    named = {f.name: load_pretrained(f) for f in folders}
    stim = Stimuli.from_dataset(ds.root, "test", n=40)
    latents = ds.latents("test").set_index("key").loc[stim.ids].reset_index()
    tables = {}
    for n_jobs in (1, 2):
        cache = tmp_path / f"jobs{n_jobs}"
        acts = paper_activations(named, stim, cache, progress=False)
        tables[n_jobs] = paper_decoding(named, acts, stim, latents, cache, progress=False, n_jobs=n_jobs)
        assert len(list(cache.glob("*/decoding-paper-s0.csv"))) == 4  # three models and the pixels, each cached
    assert set(tables[1]["model"]) == {*named, "pixels"}
    pd.testing.assert_frame_equal(tables[1], tables[2])


def test_paper_protocol_bad_input(paper_report, tmp_path, capsys):
    _, folders, ds = paper_report
    assert main(["analyze", *map(str, folders), "--data", str(ds.root), "--out", str(tmp_path),
                 "--protocol", "paper", "--group", "oops"]) == 1
    assert "expected NAME=MODEL1" in capsys.readouterr().err


def test_mds_is_sklearns_on_the_rows_of_the_similarity_matrix():
    from sklearn.manifold import MDS

    from latentzoo.analysis.mds import mds_embedding

    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 3))
    sim = np.corrcoef(x @ rng.standard_normal((3, 20)))
    theirs = MDS(n_components=2, dissimilarity="euclidean", random_state=0, normalized_stress="auto").fit_transform(sim)
    np.testing.assert_allclose(mds_embedding(sim), theirs, atol=1e-8)
