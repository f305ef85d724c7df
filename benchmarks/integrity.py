"""What the sha256 integrity checks cost (README "Errors, faults and inputs").

* Shards: reading one 1000-image 224 px shard and decoding every JPEG (what training, evaluation and
  analysis do with a shard) with the sha256 check (``iter_shard(path, sha256)``: read whole, hash,
  parse) against the same read without it (baseline: ``iter_shard(path)``, streamed tar).
* Weights: the check a cached zoo model gets on every load (sha256 of ``model.safetensors`` and
  ``config.json``) against the load itself (baseline: ``load_pretrained`` of the same ResNet-50
  folder with a 674-unit head).

Both sides run in this process on the same files (page cache warm), best of ``--repeats``.
Run: ``python benchmarks/integrity.py [--images 1000] [--size 224] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from PIL import Image

from latentzoo.datasets import iter_shard
from latentzoo.fileio import sha256_file
from latentzoo.hub import CONFIG_NAME, WEIGHTS_NAME, load_pretrained, save_pretrained
from latentzoo.models.network import LatentNet
from latentzoo.rendering import render_dataset


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def read_and_decode(path: Path, sha256: str | None) -> None:
    for _, jpg, _ in iter_shard(path, sha256):
        Image.open(io.BytesIO(jpg)).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = render_dataset(Path(tmp) / "ds", images=args.images, size=args.size, shard_size=args.images,
                            test_fraction=0.0, progress=False)
        entry = ds.shard_entries("train")[0]
        path = ds.root / entry["name"]
        plain = best(lambda: read_and_decode(path, None), args.repeats)
        checked = best(lambda: read_and_decode(path, entry["sha256"]), args.repeats)
        print(f"shard of {args.images} images at {args.size} px ({path.stat().st_size / 2**20:.1f} MiB): "
              f"read+decode {plain:.3f} s, with sha256 check {checked:.3f} s "
              f"(ratio {checked / plain:.3f}, overhead {100 * (checked / plain - 1):+.1f}%)")

        folder = save_pretrained(LatentNet.create("r50", "all", seed=0, num_classes=674), Path(tmp) / "r50")
        load = best(lambda: load_pretrained(folder), args.repeats)
        check = best(lambda: [sha256_file(folder / n) for n in (WEIGHTS_NAME, CONFIG_NAME)], args.repeats)
        print(f"cached ResNet-50 ({(folder / WEIGHTS_NAME).stat().st_size / 2**20:.0f} MiB): load {load:.3f} s, "
              f"sha256 check {check:.3f} s (check/load {check / load:.2f}, load+check {(load + check) / load:.2f}x)")


if __name__ == "__main__":
    main()
