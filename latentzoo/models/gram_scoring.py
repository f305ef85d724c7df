"""Score Brain-Score's ``-pls`` benchmarks on Gram matrices: the recorded layer's activations go to disk
batch by batch (float32, one file per feature chunk), become one ``n x n`` Gram matrix, and the benchmark
runs as usual (its stimuli, screen placement, cross-validation, correlation and ceiling) with
:func:`latentzoo.models.pls.lean_metric` in place of its ``PLSRegression``.

Memory: a few ``n x n`` float64 matrices plus one feature chunk, instead of Brain-Score's in-memory
activations copied to float64 per split (its pre-flight estimates 7x the float32 activations).
Temporary disk: the layer's float32 activations once, in the system temp folder (``TMPDIR``), in a folder
named after the process; folders of processes that no longer run (killed mid-scoring) are removed before
a new one is made.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import shutil
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from latentzoo.errors import UserError, unknown
from latentzoo.models.pls import RankError, gram, gram_assembly, lean_metric

#: ``--pls`` choices: latentzoo's kernel form (default) or Brain-Score's own ``PLSRegression``.
PLS_METHODS = ("kernel", "brainscore")
#: Features per chunk file (n x 4096 float64 = 105 MB at 3,200 stimuli).
CHUNK = 4096
GIB = 1024 ** 3
#: n x n float64 matrices alive at the peak: Gram, its CV train/test subsets and their sorted copies,
#: the split's centred training Gram.
GRAM_COPIES = 6


class LayerStore:
    """One layer's flattened float32 activations, appended by row batches to one file per feature chunk."""

    def __init__(self, directory: Path, chunk: int | None = None):
        self.directory, self.chunk, self.rows, self.features = Path(directory), chunk or CHUNK, 0, None
        self.directory.mkdir(parents=True, exist_ok=True)

    def append(self, batch: np.ndarray) -> None:
        """Append a batch (rows x any feature shape), flattened as Brain-Score flattens layer outputs."""
        batch = np.ascontiguousarray(batch, dtype=np.float32).reshape(len(batch), -1)
        self.features = batch.shape[1]
        for j, start in enumerate(range(0, self.features, self.chunk)):
            with open(self.directory / f"{j:05d}.f32", "ab") as f:
                np.ascontiguousarray(batch[:, start:start + self.chunk]).tofile(f)
        self.rows += len(batch)

    def gram(self) -> np.ndarray:
        """The Gram matrix of the stored rows (:func:`latentzoo.models.pls.gram`); chunk files are
        deleted as they are read."""
        def chunks():
            for path in sorted(self.directory.glob("*.f32")):
                chunk = np.fromfile(path, dtype=np.float32).reshape(self.rows, -1)
                path.unlink()
                yield chunk
        return gram(chunks())


class Capture:
    """Brain-Score batch-activations hook: stores each layer's batch in a :class:`LayerStore` and hands
    Brain-Score a column of row numbers instead, so its packaging keeps the stimulus metadata (and any
    reordering) at no memory cost. Checks memory and disk on the first batch (:func:`preflight`)."""

    def __init__(self, directory: Path, stimuli: int):
        self.directory, self.stimuli, self.stores = Path(directory), stimuli, OrderedDict()

    def __call__(self, batch: "OrderedDict[str, np.ndarray]") -> "OrderedDict[str, np.ndarray]":
        if not self.stores:
            preflight(self.stimuli, sum(int(np.prod(a.shape[1:])) for a in batch.values()),
                      max(len(a) for a in batch.values()), self.directory)
        rows = None
        for layer, values in batch.items():
            store = self.stores.setdefault(layer, LayerStore(self.directory / f"layer{len(self.stores)}"))
            rows = np.arange(store.rows, store.rows + len(values))
            store.append(values)
        return OrderedDict((layer, rows[:, None].astype(np.int64)) for layer in batch)

    def gram(self) -> tuple[np.ndarray, int]:
        """The Gram matrix over all captured layers (their features concatenated) and the feature count."""
        G = sum(store.gram() for store in self.stores.values())
        return G, sum(store.features for store in self.stores.values())


