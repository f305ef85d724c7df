"""Brain-Score's PLS regression, exactly, in kernel form: ``n x n`` Gram matrices instead of ``n x d`` features.

Brain-Score's ``-pls`` benchmarks fit sklearn's ``PLSRegression(n_components=25, scale=False)`` (NIPALS)
on every cross-validation split. Every quantity NIPALS computes is a linear function of the centred
features ``Xc``: x weights are ``Xc_k^T z``, x scores ``Xc_k w = K_k z`` and the deflation
``Xc_{k+1} = (I - t t^T / t^T t) Xc_k`` is a projection on the left. So the algorithm runs on the
Gram matrix ``K = Xc Xc^T`` (deflated by the same projection on both sides), the convergence test
``|w - w_old|^2 < tol`` is a quadratic form in ``K``, and predictions need only the cross-Gram
``(X_test - mean) Xc^T``. Same centring (train mean), same start (first non-constant target column),
same power iteration, iteration cap (500), tolerance (1e-6), ``eps`` guards and pseudo-inverse as
``sklearn.cross_decomposition.PLSRegression``: predictions agree to rounding.

A layer's Gram matrix over all stimuli (:func:`gram`, streamed from float32 feature chunks) is
computed once and shared by every split: :class:`KernelPLS` centres the split's rows and columns
itself. :class:`GramRegression` is the drop-in regression for Brain-Score's
``CrossRegressedCorrelation`` (see :func:`lean_metric`).
"""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np

EPS = np.finfo(np.float64).eps
#: Brain-Score's ``pls_regression`` defaults (and sklearn's NIPALS settings).
N_COMPONENTS, MAX_ITER, TOL = 25, 500, 1e-06
#: Residual ``|Xc_k|^2 / |Xc|^2`` below which the deflated Gram is rounding noise (float64 Gram of
#: float32 features): fewer independent features than components.
RANK_FLOOR = 1e-10


class RankError(ValueError):
    """The features span fewer dimensions than the PLS components asked for."""


