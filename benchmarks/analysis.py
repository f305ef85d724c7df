"""Speed of latentzoo.analysis against named baselines, measured in one run; prints ratios.

(a) All-pairs linear CKA for 12 models x 4 layers x 2000 images (random features of the pooled
    ResNet-18 widths 64/128/256/512): :func:`latentzoo.analysis.cka.cka_matrix` versus the
    textbook formula ``HSIC = tr(K H L H) / (n-1)^2`` with explicit centring matrices
    ``H = I - 11^T/n`` in numpy, pair by pair (goal: 20x or more, same values to 1e-6). The
    textbook loop is timed on ``--baseline-pairs`` pairs and scaled to all 1128 pairs (it would
    run for tens of minutes); the values are compared on those pairs.
(b) Activation extraction images/s: :func:`latentzoo.analysis.activations.extract` versus
    Brain-Score's own ``PytorchWrapper`` (``load_preprocess_images``) on the same JPEG files,
    the same ResNet-18 and the same layers (goal: 3x or more). Ours is timed writing the full
    activations (what Brain-Score returns) and with global average pooling (what the report uses).

    python benchmarks/analysis.py [--images 256] [--device cpu] [--only cka|extraction] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from latentzoo.analysis.activations import Stimuli, extract  # noqa: E402
from latentzoo.analysis.cka import cka_matrix  # noqa: E402
from latentzoo.models.network import LatentNet  # noqa: E402

LAYERS = ["layer1.0.relu", "layer2.0.relu", "layer3.0.relu", "layer4.0.relu", "avgpool"]


def textbook_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA exactly as written in Kornblith et al. (2019), eq. 3, with H = I - 11^T/n."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def bench_cka(n_models: int, n_images: int, baseline_pairs: int) -> None:
    rng = np.random.default_rng(0)
    widths = (64, 128, 256, 512)
    shared = rng.standard_normal((n_images, 32))  # models share some structure, as trained nets do
    feats = [np.maximum(shared @ rng.standard_normal((32, d)) + rng.standard_normal((n_images, d)), 0)
             .astype(np.float32) for _ in range(n_models) for d in widths]
    m = len(feats)
    pairs = m * (m - 1) // 2
    t0 = time.perf_counter()
    ours = cka_matrix(feats)
    t_ours = time.perf_counter() - t0
    chosen = [(i, j) for i in range(m) for j in range(i + 1, m)]
    chosen = [chosen[k] for k in np.linspace(0, pairs - 1, baseline_pairs).astype(int)]
    t0 = time.perf_counter()
    reference = [textbook_cka(feats[i].astype(np.float64), feats[j].astype(np.float64)) for i, j in chosen]
    t_pair = (time.perf_counter() - t0) / len(chosen)
    err = max(abs(ours[i, j] - r) for (i, j), r in zip(chosen, reference))
    t_text = t_pair * pairs
    print(f"(a) all-pairs linear CKA: {n_models} models x {len(widths)} layers x {n_images} images "
          f"= {pairs} pairs")
    print(f"    latentzoo cka_matrix        {t_ours:9.2f} s")
    print(f"    textbook tr(KHLH), numpy    {t_text:9.2f} s  ({t_pair:.3f} s/pair x {pairs} pairs, "
          f"timed on {len(chosen)} pairs)")
    print(f"    ratio {t_text / t_ours:.1f}x (goal >= 20x); max |difference| {err:.2e} (goal <= 1e-6)")


def write_images(folder: Path, n: int, size: int = 256) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for i in range(n):
        path = folder / f"img{i:05d}.jpg"
        Image.fromarray(np.roll(base, i * 7, axis=(0, 1))).save(path, quality=90)
        paths.append(path)
    return paths


def bench_extraction(n_images: int, device: str, batch_size: int) -> None:
    from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper, load_preprocess_images

    net = LatentNet.create("r18", "all", seed=0).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp) / "images", n_images)
        stimuli = Stimuli.from_folder(Path(tmp) / "images")
        extract(net, stimuli, ["avgpool"], batch_size=batch_size, progress=False)  # warm-up
        timings = {}
        for label, pooling in (("latentzoo extract, full activations", "none"),
                               ("latentzoo extract, avg pooled", "avg")):
            t0 = time.perf_counter()
            ours = extract(net, stimuli, LAYERS, pooling=pooling, batch_size=batch_size,
                           cache_dir=Path(tmp) / f"cache-{pooling}", progress=False)
            timings[label] = time.perf_counter() - t0
        net = net.to(memory_format=torch.contiguous_format)
        wrapper = PytorchWrapper(model=net, preprocessing=functools.partial(load_preprocess_images, image_size=224),
                                 identifier="benchmark", batch_size=batch_size)
        t0 = time.perf_counter()
        theirs = wrapper(stimuli=[str(p) for p in paths], layers=LAYERS)
        t_bs = time.perf_counter() - t0
        full = np.concatenate([np.asarray(extract(net, stimuli, [layer], pooling="none", batch_size=batch_size,
                                                  cache_dir=Path(tmp) / "cache-none", progress=False)[layer])
                               for layer in LAYERS], axis=1)
        diff = np.abs(full - theirs.values).max() / np.abs(theirs.values).max()
    print(f"(b) activation extraction: {n_images} JPEGs 256 px -> 224, ResNet-18, {len(LAYERS)} layers, "
          f"batch {batch_size}, device {device}")
    print(f"    Brain-Score PytorchWrapper          {n_images / t_bs:8.1f} images/s")
    for label, t in timings.items():
        print(f"    {label:35s} {n_images / t:8.1f} images/s  ratio {t_bs / t:.1f}x (goal >= 3x)")
    print(f"    same values: max |difference| / max |activation| = {diff:.1e} ({theirs.shape[1]} units)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=12)
    p.add_argument("--cka-images", type=int, default=2000)
    p.add_argument("--baseline-pairs", type=int, default=4)
    p.add_argument("--images", type=int, default=256, help="images for the extraction benchmark")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", choices=["cka", "extraction"], help="run one of the two benchmarks")
    p.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    args = p.parse_args()
    if args.quick:
        args.models, args.cka_images, args.baseline_pairs, args.images = 2, 300, 2, 32
    if args.only != "extraction":
        bench_cka(args.models, args.cka_images, args.baseline_pairs)
    if args.only != "cka":
        bench_extraction(args.images, args.device, args.batch_size)


if __name__ == "__main__":
    main()