def preflight(stimuli: int, features: int, batch: int, directory: Path) -> None:
    """Refuse (one line) when the Gram form cannot fit: memory for :data:`GRAM_COPIES` ``n x n`` float64
    matrices, one float64 feature chunk and a batch of activations; temporary disk for the float32
    activations."""
    from brainscore_vision.benchmark_helpers.memory import _PLS_OVERHEAD_FACTOR, available_memory_gb

    memory = (GRAM_COPIES * stimuli ** 2 * 8 + 3 * stimuli * min(CHUNK, features) * 8
              + 3 * batch * features * 4) / GIB
    disk = stimuli * features * 4 / GIB
    available, free = available_memory_gb(), shutil.disk_usage(directory).free / GIB
    print(f"[kernel PLS] {stimuli:,} stimuli x {features:,} features: about {memory:.2f} GiB of memory "
          f"({available:.1f} available), {disk:.2f} GiB of temporary disk ({free:.1f} free); Brain-Score's "
          f"PLS pre-flight would ask for {_PLS_OVERHEAD_FACTOR * disk:.1f} GiB", file=sys.stderr, flush=True)
    if memory > available:
        raise UserError(f"kernel PLS on {stimuli:,} stimuli needs about {memory:.1f} GiB of memory for its "
                        f"{stimuli:,} x {stimuli:,} Gram matrices; only {available:.1f} GiB is available")
    if disk > free:
        raise UserError(f"kernel PLS needs {disk:.1f} GiB of temporary disk in {directory.parent} for "
                        f"{stimuli:,} x {features:,} float32 activations; {free:.1f} GiB is free (set TMPDIR)")


class _LayersDone(Exception):
    """Raised once every requested layer has run: the rest of the forward pass is not needed."""


def forward_until(wrapper, images, layer_names) -> "OrderedDict[str, np.ndarray]":
    """Brain-Score's ``PytorchWrapper.get_activations`` (same input handling, same layer outputs), with a
    forward pass that stops once the requested layers have run (``layer2`` of a ResNet-50: 45% of it)."""
    import torch

    images = torch.stack([image if isinstance(image, torch.Tensor) else torch.from_numpy(image) for image in images])
    images = images.to(wrapper._device).to(next(wrapper._model.parameters()).dtype)
    outputs = OrderedDict()

    def store(name):
        def hook(module, inputs, output):
            outputs[name] = wrapper._tensor_to_numpy(output)
            if len(outputs) == len(layer_names):
                raise _LayersDone
        return hook

    handles = [wrapper.get_layer(name).register_forward_hook(store(name)) for name in layer_names]
    wrapper._model.eval()
    try:
        with torch.no_grad():
            wrapper._model(images, **wrapper._forward_kwargs)
    except _LayersDone:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return OrderedDict((name, outputs[name]) for name in layer_names)


@contextlib.contextmanager
def captured(activations_model, capture: Capture):
    """Run ``activations_model`` with ``capture`` as its last batch hook, Brain-Score's activations cache
    off (what it would store are row numbers) and, for a ``PytorchWrapper``, :func:`forward_until`."""
    from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper

    extractor = activations_model._extractor
    handle = extractor.register_batch_activations_hook(capture)
    identifier, extractor.identifier = extractor.identifier, False
    get_activations = extractor.get_activations
    if isinstance(activations_model, PytorchWrapper):
        extractor.get_activations = functools.partial(forward_until, activations_model)
    try:
        yield
    finally:
        handle.remove()
        extractor.identifier, extractor.get_activations = identifier, get_activations


