"""Kernel-form PLS (latentzoo.models.pls) against sklearn's PLSRegression and Brain-Score's own PLS metric."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest
import torch

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from sklearn.cross_decomposition import PLSRegression  # noqa: E402

from latentzoo.models.pls import KernelPLS, RankError, activations_gram, gram, lean_metric  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def features(rng, n: int, d: int, kind: str) -> np.ndarray:
    """float32 activations: gaussian, ReLU-like (dead units, large mean), low rank, or repeated columns."""
    if kind == "relu":
        x = np.maximum(rng.standard_normal((n, d)) + 0.5, 0) * 3 + 5 * (rng.random(d) < 0.5)
        x[:, : d // 4] = 0
    elif kind.startswith("rank"):
        rank = int(kind[4:])
        x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    elif kind == "repeated":
        base = rng.standard_normal((n, d // 3))
        x = np.hstack([base, base, 2 * base])
    else:
        x = rng.standard_normal((n, d))
    return x.astype(np.float32)


def targets(rng, x: np.ndarray, q: int, structured: bool) -> np.ndarray:
    """Random targets, or a noisy linear function of the features (NIPALS then converges as on real data)."""
    noise = rng.standard_normal((len(x), q))
    if not structured:
        return noise
    signal = (x - x.mean(0)) @ rng.standard_normal((x.shape[1], q))
    return signal / signal.std(0) + 0.5 * noise


def compare(x: np.ndarray, y: np.ndarray, rng) -> None:
    """Kernel PLS on a 90/10 split equals sklearn's ``PLSRegression(25, scale=False)`` (fit on float32 X,
    as Brain-Score passes it) to 1e-6 relative, with the same NIPALS iteration counts; given float64
    test features sklearn agrees to 1e-10 (its float32 predict path rounds the centred test rows)."""
    n = len(x)
    train = np.sort(rng.permutation(n)[: n * 9 // 10])
    test = np.setdiff1d(np.arange(n), train)
    sk = PLSRegression(n_components=25, scale=False).fit(x[train], y[train])
    G = gram(np.array_split(x, 3, axis=1))
    ours = KernelPLS().fit(G[np.ix_(train, train)], y[train], n_features=x.shape[1])
    predicted = ours.predict(G[np.ix_(test, train)])
    scale = np.abs(sk.predict(x[test]) - y[train].mean(0)).max()
    assert ours.n_iter_ == sk.n_iter_
    assert np.abs(predicted - sk.predict(x[test])).max() <= 1e-6 * scale
    assert np.abs(predicted - sk.predict(x[test].astype(np.float64))).max() <= 1e-10 * scale


@pytest.mark.parametrize("n, d, q, kind, structured", [
    (120, 500, 12, "gaussian", False),   # d > n, random targets (long NIPALS runs)
    (120, 500, 12, "gaussian", True),
    (200, 60, 8, "gaussian", True),      # d < n
    (150, 400, 20, "relu", True),        # dead units, large means
    (100, 300, 10, "rank40", False),     # rank-deficient: rank 40 < min(n, d)
    (90, 270, 6, "repeated", True),      # rank-deficient: repeated columns
    (100, 300, 1, "gaussian", True),     # one target: sklearn stops after one iteration
])
def test_predictions_equal_sklearn(n, d, q, kind, structured):
    rng = np.random.default_rng(n + d + q)
    x = features(rng, n, d, kind)
    compare(x, targets(rng, x, q, structured), rng)


def test_predictions_equal_sklearn_on_network_activations():
    """Activations of a seeded ResNet-18's layer3 on 100 textured images; targets from its layer4."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((100, 3, 48, 48), dtype=np.float32)).cumsum(dim=3) / 24
    captured = {}
    for name in ("layer3", "layer4"):
        dict(net.named_modules())[name].register_forward_hook(lambda m, i, o, name=name: captured.update({name: o}))
    with torch.no_grad():
        net(images)
    x, source = (captured[name].flatten(1).numpy() for name in ("layer3", "layer4"))
    compare(x, targets(rng, source, 16, structured=True), rng)