def gram(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """``Xc Xc^T`` (float64, ``n x n``) of features arriving as ``n x c`` column chunks of ``X``.

    Each chunk is cast to float64 and centred by its own column means (the mean over all ``n`` rows),
    so one chunk of float64 is in memory at a time. Any split's centring is done later, exactly, by
    :class:`KernelPLS` (centring is a shift, and the Gram of shifted rows is a double-centring).
    """
    total = None
    for chunk in chunks:
        x = np.array(chunk, dtype=np.float64)
        x -= x.mean(axis=0)
        product = x @ x.T
        if total is None:
            total = product
        else:
            total += product
    if total is None:
        raise ValueError("gram: no feature chunks")
    return total


class KernelPLS:
    """sklearn's ``PLSRegression(n_components, scale=False)`` fitted and applied on Gram matrices.

    ``fit(G, Y)`` takes ``G = X X^T`` of the training rows (any common shift of the feature vectors,
    e.g. :func:`gram`'s global centring) and targets ``Y`` (``n`` or ``n x q``); ``predict(C)`` takes
    the cross-Gram ``C = X_test X^T`` with the same shift, and returns what sklearn's ``predict``
    returns for ``X_test``. ``n_features`` (the width of ``X``) reproduces sklearn's
    ``n_components <= n_features`` check.
    """

    def __init__(self, n_components: int = N_COMPONENTS, max_iter: int = MAX_ITER, tol: float = TOL):
        self.n_components, self.max_iter, self.tol = n_components, max_iter, tol

    def fit(self, G: np.ndarray, Y: np.ndarray, n_features: int | None = None) -> "KernelPLS":
        """Fit on the training Gram ``G`` (``n x n``) and targets ``Y``; returns self."""
        G = np.asarray(G, dtype=np.float64)
        Y = np.array(Y, dtype=np.float64)  # a copy: deflated in place
        self._predict_1d = Y.ndim == 1
        Y = Y.reshape(len(Y), -1)
        if n_features is not None and self.n_components > n_features:
            raise ValueError(f"`n_components` upper bound is {n_features}. "
                             f"Got {self.n_components} instead. Reduce `n_components`.")
        self._row_means, self._mean = G.mean(axis=1), G.mean()
        K0 = G - self._row_means[:, None] - self._row_means[None, :] + self._mean
        self.y_mean_ = Y.mean(axis=0)
        Y -= self.y_mean_
        n, q, k = len(Y), Y.shape[1], self.n_components
        # Xc_c = M_c Xc with M_c = P_{c-1} ... P_0, P_i = I - t_i t_i^T / t_i^T t_i (t_i: x scores), so the
        # deflated Gram K_c = M_c K0 M_c^T is applied implicitly and KY = K_c Y_c is kept up to date.
        KY = K0 @ Y
        A, B, Q = np.zeros((n, k)), np.zeros((n, k)), np.zeros((q, k))
        scores: list[np.ndarray] = []
        self.n_iter_ = []
        residual, floor = np.trace(K0), RANK_FLOOR * np.trace(K0)  # residual = trace(K_c) = |Xc_c|^2
        for c in range(k):
            if residual <= floor:
                raise RankError(f"the features have numerical rank {c} < n_components={k}: the remaining "
                                "components of sklearn's NIPALS fit float rounding noise, which the Gram "
                                "form cannot reproduce")
            constant = np.all(np.abs(Y) < 10 * EPS, axis=0)
            Y[:, constant], KY[:, constant] = 0.0, 0.0
            varying = np.flatnonzero(np.any(np.abs(Y) > EPS, axis=0))
            if not varying.size:
                warnings.warn(f"y residual is constant at iteration {c}")
                break
            z, t, n_iter = self._first_component(Y, KY, varying[0])
            self.n_iter_.append(n_iter)
            tt = t @ t
            A[:, c] = _undeflate(z, scores)        # x weights  = Xc^T A[:, c]
            B[:, c] = _undeflate(t / tt, scores)   # x loadings = Xc^T B[:, c]
            Q[:, c] = (t @ Y) / tt                 # y loadings
            Kt = _deflate(K0 @ _undeflate(t, scores), scores)  # K_c t
            residual -= (t @ Kt) / tt
            Y -= np.outer(t, Q[:, c])                           # Y_{c+1} = P_c Y_c
            KY -= np.outer(Kt, Q[:, c])                         # K_{c+1} Y_{c+1} = P_c K_c Y_{c+1}
            KY -= np.outer(t, (t @ KY) / tt)
            scores.append(t)
        loadings_weights = B.T @ K0 @ A          # x_loadings^T x_weights
        rotations = A @ np.linalg.pinv(loadings_weights, rcond=max(loadings_weights.shape) * EPS)
        self.dual_coef_ = rotations @ Q.T        # coef_ = Xc^T dual_coef_
        return self

    def predict(self, C: np.ndarray) -> np.ndarray:
        """Predictions for test rows from their cross-Gram ``C`` (``n_test x n_train``) with the training rows."""
        C = np.asarray(C, dtype=np.float64)
        centred = C - C.mean(axis=1, keepdims=True) - self._row_means[None, :] + self._mean
        prediction = centred @ self.dual_coef_ + self.y_mean_
        return prediction.ravel() if self._predict_1d else prediction

    def _first_component(self, Y: np.ndarray, KY: np.ndarray, start: int):
        """sklearn's ``_get_first_singular_vectors_power_method`` (mode A) in kernel form.

        The y score stays in the span of ``Y``'s columns (``y_score = Y beta``) and ``K y_score = KY beta``,
        so the iteration runs on the coordinates of both in an orthonormal basis of ``[Y, KY]``
        (norms and dot products unchanged). Returns ``z`` (x weights ``= Xc_c^T z``), the x score
        ``t = K_c z`` and the iteration count.
        """
        basis, coordinates = np.linalg.qr(np.hstack([Y, KY]))
        Yb, KYb = coordinates[:, :Y.shape[1]], coordinates[:, Y.shape[1]:]
        beta = np.zeros(Y.shape[1])
        beta[start] = 1.0
        z_old = t_old = None
        for i in range(self.max_iter):
            y_score, k_y_score = Yb @ beta, KYb @ beta
            ss = y_score @ y_score
            # x_weights = Xc^T y_score / ss, divided by (its norm + eps): Xc^T (scale y_score)
            scale = (1.0 / ss) / (np.sqrt(y_score @ k_y_score) / ss + EPS)
            z, t = scale * y_score, scale * k_y_score
            y_weights = (Yb.T @ t) / (t @ t)
            beta = y_weights / (y_weights @ y_weights + EPS)
            # |w - w_old|^2 = (z - z_old)^T K (z - z_old); sklearn's first comparison is against the
            # scalar 100, |w - 100|^2 >= (100 sqrt(d) - 1)^2: never converged
            if Y.shape[1] == 1 or (z_old is not None and (z - z_old) @ (t - t_old) < self.tol):
                break
            z_old, t_old = z, t
        n_iter = i + 1
        if n_iter == self.max_iter:
            warnings.warn("Maximum number of iterations reached", _convergence_warning())
        return basis @ z, basis @ t, n_iter


# ---------------------------------------------------------------- Brain-Score

class GramRegression:
    """The regression inside Brain-Score's ``XarrayRegression`` when the source is a Gram assembly
    (:func:`gram_assembly`): rows are the split's stimuli, the ``neuroid`` dimension lists every stimulus
    of the Gram (``neuroid_id`` = ``stimulus_id``). ``fit`` picks the training stimuli's columns, so
    ``K[train, train]`` goes to :class:`KernelPLS`; ``predict`` uses ``K[test, train]``.
    """

    def __init__(self, n_components: int = N_COMPONENTS, max_iter: int = MAX_ITER, tol: float = TOL,
                 stimulus_coord: str = "stimulus_id"):
        self._pls = KernelPLS(n_components, max_iter, tol)
        self._stimulus_coord = stimulus_coord
        self._columns: np.ndarray | None = None

    def fit(self, source, target) -> None:
        """Fit on the training rows of a Gram assembly and the (aligned) target assembly."""
        self._columns = self._positions(source)
        self._pls.fit(source.values[:, self._columns], np.asarray(target), source.attrs.get("n_features"))

    def predict(self, source) -> np.ndarray:
        """Predictions for the test rows of a Gram assembly."""
        return self._pls.predict(source.values[:, self._columns])

    def _positions(self, source) -> np.ndarray:
        column = {stimulus: i for i, stimulus in enumerate(source["neuroid_id"].values)}
        return np.array([column[stimulus] for stimulus in source[self._stimulus_coord].values])


def gram_assembly(G: np.ndarray, presentation: dict[str, np.ndarray], n_features: int):
    """A Brain-Score ``NeuroidAssembly`` (presentation x neuroid) holding a Gram matrix: ``presentation``
    coordinates (``stimulus_id`` and whatever the cross-validation stratifies on) for the rows, the
    same stimulus ids as ``neuroid_id`` for the columns; ``attrs["n_features"]`` is the layer width."""
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    coords = {name: ("presentation", np.asarray(values)) for name, values in presentation.items()}
    coords["neuroid_id"] = ("neuroid", np.asarray(presentation["stimulus_id"]))
    coords["gram_column"] = ("neuroid", np.arange(len(G)))  # a second level keeps neuroid_id a coordinate
    assembly = NeuroidAssembly(G, coords=coords, dims=["presentation", "neuroid"])
    assembly.attrs["n_features"] = int(n_features)
    return assembly


def activations_gram(activations, chunk: int = 4096):
    """:func:`gram_assembly` of a (presentation x neuroid) activations assembly, in feature chunks."""
    from brainscore_core.supported_data_standards.brainio.assemblies import walk_coords

    activations = activations.transpose("presentation", "neuroid")
    values = activations.values
    G = gram(values[:, i:i + chunk] for i in range(0, values.shape[1], chunk))
    presentation = {name: values for name, dims, values in walk_coords(activations) if dims == ("presentation",)}
    return gram_assembly(G, presentation, values.shape[1])


def lean_metric(metric):
    """Brain-Score's ``CrossRegressedCorrelation`` ``metric`` with its ``PLSRegression`` swapped for
    :class:`GramRegression` (same splits, correlation and aggregation); it then scores Gram assemblies.
    ``None`` when ``metric`` is not a cross-validated PLS (``scale=False``, NIPALS)."""
    import copy

    from brainscore_vision.metrics.regression_correlation.metric import CrossRegressedCorrelation

    xarray_regression = getattr(metric, "regression", None)
    pls = getattr(xarray_regression, "_regression", None)
    if not isinstance(metric, CrossRegressedCorrelation) or type(pls).__name__ != "PLSRegression" \
            or pls.scale or pls.algorithm != "nipals":
        return None
    lean = copy.copy(metric)
    lean.regression = copy.copy(xarray_regression)
    lean.regression._regression = GramRegression(pls.n_components, pls.max_iter, pls.tol,
                                                 xarray_regression._stimulus_coord)
    return lean


def _deflate(v: np.ndarray, scores: list[np.ndarray]) -> np.ndarray:
    """``P_k ... P_1 v`` (the deflation of the rows of ``Xc`` applied to ``v``)."""
    v = v.copy()
    for t in scores:
        v -= t * ((t @ v) / (t @ t))
    return v


def _undeflate(v: np.ndarray, scores: list[np.ndarray]) -> np.ndarray:
    """``P_1 ... P_k v`` for the projections ``P_i = I - t_i t_i^T / t_i^T t_i`` of the earlier x scores:
    ``Xc_k^T v = Xc^T (P_1 ... P_k v)``."""
    v = v.copy()
    for t in reversed(scores):
        v -= t * ((t @ v) / (t @ t))
    return v


def _convergence_warning():
    try:
        from sklearn.exceptions import ConvergenceWarning
    except ImportError:  # pragma: no cover - sklearn comes with Brain-Score
        return UserWarning
    return ConvergenceWarning
