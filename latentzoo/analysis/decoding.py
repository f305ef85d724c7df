"""Cross-validated linear decoding of latents from layer activations, and group comparisons.

Continuous targets (``x, y, z`` and ``sin``/``cos`` of each angle) are decoded with ridge
regression (alpha by efficient leave-one-out inside each training fold) and scored with R^2;
class targets (``category``, ``identity``) with logistic regression and scored by accuracy. Both
standardise features inside each fold; folds are shuffled with a fixed seed.

The paper's protocol (:func:`paper_decoding_table`): features wider than
``johnson_lindenstrauss_min_dim(n, eps=0.1)`` (6,515 for 2,000 images) are reduced by a Gaussian
random projection (:func:`gaussian_projection`, generated and applied in blocks of features, so a
2,000 x 200k memory-mapped layer never loads whole); then 5 random 80/20 splits; classes by
``LinearSVC(C=5e-3)`` scored by accuracy, continuous latents by ``RidgeCV`` over the authors'
alphas (:data:`PAPER_ALPHAS`) scored by the Pearson r of prediction and target. No standardisation.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.random_projection import johnson_lindenstrauss_min_dim
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from latentzoo.latents import ANGLE_LATENTS, CLASS_LATENTS, POSITION_LATENTS

ALPHAS = tuple(np.logspace(-3, 7, 11))
MIN_PER_CLASS = 2
#: The authors' ridge alphas, as written in their scripts (".75e-1" there, i.e. 0.075, not 0.75).
PAPER_ALPHAS = (1e-4, 1e-3, 1e-2, 5e-2, 1e-1, 2.5e-1, 5e-1, 7.5e-2, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0, 1e3)
PAPER_SVC_C = 5e-3
PAPER_SPLITS = 5
PAPER_TRAIN_FRACTION = 0.8
PROJECTION_BLOCK = 4096  # input features per block of the Gaussian projection matrix (fixes its values)


def decoding_targets(latents: pd.DataFrame, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Decoding targets from a latents table: x, y, z, sin_/cos_ of each angle, category, identity.

    ``names`` picks latents (angles expand to their sin and cos); class latents with a single
    value in the table, or with fewer than ``MIN_PER_CLASS`` rows per class on average (e.g. 548
    identities in 200 images), are skipped: there is nothing to decode, or too little to learn from.
    """
    names = list(names) if names is not None else [n for n in POSITION_LATENTS + ANGLE_LATENTS
                                                    + CLASS_LATENTS if n in latents]
    targets: dict[str, np.ndarray] = {}
    for name in names:
        values = latents[name].to_numpy()
        if name in ANGLE_LATENTS:
            targets[f"sin_{name}"], targets[f"cos_{name}"] = np.sin(values), np.cos(values)
        elif name in CLASS_LATENTS:
            classes = len(np.unique(values))
            if classes > 1 and len(values) >= MIN_PER_CLASS * classes:
                targets[name] = values
        else:
            targets[name] = values.astype(np.float64)
    return targets


def is_class_target(name: str) -> bool:
    return name in CLASS_LATENTS


def _as2d(features: np.ndarray) -> np.ndarray:
    return np.asarray(features, dtype=np.float64).reshape(len(features), -1)


def decode_continuous(features: np.ndarray, targets: np.ndarray, cv: int = 5, random_state: int = 0) -> np.ndarray:
    """Mean ``cv``-fold R^2 of ridge readouts of each column of ``targets`` (``n x k``) -> ``k`` scores.

    One fit per fold serves all columns: each column gets its own alpha (efficient leave-one-out
    within the training fold), so the result equals fitting the columns one by one.
    """
    x, y = _as2d(features), np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    scores = []
    for train, test in KFold(cv, shuffle=True, random_state=random_state).split(x):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS, alpha_per_target=True))
        predicted = model.fit(x[train], y[train]).predict(x[test]).reshape(len(test), -1)
        scores.append(r2_score(y[test], predicted, multioutput="raw_values"))
    return np.mean(scores, axis=0)


