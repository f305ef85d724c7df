"""Representational similarity analysis: RDMs, their Spearman comparison, Conwell-style encoding RSA,
and effective dimensionality.

Arrays are ``n_stimuli x n_features``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.random_projection import SparseRandomProjection

DEFAULT_ALPHAS = tuple(np.logspace(-2, 5, 8))


def rdm(x: np.ndarray) -> np.ndarray:
    """Representational dissimilarity matrix: 1 - Pearson correlation between stimulus patterns.

    Entries are NaN where a pattern is constant (e.g. any pattern of a one-unit layer).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    x = x - x.mean(1, keepdims=True)
    norms = np.linalg.norm(x, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = x / norms[:, None]
    x[norms == 0] = np.nan
    return 1.0 - np.clip(x @ x.T, -1.0, 1.0)


def compare_rdms(rdm_a: np.ndarray, rdm_b: np.ndarray) -> float:
    """Spearman correlation of the upper triangles (diagonal excluded) of two RDMs."""
    iu = np.triu_indices(len(rdm_a), k=1)
    a, b = rdm_a[iu], rdm_b[iu]
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    return float(spearmanr(a, b).correlation)


def rsa(x: np.ndarray, y: np.ndarray) -> float:
    """Classical RSA score of two representations of the same stimuli."""
    return compare_rdms(rdm(x), rdm(y))


def encoding_rsa(source: np.ndarray, target: np.ndarray, n_components: int | None = 1024,
                 alphas: tuple[float, ...] = DEFAULT_ALPHAS, cv: int = 5, random_state: int = 0) -> float:
    """Encoding RSA (Conwell et al.): predict each target unit from ``source`` and RSA the predictions.

    ``source`` is reduced by a sparse random projection to ``n_components`` dimensions (when it is
    wider), every target unit is fitted by ridge regression (alpha chosen by efficient
    leave-one-out among ``alphas``), predictions are made ``cv``-fold out-of-sample, and the RDM of
    the predicted responses is compared with the RDM of ``target``.
    """
    x = np.asarray(source, dtype=np.float64).reshape(len(source), -1)
    y = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    if n_components is not None and x.shape[1] > n_components:
        x = SparseRandomProjection(n_components, random_state=random_state).fit_transform(x)
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    folds = KFold(cv, shuffle=True, random_state=random_state)
    predicted = cross_val_predict(RidgeCV(alphas=alphas), x, y, cv=folds)
    return rsa(predicted, y)


def effective_dimensionality(x: np.ndarray) -> float:
    """Participation ratio ``(sum λ)^2 / sum λ^2`` of the covariance eigenvalues λ of ``x``."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    x = x - x.mean(0)
    s = np.linalg.svd(x, compute_uv=False) ** 2  # eigenvalues of X^T X, up to the 1/(n-1) factor
    return float(s.sum() ** 2 / (s ** 2).sum())
