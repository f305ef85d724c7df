"""Time `latentzoo layermap` (Brain-Score's layer selection over the 11 fine ResNet-18 candidates) on a
local benchmark of N stimuli at 224 px, both of latentzoo's paths, against Brain-Score's ``LayerScores``
on the raw activations (what layermap ran before: timed on ``--baseline-layers`` and scaled to 11).

    .venv/bin/python benchmarks/layermap.py [--stimuli 300] [--pls brainscore kernel] [--baseline-layers ...]

Paths: ``--pls brainscore`` = ``LayerPCA`` (components fitted on the stimuli) + Brain-Score's
``LayerScores`` and PLS; ``--pls kernel`` = latentzoo's exact kernel PLS on the raw activations, one
layer at a time. Prints wall and CPU seconds of each (CPU seconds are the fairer figure on a shared
machine), the baseline's (timed on a few layers, scaled to 11: approximate) and the largest score
difference to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import numpy as np  # noqa: E402


def write_benchmark(folder: Path, n: int) -> None:
    """``n`` 224 px images of 8 colour classes; 20 IT neuroids = noisy linear read-outs of the pixels."""
    import pandas as pd
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, features = [], []
    for i in range(n):
        colour = rng.uniform(0, 255, 3)
        pixels = np.clip(rng.normal(colour, 50, size=(224, 224, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{i:04d}.png")
        rows.append({"stimulus_id": f"{i:04d}", "filename": f"images/{i:04d}.png", "object_name": f"o{i % 8}"})
        features.append(pixels[::16, ::16].reshape(-1) / 255)
    signal = np.asarray(features) @ rng.normal(size=(len(features[0]), 20))
    signal = (signal - signal.mean(0)) / signal.std(0)
    pd.DataFrame(rows).to_csv(folder / "stimuli.csv", index=False)
    pd.DataFrame([{"stimulus_id": f"{i:04d}", "repetition": r, "neuroid_id": f"n{k}",
                   "response": signal[i, k] + rng.normal(0, 0.5)} for i in range(n) for r in range(2)
                  for k in range(20)]).to_csv(folder / "responses.csv", index=False)
    (folder / "benchmark.json").write_text(json.dumps({"region": "IT"}))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stimuli", type=int, default=300)
    p.add_argument("--pls", nargs="+", default=["brainscore", "kernel"], choices=["brainscore", "kernel"],
                   help="layermap paths to time")
    p.add_argument("--baseline-layers", nargs="*", default=["avgpool", "layer4.1.relu"],
                   help="layers Brain-Score's raw LayerScores is timed on (none: skip the baseline)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
            os.environ[var] = str(tmp / var.lower())
        write_benchmark(tmp / "bench", args.stimuli)
        from brainscore_vision.model_helpers.brain_transformation.neural import LayerScores

        from latentzoo.models.brainscore import VISUAL_DEGREES, choose_layers, load_benchmark, wrap
        from latentzoo.weights import from_pretrained

        name, bench = "untrained-r18-s0", f"local:{tmp / 'bench'}"
        print(f"ResNet-18 (224 px), {args.stimuli} stimuli, {os.cpu_count()} CPUs; wall s (CPU s)", flush=True)
        results = {}
        for pls in args.pls:
            wall, cpu = time.perf_counter(), cpu_seconds()
            results[pls] = choose_layers(name, [bench], pls=pls, candidates="fine", batch_size=32,
                                         progress=lambda line: print(f"  [{pls}] {line}", file=sys.stderr))["IT"]
            print(f"  layermap --pls {pls}, {len(results[pls])} fine candidates: {time.perf_counter() - wall:.0f} s "
                  f"({cpu_seconds() - cpu:.0f} s); best {max(results[pls], key=results[pls].get)}", flush=True)
        if args.baseline_layers:
            net = from_pretrained(name)
            scoring = LayerScores(model_identifier="baseline", activations_model=wrap(net, "baseline", 32),
                                  visual_degrees=VISUAL_DEGREES)
            wall, cpu = time.perf_counter(), cpu_seconds()
            raw = scoring(benchmark=load_benchmark(bench), layers=args.baseline_layers, prerun=True)
            scale = 11 / len(args.baseline_layers)
            wall, cpu = (time.perf_counter() - wall) * scale, (cpu_seconds() - cpu) * scale
            print(f"  baseline, Brain-Score's LayerScores on the raw activations ({', '.join(args.baseline_layers)} "
                  f"timed, scaled to 11 layers): {wall:.0f} s ({cpu:.0f} s)")
            for pls, scores in results.items():
                diff = max(abs(float(raw.sel(layer=layer)) - scores[layer]) for layer in args.baseline_layers)
                print(f"  --pls {pls}: largest score difference to the baseline {diff:.1e}")


if __name__ == "__main__":
    main()