def decode_classes(features: np.ndarray, target: np.ndarray, cv: int = 5, random_state: int = 0) -> float:
    """Mean ``cv``-fold accuracy of a logistic-regression readout of class labels (stratified when possible)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    counts = np.unique(target, return_counts=True)[1]
    splitter = (StratifiedKFold if counts.min() >= cv else KFold)(cv, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():  # separable classes rarely reach lbfgs' tolerance; the accuracy is what counts
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, _as2d(features), target, cv=splitter, scoring="accuracy")
    return float(np.mean(scores))


def decode(features: np.ndarray, target: np.ndarray, classification: bool = False, cv: int = 5,
           random_state: int = 0) -> float:
    """Mean ``cv``-fold score of a linear readout of one ``target`` from ``features`` (R^2 or accuracy)."""
    if classification:
        return decode_classes(features, target, cv, random_state)
    return float(decode_continuous(features, target, cv, random_state)[0])


def decoding_table(activations: Mapping[str, Mapping[str, np.ndarray]], latents: pd.DataFrame,
                   names: Sequence[str] | None = None, cv: int = 5) -> pd.DataFrame:
    """Decode every target from every layer of every model.

    ``activations`` is ``{model: {layer: n x d}}`` over the rows of ``latents``. Returns a long
    table with columns ``model, layer, target, metric, score``. Fits run single-threaded BLAS:
    many small problems are several times faster than with threads competing.
    """
    targets = decoding_targets(latents, names)
    continuous = [t for t in targets if not is_class_target(t)]
    y = np.column_stack([targets[t] for t in continuous]) if continuous else None
    rows = []
    with threadpool_limits(1):
        for model, layers in activations.items():
            for layer, x in layers.items():
                r2 = decode_continuous(x, y, cv) if continuous else []
                scores = dict(zip(continuous, r2))
                scores.update({t: decode_classes(x, targets[t], cv) for t in targets if is_class_target(t)})
                rows += [{"model": model, "layer": layer, "target": t,
                          "metric": "accuracy" if is_class_target(t) else "r2", "score": float(scores[t])}
                         for t in targets]
    return pd.DataFrame(rows, columns=["model", "layer", "target", "metric", "score"])


def compare_groups(table: pd.DataFrame, group_a: Sequence[str], group_b: Sequence[str]) -> pd.DataFrame:
    """Two-sided Mann-Whitney U test of decoding scores, group A vs group B, per layer and target.

    ``table`` is :func:`decoding_table` output; groups are lists of model names (e.g. models
    trained with full vs reduced non-target variability). Columns: ``layer, target, mean_a,
    mean_b, u, p``.
    """
    rows = []
    for (layer, target), sub in table.groupby(["layer", "target"], sort=False):
        a = sub.loc[sub["model"].isin(group_a), "score"].to_numpy()
        b = sub.loc[sub["model"].isin(group_b), "score"].to_numpy()
        if len(a) and len(b):
            test = mannwhitneyu(a, b, alternative="two-sided")
            rows.append({"layer": layer, "target": target, "mean_a": a.mean(), "mean_b": b.mean(),
                         "u": float(test.statistic), "p": float(test.pvalue)})
    return pd.DataFrame(rows, columns=["layer", "target", "mean_a", "mean_b", "u", "p"])


def jl_dim(n_samples: int, eps: float = 0.1) -> int:
    """Johnson-Lindenstrauss dimension the paper projects to: ``johnson_lindenstrauss_min_dim(n, eps)``."""
    return int(johnson_lindenstrauss_min_dim(n_samples, eps=eps))


def gaussian_projection(features: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """``X R`` with ``R`` a ``d x n_components`` Gaussian matrix, entries N(0, 1/n_components) (the
    distribution of sklearn's ``GaussianRandomProjection``), float32.

    ``R`` is generated in blocks of :data:`PROJECTION_BLOCK` rows (block ``b`` from the seed
    ``[seed, b]``) and applied block by block, so memory is one block of ``R`` and of ``X`` (a
    memmap stays on disk) and the result depends only on ``seed`` and ``d``.
    """
    x = features.reshape(len(features), -1)
    out = np.zeros((len(x), n_components), dtype=np.float32)
    for b, c0 in enumerate(range(0, x.shape[1], PROJECTION_BLOCK)):
        block = np.asarray(x[:, c0:c0 + PROJECTION_BLOCK], dtype=np.float32)
        rng = np.random.default_rng([seed, b])
        out += block @ rng.standard_normal((block.shape[1], n_components), dtype=np.float32)
    return out / np.float32(np.sqrt(n_components))


def paper_splits(n: int, repeats: int = PAPER_SPLITS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` random splits of ``n`` items into the first 80% of a permutation (train) and the rest."""
    rng = np.random.default_rng(seed)
    cut = int(n * PAPER_TRAIN_FRACTION)
    return [(p[:cut], p[cut:]) for p in (rng.permutation(n) for _ in range(repeats))]


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (``n x k``); NaN where a column is constant."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def paper_decode_continuous(features: np.ndarray, targets: np.ndarray,
                            splits: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``splits x k`` Pearson r of ``RidgeCV(PAPER_ALPHAS)`` predictions of each target column on each test split.

    Each column gets its own alpha (``alpha_per_target``), so one fit equals fitting columns one by one.
    """
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    y = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    scores = []
    for train, test in splits:
        model = RidgeCV(alphas=PAPER_ALPHAS, alpha_per_target=True).fit(x[train], y[train])
        scores.append(pearson_columns(model.predict(x[test]).reshape(len(test), -1), y[test]))
    return np.array(scores)


def paper_decode_classes(features: np.ndarray, labels: np.ndarray,
                         splits: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> np.ndarray:
    """Test accuracy of ``LinearSVC(C=5e-3)`` on each split (one value per split; ``seed`` fixes liblinear's
    coordinate order, which it otherwise draws from numpy's global random state)."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    scores = []
    with warnings.catch_warnings():  # liblinear's iteration cap; the accuracy is what counts
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splits:
            clf = LinearSVC(C=PAPER_SVC_C, dual=True, random_state=seed).fit(x[train], labels[train])
            scores.append(clf.score(x[test], labels[test]))
    return np.array(scores)


def paper_decoding_table(activations: Mapping[str, Mapping[str, np.ndarray]], latents: pd.DataFrame,
                         names: Sequence[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """The paper's decoding of every target from every layer of every model.

    Layers wider than :func:`jl_dim` of the number of images are projected
    (:func:`gaussian_projection`), then decoded over :func:`paper_splits`. Columns ``model, layer,
    target, metric (accuracy | pearson_r), score`` (mean over splits) ``, sd`` (over splits, ddof=1).
    """
    targets = decoding_targets(latents, names)
    continuous = [t for t in targets if not is_class_target(t)]
    y = np.column_stack([targets[t] for t in continuous]) if continuous else None
    splits = paper_splits(len(latents), seed=seed)
    dim = jl_dim(len(latents))
    rows = []
    for model, layers in activations.items():
        for layer, x in layers.items():
            x = gaussian_projection(x, dim, seed) if np.prod(x.shape[1:]) > dim else x
            per_split = dict(zip(continuous, paper_decode_continuous(x, y, splits).T)) if continuous else {}
            per_split.update({t: paper_decode_classes(x, targets[t], splits, seed) for t in targets
                              if is_class_target(t)})
            rows += [{"model": model, "layer": layer, "target": t,
                      "metric": "accuracy" if is_class_target(t) else "pearson_r",
                      "score": float(np.mean(per_split[t])), "sd": float(np.std(per_split[t], ddof=1))}
                     for t in targets]
    return pd.DataFrame(rows, columns=["model", "layer", "target", "metric", "score", "sd"])