TEMP_PREFIX = "latentzoo-pls-"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp(root: str | os.PathLike | None = None) -> list[Path]:
    """Delete the ``latentzoo-pls-<pid>-*`` folders under ``root`` (default: the temp folder) whose process
    is gone, e.g. a scoring run killed while its activations were on disk; returns what was removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class GramCandidate:
    """A brain model as a ``-pls`` benchmark sees it under :func:`lean_benchmark`: ``look_at`` returns the
    Gram assembly (:func:`latentzoo.models.pls.gram_assembly`) of the recorded layer(s)."""

    def __init__(self, model, activations_model):
        self._model, self._activations_model = model, activations_model

    def visual_degrees(self):
        return self._model.visual_degrees()

    def start_recording(self, *args, **kwargs):
        return self._model.start_recording(*args, **kwargs)

    def look_at(self, stimuli, number_of_trials: int = 1):
        from brainscore_core.supported_data_standards.brainio.assemblies import walk_coords

        remove_stale_temp()
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as directory:
            capture = Capture(Path(directory), len(stimuli))
            with captured(self._activations_model, capture):
                placeholder = self._model.look_at(stimuli, number_of_trials=number_of_trials)
            G, features = capture.gram()
        placeholder = placeholder.squeeze("time_bin") if "time_bin" in placeholder.dims else placeholder
        rows = placeholder.transpose("presentation", "neuroid").values[:, 0]
        if not np.array_equal(rows, np.arange(len(G))):
            G = G[np.ix_(rows, rows)]
        presentation = {name: values for name, dims, values in walk_coords(placeholder) if dims == ("presentation",)}
        return gram_assembly(G, presentation, features)


def lean_benchmark(benchmark):
    """A copy of a Brain-Score ``NeuralBenchmark`` scoring with :func:`~latentzoo.models.pls.lean_metric`,
    or ``None`` when it is not a cross-validated PLS benchmark."""
    from brainscore_vision.benchmark_helpers.neural_common import NeuralBenchmark

    metric = lean_metric(getattr(benchmark, "_similarity_metric", None))
    if metric is None or not isinstance(benchmark, NeuralBenchmark):
        return None
    lean = copy.copy(benchmark)
    lean._similarity_metric = metric
    return lean


def score_lean(benchmark, model):
    """Score ``model`` (a Brain-Score model with an ``activations_model``, e.g. a ``ModelCommitment``) on a
    ``-pls`` benchmark with kernel PLS; ``None`` when either does not allow it (then use Brain-Score's),
    e.g. when a split has fewer independent stimuli or features than PLS components (:class:`RankError`)."""
    lean = lean_benchmark(benchmark)
    activations_model = getattr(model, "activations_model", None)
    if lean is None or not hasattr(activations_model, "_extractor"):
        return None
    try:
        return lean(GramCandidate(model, activations_model))
    except RankError as e:
        print(f"[kernel PLS] {benchmark.identifier}: {e}; scoring with Brain-Score's PLS", file=sys.stderr)
        return None


def check_pls(pls: str) -> str:
    """``pls`` when it is one of :data:`PLS_METHODS`, else an unknown-name error."""
    if pls not in PLS_METHODS:
        raise unknown("PLS method", pls, PLS_METHODS)
    return pls


def score_pls(benchmark, model, pls: str = "kernel"):
    """Score ``model`` on ``benchmark``: ``-pls`` benchmarks with kernel PLS when ``pls`` is ``kernel`` (and the
    model has an activations model), else through Brain-Score's ``score_benchmark`` (its pre-flight and
    regression). Returns (score, method): ``kernel``, ``brainscore``, or ``""`` for a benchmark without PLS."""
    from brainscore_core.benchmarks import score_benchmark

    result = score_lean(benchmark, model) if check_pls(pls) == "kernel" else None
    if result is not None:
        return result, "kernel"
    return score_benchmark(benchmark, model), "brainscore" if lean_benchmark(benchmark) is not None else ""


def layer_scores(benchmark, activations_model, layers, identifier: str, visual_degrees: float):
    """Kernel-PLS score (:func:`score_pls`) of each candidate layer on a ``-pls`` benchmark, as Brain-Score's
    ``LayerScores`` maps them (one ``LayerMappedModel`` per layer), one layer's activations at a time:
    {layer: score}, or ``None`` when the benchmark is not a cross-validated PLS benchmark."""
    from brainscore_vision.model_helpers.brain_transformation import TemporalAligned
    from brainscore_vision.model_helpers.brain_transformation.neural import LayerMappedModel

    if lean_benchmark(benchmark) is None:
        return None
    scores = {}
    for layer in layers:
        model = TemporalAligned(LayerMappedModel(identifier=f"{identifier}-{layer}", visual_degrees=visual_degrees,
                                                 activations_model=activations_model,
                                                 region_layer_map={benchmark.region: layer}))
        scores[layer] = float(score_pls(benchmark, model)[0].values)
    return scores
