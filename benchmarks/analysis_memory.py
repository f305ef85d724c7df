"""Memory of the paper protocol's streamed steps on wide, memory-mapped activations.

For 2,000 images x ``d`` flattened features (a float32 ``.npy`` memmap, as the activation cache
writes), measures the peak of allocated memory (``tracemalloc``, which numpy reports to; the memmap's
file pages are evictable page cache, not allocations) and the time of

* ``centered_gram``: one model's centred 2,000 x 2,000 Gram matrix, read in 4,096-column blocks;
* ``gaussian_projection``: the projection to ``johnson_lindenstrauss_min_dim(2000, eps=0.1)`` = 6,515
  dimensions, its Gaussian matrix generated and applied in 4,096-row blocks.

Baselines (same run): the memory the unstreamed computation needs, i.e. the array loaded into
memory as float64 (what ``linear_cka`` / ``cka_matrix`` convert it to) for the Gram, and the
``d x 6,515`` float64 Gaussian matrix of sklearn's ``GaussianRandomProjection`` (plus the float64
array) for the projection. The claim: peaks stay flat as ``d`` grows, and far below the baselines.

    .venv/bin/python benchmarks/analysis_memory.py [--widths 25088 50176] [--images 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from latentzoo.analysis.cka import centered_gram
from latentzoo.analysis.decoding import gaussian_projection, jl_dim

MB = 1 << 20


def write_memmap(path: Path, n: int, d: int) -> np.ndarray:
    """A random float32 ``n x d`` ``.npy``, written in row blocks; returned memory-mapped."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    for r in range(0, n, 100):
        out[r:r + 100] = rng.standard_normal((min(100, n - r), d), dtype=np.float32)
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def measure(fn) -> tuple[float, float]:
    """(peak allocated MB, seconds) of ``fn()``."""
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    return peak, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--widths", type=int, nargs="+", default=[25088, 50176],
                   help="feature counts (layer4 / layer3 of a ResNet-18 at 224 px; layer1 is 200704)")
    args = p.parse_args()
    n, k = args.images, jl_dim(args.images)
    print(f"{n} images, projection to {k} dimensions")
    print(f"{'features':>9} {'step':<20} {'peak MB':>8} {'baseline MB':>12} {'ratio':>6} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for d in args.widths:
            x = write_memmap(Path(tmp) / f"x{d}.npy", n, d)
            array = n * d * 8 / MB
            for name, fn, baseline in (("centered_gram", lambda: centered_gram(x), array + n * n * 8 / MB),
                                       ("gaussian_projection", lambda: gaussian_projection(x, k),
                                        array + d * k * 8 / MB)):
                peak, seconds = measure(fn)
                print(f"{d:>9} {name:<20} {peak:>8.0f} {baseline:>12.0f} {baseline / peak:>5.1f}x {seconds:>8.1f}")
            del x


if __name__ == "__main__":
    main()
