"""Similarity, RSA, decoding, MDS and alignment functions on data with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from latentzoo.analysis.alignment import layer_assignment, load_results, performance_alignment, region_of
from latentzoo.analysis.cka import (MinibatchCKA, cka, cka_matrix, gram_linear, linear_cka, minibatch_cka,
                                    rbf_cka)
from latentzoo.analysis.decoding import compare_groups, decode, decoding_table, decoding_targets
from latentzoo.analysis.mds import mds_embedding, row_distances
from latentzoo.analysis.rsa import compare_rdms, effective_dimensionality, encoding_rsa, rdm, rsa
from latentzoo.errors import UserError


@pytest.fixture
def kornblith():
    """The data of Kornblith's CKA demo notebook."""
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def test_cka_matches_kornblith_reference_values(kornblith):
    x, y = kornblith
    assert linear_cka(x, y) == pytest.approx(0.55761, abs=1e-5)
    assert cka(gram_linear(x), gram_linear(y)) == pytest.approx(0.55761, abs=1e-5)
    assert rbf_cka(x, y, threshold=0.5) == pytest.approx(0.65483, abs=1e-5)
    assert linear_cka(x, y, debiased=True) == pytest.approx(0.51346, abs=1e-5)


@pytest.mark.parametrize("metric", [linear_cka, lambda a, b: linear_cka(a, b, debiased=True),
                                    lambda a, b: rbf_cka(a, b, 0.5)])
def test_cka_of_a_representation_with_itself_is_one(kornblith, metric):
    x, _ = kornblith
    assert metric(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariances(kornblith):
    x, y = kornblith
    q = ortho_group.rvs(10, random_state=0)
    for debiased in (False, True):
        ref = linear_cka(x, y, debiased)
        assert linear_cka(x @ q, y, debiased) == pytest.approx(ref, abs=1e-10)
        assert linear_cka(7.5 * x, 0.01 * y, debiased) == pytest.approx(ref, abs=1e-10)
        scaled = x * np.logspace(-1, 1, 10)  # non-isotropic scaling changes the answer
        assert abs(linear_cka(scaled, y, debiased) - ref) > 0.05
    assert rbf_cka(x @ q * 3.0, y, 0.5) == pytest.approx(rbf_cka(x, y, 0.5), abs=1e-10)


def test_debiased_cka_is_near_zero_for_independent_features_where_biased_is_inflated():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 2048)), rng.standard_normal((50, 2048))
    assert linear_cka(x, y) > 0.95
    assert abs(linear_cka(x, y, debiased=True)) < 0.05


def test_minibatch_cka_agrees_with_full_cka():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 64))
    y = x @ rng.standard_normal((64, 32)) + 3 * rng.standard_normal((4000, 32))
    full = linear_cka(x, y, debiased=True)
    assert 0.3 < full < 0.9
    assert minibatch_cka(x, y, batch_size=500) == pytest.approx(full, abs=0.01)
    one_batch = MinibatchCKA().update(x[:300], y[:300]).score()
    assert one_batch == pytest.approx(linear_cka(x[:300], y[:300], debiased=True), abs=1e-12)
    with pytest.raises(ValueError, match="exceeds"):
        minibatch_cka(x[:10], y[:10], batch_size=20)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix_equals_pairwise_cka(debiased):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((300, 8))
    feats = [base @ rng.standard_normal((8, d)) + s * rng.standard_normal((300, d))
             for d, s in ((16, 0.5), (64, 2.0), (5, 0.1), (32, 5.0))]
    m = cka_matrix(feats, debiased=debiased, chunk=70)  # chunks that do not divide n
    expected = [[linear_cka(a, b, debiased) for b in feats] for a in feats]
    np.testing.assert_allclose(m, expected, atol=1e-10)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="same stimuli"):
        cka_matrix([feats[0], feats[1][:10]])


