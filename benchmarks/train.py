"""Training throughput of latentzoo's trainer against baselines measured in the same run.

    python benchmarks/train.py --data DIR --arch r18 --size 64 --batch-size 64 --steps 40 --workers 2

First the data stream alone (``--only data``): images/s of batches (decoded, resized, targets
encoded, through a DataLoader with ``--workers``) of

* ``global``     latentzoo's training stream: a global shuffle, each sample fetched by
                 ``os.pread`` through the per-shard offset index (built once; its time is printed);
* ``sequential`` the baseline: shards read whole one after another (sha256-checked, as the
                 per-shard stream before the global shuffle did), batches of consecutive samples;

and the ratio global/sequential (the throughput cost of the global shuffle). Then (``--only train``)
the steady-state images/s (median over steps after a warm-up) of

* ``trainer``   latentzoo.training (streamed shards, uint8 workers, device-side normalisation; bf16
                autocast + channels_last on CUDA);
* ``reference`` a plain loop: map-style Dataset decoding each sample with PIL, fp32, no
                channels_last, shuffled DataLoader with the same number of workers, same model,
                optimiser and loss;
* ``limit``     (CUDA only) the trainer's own step fed from uint8 batches already on the GPU:
                the most any input pipeline can reach; the goal is trainer/limit >= 0.9 for
                ResNet-50 at 224 px.

and the ratios trainer/reference (and trainer/limit). Without ``--data`` a dataset is rendered
into a temporary directory first (4000 images in shards of 200: 18 train shards).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from latentzoo.datasets import RenderedDataset, iter_shard
from latentzoo.latents import encode_targets
from latentzoo.models.network import IMAGENET_MEAN, IMAGENET_STD, LatentNet
from latentzoo.training import TrainConfig, Trainer
from latentzoo.training.data import TrainStream, collate, loader, normalise_images, train_normalisation
from latentzoo.training.shards import ShardIndex
from latentzoo.training.objectives import objective_loss

WARMUP = 5


class PILDataset(Dataset):
    """The reference: every sample decoded by PIL, resized and normalised to fp32 on access."""

    def __init__(self, dataset: RenderedDataset, objective: str, size: int, layout):
        self.samples = [s for path in dataset.shard_paths("train") for s in iter_shard(path)]
        self.size, self.layout = size, layout
        self.normalisation = train_normalisation(dataset, objective)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        _, jpg, meta = self.samples[i]
        image = Image.open(io.BytesIO(jpg)).convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
        x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        targets = encode_targets({k: np.asarray([v]) for k, v in meta.items()}, self.layout, self.normalisation)
        return x, {t: torch.from_numpy(v[0]) for t, v in targets.items()}


class SequentialShards(IterableDataset):
    """The baseline stream: worker ``k`` of ``n`` reads shards ``k, k+n, ...`` whole (sha256-checked), in
    order, and yields batches of consecutive samples (targets encoded as the trainer's stream does)."""

    def __init__(self, dataset: RenderedDataset, layout, normalisation, size: int, batch: int, steps: int):
        self.dataset, self.layout, self.normalisation = dataset, layout, normalisation
        self.size, self.batch, self.steps = size, batch, steps

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        entries = self.dataset.shard_entries("train")[worker::n_workers]
        samples = (s for _ in itertools.count() for e in entries for s in self.dataset.read_shard(e))
        for _ in range(worker, self.steps, n_workers):
            images, latents, _ = collate(list(itertools.islice(samples, self.batch)), self.size)
            targets = encode_targets(latents, self.layout, self.normalisation)
            yield images, {t: torch.from_numpy(v) for t, v in targets.items()}


def stream_rates(args) -> dict[str, float]:
    """images/s of the global-shuffle stream and of the sequential baseline (same decode, same workers)."""
    dataset = RenderedDataset(args.data)
    net = LatentNet.create(args.arch, args.objective, len(dataset.categories), len(dataset.identities), seed=0)
    layout, norm = net.config.layout, train_normalisation(dataset, args.objective)
    steps = WARMUP + args.stream_steps
    tick = time.perf_counter()
    index = ShardIndex.build(dataset, "train")
    rates = {"index": len(index) / (time.perf_counter() - tick)}
    streams = {"global": TrainStream(dataset, layout, norm, args.size, args.batch_size, 0, 0, steps),
               "sequential": SequentialShards(dataset, layout, norm, args.size, args.batch_size, steps)}
    for name, stream in streams.items():
        times, tick = [], time.perf_counter()
        for _ in loader(stream, args.workers):
            now = time.perf_counter()
            times.append(now - tick)
            tick = now
        rates[name] = args.batch_size * args.stream_steps / sum(times[WARMUP:])
    return rates


def _rate(step_seconds: list[float], batch: int) -> float:
    return batch / statistics.median(step_seconds[WARMUP:])


def _timed(step, batches, steps: int, sync) -> list[float]:
    times, tick = [], time.perf_counter()
    for i, batch in zip(range(steps), batches):
        step(*batch)
        sync()
        now = time.perf_counter()
        times.append(now - tick)
        tick = now
    return times


def trainer_rate(args, device: torch.device, out: Path) -> float:
    cfg = TrainConfig(data=str(args.data), objective=args.objective, out=str(out), arch=args.arch,
                      steps=args.steps, batch_size=args.batch_size, size=args.size, workers=args.workers,
                      checkpoint_every=10 ** 9, device=str(device), progress=False, eval_images=1)
    Trainer(cfg).fit()
    with open(out / "train" / "log.csv") as f:
        per_step = [args.batch_size / float(row["images_per_s"]) for row in csv.DictReader(f)]
    return _rate(per_step, args.batch_size)


def reference_rate(args, device: torch.device, sync) -> float:
    dataset = RenderedDataset(args.data)
    net = LatentNet.create(args.arch, args.objective, len(dataset.categories), len(dataset.identities), seed=0).to(device)
    layout = net.config.layout
    data = DataLoader(PILDataset(dataset, args.objective, args.size, layout), batch_size=args.batch_size,
                      shuffle=True, num_workers=args.workers, drop_last=True, persistent_workers=args.workers > 0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x, targets):
        opt.zero_grad()
        loss, _ = objective_loss(net(x.to(device)), {t: v.to(device) for t, v in targets.items()}, layout)
        loss.backward()
        opt.step()

    def batches():
        while True:
            yield from data

    return _rate(_timed(step, batches(), args.steps, sync), args.batch_size)


def limit_rate(args, device: torch.device, out: Path, sync) -> float:
    """The trainer's step on one uint8 batch that already lives on the GPU."""
    cfg = TrainConfig(data=str(args.data), objective=args.objective, out=str(out), arch=args.arch,
                      batch_size=args.batch_size, size=args.size, device=str(device), progress=False)
    trainer = Trainer(cfg)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8, device=device)
    targets = {s.task: (torch.randint(0, s.stop - s.start, (args.batch_size,), device=device)
                        if s.task in ("category", "identity") else torch.zeros(args.batch_size, s.stop - s.start,
                                                                                device=device))
               for s in trainer.net.config.layout}

    def batches():
        while True:
            yield images, targets

    return _rate(_timed(trainer._train_step, batches(), args.steps, sync), args.batch_size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="rendered dataset (default: render 1200 images into a temp dir)")
    p.add_argument("--objective", default="distance")
    p.add_argument("--arch", default="r18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--stream-steps", type=int, default=60, help="batches timed per data stream (after a warm-up)")
    p.add_argument("--only", choices=["data", "train"], help="only the data streams, or only training")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.data is None:
            from latentzoo.rendering import render_dataset

            args.data = render_dataset(tmp / "data", images=4000, size=args.size, shard_size=200, progress=False).root
        if args.only != "train":
            rates = stream_rates(args)
            print(f"data stream, {args.size} px, batch {args.batch_size}, {args.workers} workers, "
                  f"{args.stream_steps} batches after {WARMUP} warm-up")
            print(f"index      {rates['index']:8.1f} images/s  (sha256 + offsets, once per run)")
            print(f"global     {rates['global']:8.1f} images/s  (global shuffle, os.pread per sample)")
            print(f"sequential {rates['sequential']:8.1f} images/s  (baseline: shards read whole, in order)")
            print(f"global / sequential = {rates['global'] / rates['sequential']:.2f}")
        if args.only == "data":
            return
        ours = trainer_rate(args, device, tmp / "trainer")
        ref = reference_rate(args, device, sync)
        print(f"device {device}, {args.arch} at {args.size} px, batch {args.batch_size}, {args.workers} workers, "
              f"median of {args.steps - WARMUP} steps")
        print(f"trainer   {ours:8.1f} images/s")
        print(f"reference {ref:8.1f} images/s  (fp32, per-sample PIL in a map-style Dataset)")
        print(f"trainer / reference = {ours / ref:.2f}")
        if device.type == "cuda":
            limit = limit_rate(args, device, tmp / "limit", sync)
            print(f"limit     {limit:8.1f} images/s  (same step, uint8 batch already on the GPU)")
            print(f"trainer / limit = {ours / limit:.2f}  (goal >= 0.90 for r50 at 224 px)")
        else:
            print("trainer / limit: not measured (no CUDA device)")


if __name__ == "__main__":
    main()