def test_one_dimensional_targets_and_width_check_follow_sklearn():
    rng = np.random.default_rng(2)
    x = features(rng, 60, 100, "gaussian")
    y = targets(rng, x, 1, True)[:, 0]
    G = gram([x])
    predicted = KernelPLS().fit(G[:50, :50], y[:50]).predict(G[50:, :50])
    expected = PLSRegression(25, scale=False).fit(x[:50], y[:50]).predict(x[50:].astype(np.float64))
    assert predicted.shape == expected.shape == (10,)
    np.testing.assert_allclose(predicted, expected, rtol=1e-9)
    with pytest.raises(ValueError) as sklearn_error:
        PLSRegression(25, scale=False).fit(x[:, :20], y)
    with pytest.raises(ValueError) as ours:
        KernelPLS().fit(gram([x[:, :20]]), y, n_features=20)
    assert str(ours.value) == str(sklearn_error.value)


def test_rank_below_the_component_count_is_refused():
    """Rank 10 < 25 components: sklearn's last components fit float32 rounding noise, unreachable in a Gram."""
    rng = np.random.default_rng(3)
    x = features(rng, 80, 200, "rank10")
    with pytest.raises(RankError, match="numerical rank 10 < n_components=25"):
        KernelPLS().fit(gram([x]), targets(rng, x, 5, False))


def test_gram_streams_chunks_and_centres():
    rng = np.random.default_rng(4)
    x = features(rng, 30, 1000, "relu")
    centred = x.astype(np.float64) - x.astype(np.float64).mean(0)
    np.testing.assert_allclose(gram(x[:, i:i + 128] for i in range(0, 1000, 128)), centred @ centred.T,
                               rtol=1e-12, atol=1e-9)


def assembly(values, ids, objects, neuroid_prefix):
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    return NeuroidAssembly(values, coords={
        "stimulus_id": ("presentation", ids), "object_name": ("presentation", objects),
        "neuroid_id": ("neuroid", [f"{neuroid_prefix}{i}" for i in range(values.shape[1])]),
        "region": ("neuroid", ["IT"] * values.shape[1])}, dims=["presentation", "neuroid"])