def test_rdm_and_rsa_known_values():
    x = np.array([[1.0, 2, 3], [2, 4, 6], [3, 2, 1], [1, 0, 1]])
    d = rdm(x)
    assert d[0, 1] == pytest.approx(0.0, abs=1e-12)  # perfectly correlated patterns
    assert d[0, 2] == pytest.approx(2.0)  # anti-correlated
    np.testing.assert_allclose(d, d.T)
    assert compare_rdms(d, d ** 3 + 1) == pytest.approx(1.0)  # Spearman: any monotonic transform
    rng = np.random.default_rng(3)
    a = rng.standard_normal((200, 30))
    assert rsa(a, a @ rng.standard_normal((30, 30))) > 0.4
    assert abs(rsa(a, rng.standard_normal((200, 30)))) < 0.1
    assert np.isnan(rsa(a[:, :1], a))  # one-unit patterns have no correlation distance


def test_encoding_rsa_recovers_linear_targets_and_not_noise():
    rng = np.random.default_rng(4)
    latent = rng.standard_normal((200, 10))
    source = latent @ rng.standard_normal((10, 3000)) + 0.5 * rng.standard_normal((200, 3000))
    target = latent @ rng.standard_normal((10, 15))
    assert encoding_rsa(source[:, :50], target, n_components=None) > 0.95
    assert encoding_rsa(source, target, n_components=512) > 0.9  # through a sparse random projection
    assert abs(encoding_rsa(source[:, :50], rng.standard_normal((200, 15)), n_components=None)) < 0.1


def test_effective_dimensionality():
    rng = np.random.default_rng(5)
    assert effective_dimensionality(rng.standard_normal((20000, 10))) == pytest.approx(10, rel=0.02)
    rank1 = np.outer(rng.standard_normal(100), rng.standard_normal(40))
    assert effective_dimensionality(rank1) == pytest.approx(1.0, abs=1e-9)
    two = rng.standard_normal((20000, 2)) * [1.0, 1.0 / np.sqrt(3)]  # eigenvalues 3:1 -> 16/10
    assert effective_dimensionality(two) == pytest.approx(1.6, rel=0.03)


@pytest.fixture
def latents():
    rng = np.random.default_rng(6)
    n = 250
    return pd.DataFrame({"key": [f"{i:09d}" for i in range(n)], "x": rng.uniform(-1, 1, n),
                         "z": rng.uniform(1, 4, n), "rot_x": rng.uniform(-np.pi, np.pi, n),
                         "category": rng.integers(0, 3, n), "identity": np.zeros(n, int)})


def test_decoding_targets_expand_angles_and_skip_constant_and_sparse_classes(latents):
    targets = decoding_targets(latents)
    assert list(targets) == ["x", "z", "sin_rot_x", "cos_rot_x", "category"]
    np.testing.assert_allclose(targets["cos_rot_x"], np.cos(latents["rot_x"]))
    sparse = latents.assign(identity=np.arange(250) % 126)  # 126 identities in 250 rows: < 2 per class
    assert "identity" not in decoding_targets(sparse)
    assert "identity" in decoding_targets(latents.assign(identity=np.arange(250) % 125))


def test_decoding_linear_latent_scores_near_one_and_shuffled_near_zero(latents):
    rng = np.random.default_rng(7)
    t = decoding_targets(latents)
    signal = np.column_stack([t["x"], t["z"], t["sin_rot_x"], t["cos_rot_x"], np.eye(3)[t["category"]]])
    features = signal @ rng.standard_normal((signal.shape[1], 40)) + 0.01 * rng.standard_normal((250, 40))
    shuffled = features[rng.permutation(250)]
    table = decoding_table({"m": {"good": features, "shuffled": shuffled}}, latents)
    scores = table.set_index(["layer", "target"])["score"]
    for target in ("x", "z", "sin_rot_x", "cos_rot_x"):
        assert scores["good", target] > 0.99
        assert abs(scores["shuffled", target]) < 0.1
    assert scores["good", "category"] == 1.0
    assert scores["shuffled", "category"] < 0.55  # chance is 1/3
    assert set(table["metric"]) == {"r2", "accuracy"}
    assert decode(features, t["x"], cv=3) > 0.99


