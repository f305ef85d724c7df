"""Brain-Score's PLS against latentzoo's kernel PLS on a MajajHong-shaped synthetic benchmark.

3,200 stimuli of 64 objects (50 each), 168 sites, Brain-Score's ``load_metric("pls")`` with 10 splits
stratified by object; float32 activations as wide as ResNet-18 ``layer3`` (50,176), ResNet-50 ``layer3``
(200,704) and ``layer2`` (401,408); ``random`` (i.i.d. ReLU activations, unrelated targets: NIPALS runs
to its 500-iteration cap) and ``structured`` (low-rank ReLU activations, targets a noisy linear function
of 4,096 of them: NIPALS converges as on real data).

Each measurement runs in a fresh process and reports its wall time and peak resident memory (VmHWM):

* baseline, Brain-Score: the activations as one in-memory assembly, its ``CrossRegressedCorrelation``
  with sklearn's ``PLSRegression`` (what ``brainscore score --pls brainscore`` runs). Its splits take
  minutes to hours each, so it runs ``--bs-splits`` of them (same metric, same splits) and its 10-split
  time is that per-split time x 10; widths above ``--bs-max-features`` are not run and Brain-Score's own
  pre-flight estimate is printed instead.
* latentzoo: activations appended batch by batch to chunk files (:class:`LayerStore`), one Gram matrix,
  the same metric with :func:`lean_metric` for all 10 splits (and for ``--bs-splits``, to compare scores).

Run: ``python benchmarks/scoring.py [--widths r18-layer3 r50-layer3 r50-layer2] [--kinds random
structured] [--bs-splits 1] [--bs-max-features 60000] [--stimuli 3200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("TQDM_DISABLE", "1")

WIDTHS = {"r18-layer4": 25088, "r18-layer3": 50176, "r50-layer3": 200704, "r50-layer2": 401408}
SITES, OBJECTS, SPLITS, BATCH = 168, 64, 10, 64


class Synthetic:
    """Row batches of float32 activations (:meth:`batches`); ``targets`` (n x SITES) once they are all out."""

    def __init__(self, kind: str, n: int, d: int, seed: int = 0):
        self.kind, self.n, self.d, self.rng, self.targets = kind, n, d, np.random.default_rng(seed), None

    def batches(self):
        rng, d = self.rng, self.d
        if self.kind == "structured":
            loadings = rng.standard_normal((64, d), dtype=np.float32) / 8
            scales = (1.0 / np.arange(1, 65)).astype(np.float32)
            chosen, weights = rng.choice(d, 4096, replace=False), rng.standard_normal((4096, SITES)) / 64
        signal = np.zeros((self.n, SITES))
        for start in range(0, self.n, BATCH):
            b = min(BATCH, self.n - start)
            if self.kind == "structured":
                latent = rng.standard_normal((b, 64), dtype=np.float32) * scales
                x = np.maximum(latent @ loadings + 0.3 * rng.standard_normal((b, d), dtype=np.float32), 0)
                signal[start:start + b] = x[:, chosen] @ weights
            else:
                x = np.maximum(rng.standard_normal((b, d), dtype=np.float32) + 0.3, 0)
            yield x
        noise = rng.standard_normal((self.n, SITES))
        self.targets = noise if self.kind == "random" else signal / signal.std(0) + noise


def assemblies(n: int, targets: np.ndarray):
    """Presentation coordinates (stimulus_id, object_name) and the target NeuroidAssembly."""
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    presentation = {"stimulus_id": np.array([f"s{i:05d}" for i in range(n)]),
                    "object_name": np.array([f"o{i % OBJECTS:02d}" for i in range(n)])}
    target = NeuroidAssembly(targets, coords={**{k: ("presentation", v) for k, v in presentation.items()},
                                              "neuroid_id": ("neuroid", [f"site{j}" for j in range(SITES)]),
                                              "region": ("neuroid", ["IT"] * SITES)},
                             dims=["presentation", "neuroid"])
    return presentation, target


def metric(splits: int):
    from brainscore_vision import load_metric

    return load_metric("pls", crossvalidation_kwargs=dict(stratification_coord="object_name", splits=splits))


def peak_gib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024 ** 2


def child(method: str, kind: str, n: int, d: int, splits: int) -> dict:
    """One measurement (in this process): scores, seconds and peak GiB."""
    warnings.simplefilter("ignore")
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    from latentzoo.models.gram_scoring import LayerStore
    from latentzoo.models.pls import gram_assembly, lean_metric

    result = {"method": method, "kind": kind, "features": d}
    if method == "brainscore":
        data = Synthetic(kind, n, d)
        x = np.concatenate(list(data.batches()))
        presentation, target = assemblies(n, data.targets)
        source = NeuroidAssembly(x, coords={**{k: ("presentation", v) for k, v in presentation.items()},
                                            "neuroid_id": ("neuroid", np.arange(d))}, dims=["presentation", "neuroid"])
        start = time.perf_counter()
        score = metric(splits)(source, target)
        result.update(splits=splits, seconds=time.perf_counter() - start, score=float(score.values))
    else:
        with tempfile.TemporaryDirectory(prefix="scoring-bench-") as directory:
            store, writing, data = LayerStore(Path(directory)), 0.0, Synthetic(kind, n, d)
            for x in data.batches():
                start = time.perf_counter()
                store.append(x)
                writing += time.perf_counter() - start
            start = time.perf_counter()
            G = store.gram()
        gram_seconds = time.perf_counter() - start + writing
        presentation, target = assemblies(n, data.targets)
        source = gram_assembly(G, presentation, d)
        start = time.perf_counter()
        score = lean_metric(metric(SPLITS))(source, target)
        result.update(splits=SPLITS, seconds=gram_seconds + time.perf_counter() - start, gram_seconds=gram_seconds,
                      score=float(score.values))
        if splits != SPLITS:
            result["score_bs_splits"] = float(lean_metric(metric(splits))(source, target).values)
    result["peak_gib"] = peak_gib()
    return result


def measure(method: str, kind: str, n: int, d: int, splits: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, kind, str(n), str(d), str(splits)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"method": method, "kind": kind, "features": d, "error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", default=["r18-layer3", "r50-layer3", "r50-layer2"], choices=WIDTHS)
    parser.add_argument("--kinds", nargs="+", default=["random", "structured"], choices=["random", "structured"])
    parser.add_argument("--bs-splits", type=int, default=1, help="splits Brain-Score's PLS runs (of 10)")
    parser.add_argument("--bs-max-features", type=int, default=60000, help="widest activations Brain-Score's PLS runs on")
    parser.add_argument("--stimuli", type=int, default=3200)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, kind, n, d, splits = args.child
        print(json.dumps(child(method, kind, int(n), int(d), int(splits))))
        return
    from brainscore_vision.benchmark_helpers.memory import _PLS_OVERHEAD_FACTOR, available_memory_gb

    n = args.stimuli
    print(f"{n} stimuli, {SITES} sites, {OBJECTS} objects, {SPLITS} stratified splits; Brain-Score's PLS runs "
          f"{args.bs_splits} split(s), its 10-split time = per-split x {SPLITS}")
    print("width       kind        method      time(10 splits)  peak GiB  score     |score diff|  time ratio  memory ratio")
    for width in args.widths:
        d = WIDTHS[width]
        for kind in args.kinds:
            ours = measure("kernel", kind, n, d, args.bs_splits)
            if "error" in ours:
                print(f"{width:11s} {kind:11s} kernel      failed: {ours['error']}")
                continue
            print(f"{width:11s} {kind:11s} kernel      {ours['seconds']:10.1f} s    {ours['peak_gib']:8.2f}  "
                  f"{ours['score']:.6f}  (Gram {ours['gram_seconds']:.0f} s)", flush=True)
            if d > args.bs_max_features:
                estimate = n * d * 4 / 1024 ** 3 * _PLS_OVERHEAD_FACTOR
                print(f"{width:11s} {kind:11s} brainscore  not run: its pre-flight asks for {estimate:.1f} GiB "
                      f"({available_memory_gb():.1f} GiB available here); memory ratio >= "
                      f"{estimate / ours['peak_gib']:.0f}x", flush=True)
                continue
            theirs = measure("brainscore", kind, n, d, args.bs_splits)
            if "error" in theirs:
                print(f"{width:11s} {kind:11s} brainscore  failed: {theirs['error']}")
                continue
            full = theirs["seconds"] * SPLITS / theirs["splits"]
            diff = abs(theirs["score"] - ours.get("score_bs_splits", ours["score"]))
            print(f"{width:11s} {kind:11s} brainscore  {full:10.1f} s    {theirs['peak_gib']:8.2f}  "
                  f"{theirs['score']:.6f}  {diff:.1e}      {full / ours['seconds']:8.1f}x  "
                  f"{theirs['peak_gib'] / ours['peak_gib']:8.1f}x", flush=True)


if __name__ == "__main__":
    main()