def test_brainscore_pls_metric_on_the_gram_equals_brainscores_own(tmp_path, monkeypatch):
    """Brain-Score's own cross-validation (stratified splits), Pearson correlation and median, with our
    regression on the Gram instead of its PLSRegression on the features: same scores to 1e-6."""
    for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
        monkeypatch.setenv(var, str(tmp_path))
    from brainscore_vision import load_metric

    rng = np.random.default_rng(5)
    n = 160
    x = features(rng, n, 600, "relu")
    ids = [f"s{i:03d}" for i in rng.permutation(n)]
    objects = np.repeat([f"o{i}" for i in range(8)], n // 8)
    source = assembly(x, ids, objects, "f")
    target = assembly(targets(rng, x, 12, True), ids, objects, "n")
    metric = load_metric("pls", crossvalidation_kwargs=dict(stratification_coord="object_name", splits=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = metric(source, target)
        ours = lean_metric(metric)(activations_gram(source, chunk=256), target)
    np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-6)
    raw, their_raw = ours.attrs["raw"], theirs.attrs["raw"]
    assert raw.sizes == their_raw.sizes
    np.testing.assert_allclose(raw.values, their_raw.values, rtol=1e-6, atol=1e-9)
    assert lean_metric(load_metric("ridge")) is None


# ---------------------------------------------------------------- scoring through latentzoo's commands

from test_brainscore import benchmark_dir, brainscore_home  # noqa: E402,F401  (fixtures: a local benchmark)
from zoo_helpers import TINY_MODEL as MODEL  # noqa: E402


def test_kernel_scores_equal_brainscores_on_a_local_benchmark(benchmark_dir, tmp_path, monkeypatch, capsys):
    """`brainscore score` with kernel PLS (default; activations streamed in 300-feature chunk files) and with
    `--pls brainscore`: same score, raw score and ceiling to 1e-6; the scores file records the method."""
    import pandas as pd

    from latentzoo.cli import brainscore_main
    from latentzoo.models import gram_scoring

    monkeypatch.setattr(gram_scoring, "CHUNK", 300)
    tables = {}
    for pls in ("brainscore", "kernel"):
        out = tmp_path / pls
        assert brainscore_main(["score", "--model", MODEL, "--benchmark", f"local:{benchmark_dir}",
                                "--pls", pls, "--out", str(out)]) == 0
        tables[pls] = pd.read_csv(out / "scores.csv")
    assert "[kernel PLS] 40 stimuli x 2,048 features" in capsys.readouterr().err
    assert list(tables["kernel"]["pls"]) == ["kernel"] and list(tables["brainscore"]["pls"]) == ["brainscore"]
    for column in ("score", "raw", "ceiling"):
        np.testing.assert_allclose(tables["kernel"][column], tables["brainscore"][column], rtol=1e-6)
    assert not list((tmp_path.parent).glob("latentzoo-pls-*"))


def test_temp_folders_of_killed_runs_are_removed(tmp_path):
    import subprocess

    from latentzoo.models.gram_scoring import remove_stale_temp

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead, alive = tmp_path / f"latentzoo-pls-{gone.stdout.strip()}-abc", tmp_path / f"latentzoo-pls-{os.getpid()}-def"
    other = tmp_path / "latentzoo-pls-notapid-x"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "chunk-0.npy").write_bytes(b"\0" * 64)
    assert remove_stale_temp(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


def test_layermap_layer_scores_equal_brainscores(benchmark_dir):
    from latentzoo.models.brainscore import choose_layers

    kernel = choose_layers(MODEL, [f"local:{benchmark_dir}"], ["layer3", "layer4"], batch_size=16)
    theirs = choose_layers(MODEL, [f"local:{benchmark_dir}"], ["layer3", "layer4"], batch_size=16, pls="brainscore")
    assert list(kernel["IT"]) == list(theirs["IT"])
    np.testing.assert_allclose(list(kernel["IT"].values()), list(theirs["IT"].values()), rtol=1e-6)


def test_preflight_refuses_in_one_line_when_the_grams_cannot_fit(benchmark_dir, monkeypatch, capsys):
    from brainscore_vision.benchmark_helpers import memory

    from latentzoo.cli import brainscore_main

    monkeypatch.setattr(memory, "available_memory_gb", lambda: 1e-4)
    assert brainscore_main(["score", "--model", MODEL, "--benchmark", f"local:{benchmark_dir}"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "kernel PLS on 40 stimuli needs about" in error and "GiB is available" in error


def test_forward_until_returns_brainscores_layer_outputs():
    """The truncated forward pass gives PytorchWrapper.get_activations' outputs bitwise."""
    import torchvision
    from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper

    from latentzoo.models.gram_scoring import forward_until

    torch.manual_seed(0)
    wrapper = PytorchWrapper(model=torchvision.models.resnet18(), preprocessing=None, identifier=False)
    images = list(np.random.default_rng(6).random((3, 3, 64, 64), dtype=np.float32))
    for layers in (["layer2"], ["layer1", "layer3"], ["fc"]):
        ours, theirs = forward_until(wrapper, images, layers), wrapper.get_activations(images, layers)
        assert list(ours) == layers and all(np.array_equal(ours[k], theirs[k]) for k in layers)


def test_rank_deficient_splits_fall_back_to_brainscores_pls(benchmark_dir, monkeypatch, capsys):
    """When kernel PLS cannot reproduce sklearn (rank below 25, e.g. < 26 training stimuli), Brain-Score scores."""
    from latentzoo.models import pls
    from latentzoo.models.brainscore import score

    monkeypatch.setattr(pls, "RANK_FLOOR", 1.0)  # every fit now counts as rank-deficient
    table = score(MODEL, [f"local:{benchmark_dir}"])
    assert list(table["pls"]) == ["brainscore"] and 0 < table["score"][0] <= 1
    err = capsys.readouterr().err
    assert "toy.IT-pls: the features have numerical rank 0 < n_components=25" in err
    assert "cannot reproduce; scoring with Brain-Score's PLS" in err
