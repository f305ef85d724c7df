"""Cross-validated linear decoding of latents from layer activations, and group comparisons.

Continuous targets (``x, y, z`` and ``sin``/``cos`` of each angle) are decoded with ridge
regression (alpha by efficient leave-one-out inside each training fold) and scored with R^2;
class targets (``category``, ``identity``) with logistic regression and scored by accuracy. Both
standardise features inside each fold; folds are shuffled with a fixed seed.
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
from threadpoolctl import threadpool_limits

from latentzoo.latents import ANGLE_LATENTS, CLASS_LATENTS, POSITION_LATENTS

ALPHAS = tuple(np.logspace(-3, 7, 11))
MIN_PER_CLASS = 2


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