def test_compare_groups_mann_whitney():
    rows = [{"model": f"{g}{i}", "layer": "l", "target": "x", "metric": "r2", "score": s + 0.01 * i}
            for g, s in (("full", 0.9), ("reduced", 0.5)) for i in range(5)]
    out = compare_groups(pd.DataFrame(rows), [f"full{i}" for i in range(5)], [f"reduced{i}" for i in range(5)])
    row = out.iloc[0]
    assert (row["mean_a"], row["mean_b"]) == pytest.approx((0.92, 0.52))
    assert row["u"] == 25.0
    assert row["p"] == pytest.approx(2 / 252)  # exact two-sided p for complete separation, 5 vs 5


def test_mds_separates_dissimilar_models_deterministically():
    sim = np.array([[1.0, 0.95, 0.2], [0.95, 1.0, 0.25], [0.2, 0.25, 1.0]])
    d = row_distances(sim)
    assert d[0, 1] == pytest.approx(np.sqrt(0.05 ** 2 + 0.05 ** 2 + 0.05 ** 2))
    xy = mds_embedding(sim)
    np.testing.assert_array_equal(xy, mds_embedding(sim))
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert dist[0, 1] < 0.3 * dist[0, 2]


def test_load_results_csv_and_scores_json(tmp_path):
    (tmp_path / "a.csv").write_text("model,benchmark,score,raw\nm1,MajajHong2015public.IT-pls,0.5,0.4\n"
                                    "m1,FreemanZiemba2013public.V1-pls,0.2,0.1\n")
    (tmp_path / "b.json").write_text(json.dumps({"neural_mean": 0.3, "scores": [
        {"model": "m2", "benchmark": "Rajalingham2018public-i2n", "region": "behavior", "score": 0.4}]}))
    table = load_results([tmp_path / "a.csv", tmp_path / "b.json"])
    assert table[["model", "region", "score"]].values.tolist() == [
        ["m1", "IT", 0.5], ["m1", "V1", 0.2], ["m2", "behavior", 0.4]]
    assert region_of("MajajHong2015public.V4-pls") == "V4"
    (tmp_path / "bad.csv").write_text("model,score\nm1,0.3\n")
    with pytest.raises(UserError, match="benchmark"):
        load_results([tmp_path / "bad.csv"])
    with pytest.raises(UserError, match="does not exist"):
        load_results([tmp_path / "missing.csv"])


def test_performance_alignment_is_pearson_r_per_region():
    rng = np.random.default_rng(8)
    perf = rng.normal(size=6)
    it = 0.3 + 0.1 * perf + 0.05 * rng.normal(size=6)
    rows = ([{"model": f"m{i}", "benchmark": "X.IT-pls", "score": s} for i, s in enumerate(it)]
            + [{"model": f"m{i}", "benchmark": "X.V1-pls", "score": 1 - p} for i, p in enumerate(perf)])
    table = load_results_frame(rows)
    out = performance_alignment(table, {f"m{i}": p for i, p in enumerate(perf)}).set_index("region")
    assert list(out.index) == ["V1", "IT"]
    assert out.loc["IT", "r"] == pytest.approx(np.corrcoef(perf, it)[0, 1])
    assert out.loc["V1", "r"] == pytest.approx(-1.0)
    assert out.loc["IT", "n"] == 6


def load_results_frame(rows):
    frame = pd.DataFrame(rows)
    frame["region"] = frame["benchmark"].map(region_of)
    return frame


def test_layer_assignment_depths():
    table = layer_assignment({"m": {"V1": "layer1.0.relu", "IT": "layer4.0.relu"}},
                             ["relu", "layer1.0.relu", "layer4.0.relu"])
    assert table[["region", "depth"]].values.tolist() == [["V1", 1], ["IT", 2]]
