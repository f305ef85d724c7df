"""Centred kernel alignment (Kornblith et al. 2019) and its unbiased / minibatch estimators.

Everything is accumulated in float64 and features are centred in float64 before any Gram product.
Arrays are ``n_stimuli x n_features``; Gram matrices are ``n x n``.

* :func:`linear_cka`, :func:`rbf_cka`, :func:`cka` (any two Gram matrices), optionally debiased with
  the unbiased HSIC estimator of Song et al. 2012 (``debiased=True``).
* :class:`MinibatchCKA`: Nguyen et al. 2021: unbiased HSIC averaged over minibatches, for stimulus
  sets that do not fit in memory.
* :func:`cka_matrix`: linear CKA between every pair of a list of representations, computing each
  representation's centred Gram once (in row chunks) and all pairs with one matrix product.
* :func:`centered_gram` + :func:`cka_from_grams`: the same (biased) CKA for representations too wide
  to hold in memory (e.g. 2,000 x 200k flattened, memory-mapped activations): each centred Gram
  is accumulated over column chunks, so memory is ``n x n`` plus one ``n x chunk`` block.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def gram_linear(x: np.ndarray) -> np.ndarray:
    """Linear kernel Gram matrix ``X X^T`` in float64."""
    x = _as2d(x)
    return x @ x.T


def gram_rbf(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """RBF Gram matrix with bandwidth ``threshold`` times the median pairwise distance (Kornblith's choice)."""
    dots = gram_linear(x)
    sq_norms = np.diag(dots)
    sq_dist = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * dots, 0)
    return np.exp(-sq_dist / (2 * threshold ** 2 * np.median(sq_dist)))


def center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """Double-centred copy of ``gram``; ``unbiased`` gives the U-centring of the unbiased HSIC estimator."""
    gram = np.array(gram, dtype=np.float64)
    n = len(gram)
    if unbiased:
        if n < 4:
            raise ValueError(f"the unbiased HSIC estimator needs at least 4 stimuli, got {n}")
        np.fill_diagonal(gram, 0)
        means = gram.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
    else:
        means = gram.mean(0)
        means -= means.mean() / 2
    gram -= means[:, None]
    gram -= means[None, :]
    if unbiased:
        np.fill_diagonal(gram, 0)
    return gram


def cka(gram_x: np.ndarray, gram_y: np.ndarray, debiased: bool = False) -> float:
    """CKA of two Gram matrices over the same stimuli (debiased: unbiased HSIC in place of the biased one)."""
    gx = center_gram(gram_x, unbiased=debiased)
    gy = center_gram(gram_y, unbiased=debiased)
    return float(gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy)))


def linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    """Linear CKA of two representations ``n x d1`` and ``n x d2`` of the same stimuli."""
    if debiased:
        return cka(gram_linear(x), gram_linear(y), debiased=True)
    x, y = _as2d(x), _as2d(y)
    x = x - x.mean(0)
    y = y - y.mean(0)
    xy = np.linalg.norm(x.T @ y) ** 2
    return float(xy / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def rbf_cka(x: np.ndarray, y: np.ndarray, threshold: float = 1.0, debiased: bool = False) -> float:
    """RBF-kernel CKA with bandwidth ``threshold`` x median distance."""
    return cka(gram_rbf(x, threshold), gram_rbf(y, threshold), debiased=debiased)


def hsic_unbiased(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """Unbiased HSIC estimator (Song et al. 2012) of two Gram matrices."""
    n = len(gram_x)
    gx, gy = center_gram(gram_x, unbiased=True), center_gram(gram_y, unbiased=True)
    return float(gx.ravel() @ gy.ravel() / (n * (n - 3)))


class MinibatchCKA:
    """Linear CKA accumulated over minibatches of stimuli (Nguyen, Raghu & Kornblith 2021).

    Each ``update(x, y)`` adds the unbiased HSIC of one minibatch (same stimuli in ``x`` and
    ``y``); ``score()`` is ``mean HSIC(X,Y) / sqrt(mean HSIC(X,X) mean HSIC(Y,Y))``. Memory is
    one minibatch's Gram matrices, whatever the number of stimuli.
    """

    def __init__(self) -> None:
        self._sums = np.zeros(3)
        self.n_batches = 0

    def update(self, x: np.ndarray, y: np.ndarray) -> "MinibatchCKA":
        kx, ky = gram_linear(x), gram_linear(y)
        self._sums += [hsic_unbiased(kx, ky), hsic_unbiased(kx, kx), hsic_unbiased(ky, ky)]
        self.n_batches += 1
        return self

    def score(self) -> float:
        xy, xx, yy = self._sums
        return float(xy / np.sqrt(xx * yy))


def minibatch_cka(x: np.ndarray, y: np.ndarray, batch_size: int = 256, seed: int = 0) -> float:
    """Minibatch linear CKA of in-memory arrays over shuffled batches (a trailing short batch is dropped)."""
    order = np.random.default_rng(seed).permutation(len(x))
    acc = MinibatchCKA()
    for i in range(0, len(x) - batch_size + 1, batch_size):
        idx = order[i:i + batch_size]
        acc.update(x[idx], y[idx])
    if not acc.n_batches:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(x)} stimuli")
    return acc.score()


def cka_matrix(features: Sequence[np.ndarray], debiased: bool = False, chunk: int = 256) -> np.ndarray:
    """Linear CKA between every pair of ``features`` (each ``n x d_i``): an ``m x m`` matrix.

    Each representation is centred once in float64; its centred Gram matrix is produced in row
    chunks (``chunk`` rows at a time, so memory is ``m * chunk * n`` floats) and all pairwise
    inner products of the Gram matrices accumulate in one ``m x m`` product per chunk.
    """
    xs = [_as2d(f) for f in features]
    n = len(xs[0])
    if any(len(x) != n for x in xs):
        raise ValueError(f"all representations need the same stimuli; got sizes {[len(x) for x in xs]}")
    if debiased and n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 stimuli, got {n}")
    if debiased:  # U-centring needs the Gram's column means: K 1 = X (X^T 1), diag K = |x_i|^2
        diag = [np.einsum("ij,ij->i", x, x) for x in xs]
        means = []
        for x, d in zip(xs, diag):
            m = (x @ x.sum(0) - d) / (n - 2)
            means.append(m - m.sum() / (2 * (n - 1)))
    else:
        xs = [x - x.mean(0) for x in xs]
    inner = np.zeros((len(xs), len(xs)))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        block = np.empty((len(xs), (r1 - r0) * n))
        for i, x in enumerate(xs):
            g = x[r0:r1] @ x.T
            if debiased:
                g -= means[i][r0:r1, None] + means[i][None, :]
                g[np.arange(r1 - r0), np.arange(r0, r1)] = 0
            block[i] = g.ravel()
        inner += block @ block.T
    norms = np.sqrt(np.diag(inner))
    return inner / np.outer(norms, norms)


def centered_gram(x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Centred linear Gram ``Xc Xc^T`` (``n x n``, float64) of ``x`` (``n x ...``, e.g. a memmap), read
    ``chunk`` feature columns at a time: each column block is centred and its Gram product added, which
    equals double-centring ``X X^T``."""
    x = x.reshape(len(x), -1)
    gram = np.zeros((len(x), len(x)))
    for c0 in range(0, x.shape[1], chunk):
        block = np.array(x[:, c0:c0 + chunk], dtype=np.float64)  # a copy: centred in place
        block -= block.mean(0)
        gram += block @ block.T
    return gram


def cka_from_grams(grams: Sequence[np.ndarray]) -> np.ndarray:
    """Biased linear CKA between every pair of centred Gram matrices (:func:`centered_gram`): ``m x m``."""
    m = len(grams)
    inner = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            inner[i, j] = inner[j, i] = np.vdot(grams[i], grams[j])
    norms = np.sqrt(np.diag(inner))
    return inner / np.outer(norms, norms)
