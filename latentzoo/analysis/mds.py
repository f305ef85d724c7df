"""Multidimensional scaling of a model-similarity matrix, as in Xie et al. (2025)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist, squareform
from sklearn.manifold import MDS


def row_distances(similarity: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a (model x model) similarity matrix."""
    return squareform(pdist(np.asarray(similarity, dtype=np.float64), metric="euclidean"))


def mds_embedding(similarity: np.ndarray, n_components: int = 2, random_state: int = 0) -> np.ndarray:
    """``m x n_components`` MDS coordinates of the models behind an ``m x m`` similarity matrix.

    Dissimilarity is the Euclidean distance between the matrix's rows (each model's profile of
    similarities to all models); metric MDS with a fixed ``random_state`` makes it reproducible.
    """
    mds = MDS(n_components=n_components, dissimilarity="precomputed", random_state=random_state,
              n_init=4, normalized_stress="auto")
    return mds.fit_transform(row_distances(similarity))
