"""Rendering throughput: images/s at 64 and 224 px, with and without writing a dataset.

Everything is measured in this one run and printed as a ratio to the same run's raw rate
(``EmbeddedBackend.draw`` = draw + readback of pre-sampled scenes, the limit of this machine):

* raw      - draw + RGBA readback only
* render   - sampler + draw + readback + RGB/mask split (what ``Backend.render`` costs)
* write    - ``render_dataset`` in one process: all of the above + JPEG + tar shards + parquet/json

Stages run interleaved, best of ``--repeats``, so other load on the machine affects all alike.

Goal: ``write`` costs under 25% of the raw rate (ratio >= 0.75).

    python benchmarks/render.py [--images 600] [--sizes 64 224] [--msaa 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from latentzoo.rendering import RenderSettings, render_dataset
from latentzoo.rendering.embedded import EmbeddedBackend
from latentzoo.rendering.libraries import get_library
from latentzoo.rendering.sampler import SamplerConfig, SceneSampler


def _rate(n: int, fn) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def bench(size: int, images: int, msaa: int, workdir: Path, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` images/s of the three stages at ``size`` px."""
    library = get_library("procedural")
    backend = EmbeddedBackend(RenderSettings(size=size, fov_deg=60.0, msaa=msaa))
    sampler = SceneSampler(library.identity_category, library.categories, 0,
                           config=SamplerConfig(n_backgrounds=backend.background_count))
    scenes = [sampler(i) for i in range(images)]
    for scene in scenes:  # upload every mesh and background texture once
        backend.draw(scene)
    kw = dict(images=images, size=size, seed=0, msaa=msaa, shard_size=200, test_fraction=0.0, progress=False)
    render_dataset(workdir / f"warm{size}", **kw)  # the writer's backend uploads its meshes too
    runs = {
        "raw": lambda k: [backend.draw(s) for s in scenes],
        "render": lambda k: [backend.render(sampler(i)) for i in range(images)],
        "write": lambda k: render_dataset(workdir / f"timed{size}-{k}", **kw),
    }
    rates = {name: 0.0 for name in runs}
    for k in range(repeats):  # interleaved, best of `repeats`: robust to other load on the machine
        for name, run in runs.items():
            rates[name] = max(rates[name], _rate(images, lambda: run(k)))
    backend.close()
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    p.add_argument("--msaa", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            r = bench(size, args.images, args.msaa, Path(tmp), args.repeats)
            print(f"{size:4d} px msaa {args.msaa}: raw {r['raw']:6.0f} img/s | render {r['render']:6.0f} img/s "
                  f"({r['render'] / r['raw']:.2f} x raw) | write {r['write']:6.0f} img/s "
                  f"({r['write'] / r['raw']:.2f} x raw; writing costs {100 * (1 - r['write'] / r['raw']):.0f}%)")


if __name__ == "__main__":
    main()
