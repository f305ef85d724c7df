"""Brain-Score's layer selection, runnable on a small machine: per-layer PCA, per-layer progress.

Brain-Score's ``LayerSelection`` hooks ``LayerPCA`` (1,000 principal components per layer, fitted on
ImageNet validation images it downloads from S3) onto the activations model and then runs
``LayerScores`` over the candidate layers. :func:`layer_scores` does the same with the same classes,
but fits each layer's principal components on the benchmark's own stimuli (``min(1000, n)``
components; no download). With ``n <= 1000`` stimuli the components span every stimulus's centred
activations, so the reduction loses nothing the PLS metric can use (``PLSRegression(scale=False)``
is invariant to a rotation of the features): the scores equal those on the raw activations, at a
fraction of the time and memory. Components come from the ``n x n`` Gram matrix (:class:`GramPCA`),
which for ``n`` far below the layer width equals sklearn's ``PCA`` without its ``n x d`` SVD.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from latentzoo.errors import unknown

#: Candidate lists for ``--candidates``: ``fine`` = relu, every block, avgpool, fc (``net.layers``).
CANDIDATES = ("fine", "leaderboard")
#: Brain-Score's ``LayerSelection`` default.
N_COMPONENTS = 1000
#: Brain-Score's PLS components: a layer whose stimuli span fewer dimensions keeps its raw activations
#: (sklearn's PLSRegression needs at least as many features as components).
PLS_COMPONENTS = 25
#: Features per chunk when a layer's Gram matrix and components are computed (bounds float64 copies).
CHUNK = 1 << 15


def candidate_layers(net, candidates: str) -> list[str]:
    """The named candidate list of ``net``: ``fine`` (the paper's: every block's output, avgpool, fc)
    or ``leaderboard`` (the authors' plugins: conv1, layer1-4, fc)."""
    from latentzoo.models.brainscore import LEADERBOARD_LAYERS

    if candidates not in CANDIDATES:
        raise unknown("candidate list", candidates, CANDIDATES)
    return list(net.layers) if candidates == "fine" else list(LEADERBOARD_LAYERS)


class GramPCA:
    """PCA of the rows of ``x`` (n x d) through the n x n Gram matrix: sklearn's
    ``PCA(n_components).fit(x)`` up to each component's sign, in O(n^2 d) time and float64 chunks.
    Directions with no variance (rank below ``n_components``) are dropped."""

    def __init__(self, x: np.ndarray, n_components: int):
        x = x.reshape(len(x), -1)
        self.mean_ = x.mean(0, dtype=np.float64).astype(np.float32)
        gram = np.zeros((len(x), len(x)))
        for start in range(0, x.shape[1], CHUNK):
            chunk = self._centred(x, start)
            gram += chunk @ chunk.T
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1][:n_components]
        order = order[values[order] > max(values[order[0]], 0) * 1e-10]
        u = vectors[:, order] / np.sqrt(values[order])
        self.components_ = np.empty((len(order), x.shape[1]), np.float32)
        for start in range(0, x.shape[1], CHUNK):
            self.components_[:, start:start + CHUNK] = (self._centred(x, start).T @ u).T

    def _centred(self, x: np.ndarray, start: int) -> np.ndarray:
        return x[:, start:start + CHUNK].astype(np.float64) - self.mean_[start:start + CHUNK]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Coordinates of the rows of ``x`` on the components (what ``PCA.transform`` returns)."""
        return (x.reshape(len(x), -1) - self.mean_) @ self.components_.T


def hook_pca(activations_model, paths: Sequence[str], layers: Sequence[str], batch_size: int = 64):
    """Hook Brain-Score's ``LayerPCA`` onto ``activations_model`` with components fitted on ``paths``
    (one pass through the model's own preprocessing and hooks); returns the hook's handle."""
    from brainscore_vision.model_helpers.activations.pca import LayerPCA

    extractor = activations_model._extractor  # Brain-Score's helper: the wrapper's preprocessing
    batches: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for i in range(0, len(paths), batch_size):
        images = extractor.preprocess(list(paths[i:i + batch_size]))
        for layer, value in activations_model.get_activations(images, list(layers)).items():
            batches[layer].append(value.reshape(len(value), -1))
    pca = LayerPCA(activations_model, n_components=N_COMPONENTS)
    for layer in layers:
        x = np.concatenate(batches.pop(layer))
        reduced = GramPCA(x, min(N_COMPONENTS, len(x))) if x.shape[1] > N_COMPONENTS else None
        keep = reduced is not None and len(reduced.components_) >= PLS_COMPONENTS
        pca._layer_pcas[layer] = reduced if keep else None  # as LayerPCA: None keeps the raw activations
    handle = activations_model.register_batch_activations_hook(pca)
    pca.handle = handle
    return handle


def pca_layer_scores(activations_model, model_identifier: str, benchmark, layers: Sequence[str],
                     batch_size: int = 64, progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Brain-Score's ``LayerScores`` of ``layers`` on ``benchmark`` after :func:`hook_pca` (Brain-Score's
    ``LayerSelection`` procedure): {layer: score} in candidate order, one progress line per layer.
    Brain-Score caches the reduced activations and the scores on disk under the model identifier
    and the stimulus set's identifier (for local benchmarks a digest of their files)."""
    from brainscore_vision.model_helpers.brain_transformation.neural import LayerScores

    from latentzoo.models.brainscore import VISUAL_DEGREES

    say = progress or stderr
    stimuli = stimulus_set(benchmark)
    paths = [stimuli.get_stimulus(sid) for sid in stimuli["stimulus_id"]]
    started = time.monotonic()
    say(f"{benchmark.identifier}: {min(N_COMPONENTS, len(paths))} principal components per layer from its "
        f"{len(paths)} stimuli, {len(layers)} layers")
    suffix = f"-pca{N_COMPONENTS}-{stimuli.identifier}"
    identifier = activations_model.identifier
    handle = hook_pca(activations_model, paths, layers, batch_size)
    activations_model.identifier = identifier + suffix  # cached activations name their reduction
    try:
        scoring = LayerScores(model_identifier=model_identifier + suffix, activations_model=activations_model,
                              visual_degrees=VISUAL_DEGREES)
        activations_model(stimuli, layers=list(layers))  # one pass for every layer (Brain-Score caches it)
        say(f"{benchmark.identifier}: reduced activations ready after {time.monotonic() - started:.0f} s")
        return with_progress(benchmark.identifier, layers, lambda layer: float(scoring(
            benchmark=benchmark, layers=[layer], benchmark_identifier=f"{benchmark.identifier}-{stimuli.identifier}"
        ).sel(layer=layer)), say)
    finally:
        handle.remove()
        activations_model.identifier = identifier


def with_progress(label: str, names: Sequence[str], run: Callable[[str], Any],
                  progress: Callable[[str], None] | None = None,
                  show: Callable[[Any], str] = "{:.3f}".format) -> dict[str, Any]:
    """{name: run(name)} in order, with one ``progress`` line (default: stderr) per name: its result
    (``show``) and an estimate of the time left."""
    say = progress or stderr
    results, started = {}, time.monotonic()
    for i, name in enumerate(names, 1):
        results[name] = run(name)
        left = (time.monotonic() - started) / i * (len(names) - i)
        say(f"{label}: {i}/{len(names)} {name} {show(results[name])} (about {left:.0f} s left)")
    return results


def stderr(line: str) -> None:
    """Default progress sink: one line on stderr."""
    print(line, file=sys.stderr, flush=True)


def stimulus_set(benchmark):
    """The ``StimulusSet`` a benchmark shows: a ``NeuralBenchmark``'s assembly's, or a spatial-latent one's."""
    if hasattr(benchmark, "_assembly"):
        return benchmark._assembly.stimulus_set
    benchmark._load()
    return benchmark._stimuli
