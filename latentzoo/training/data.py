"""The training stream over WebDataset shards: a global shuffle with a deterministic, resumable order.

The training stream is a pure function of ``(seed, step)``: epoch ``e`` is a random permutation,
drawn from ``(seed, e)``, of all images of the train split (a global shuffle: a batch mixes the
whole dataset, not one shard); the global batch of step ``t`` is positions ``[t*B, (t+1)*B)`` of
that endless sequence. DDP rank ``r`` of ``W`` takes the ``r``-th slice of ``B/W`` samples and
DataLoader worker ``k`` of ``n`` builds the batches of steps ``k, k+n, ...`` (the DataLoader's
round robin puts them back in step order). Images are fetched by random access
(:class:`~latentzoo.training.shards.ShardIndex`: every shard is sha256-checked once when the
stream opens, then each sample is one ``os.pread``, CRC32-checked). Hence:

* the samples of a global batch do not depend on the number of ranks or workers, so a run on
  one process and a run on ``W`` ranks see the same data;
* resuming needs only the step number: the stream restarts exactly where it stopped.

Images are decoded to uint8 ``N x 3 x S x S`` tensors in the workers (JPEG decode + resize, the
same PIL path as :meth:`LatentNet.preprocess`); ImageNet normalisation happens on the device
(:func:`normalise_images`), which keeps worker-to-trainer traffic 4x smaller.
"""

from __future__ import annotations

import io
import zlib
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from latentzoo.datasets import DatasetError, RenderedDataset, iter_shard, latent_array
from latentzoo.latents import LATENTS, POSITION_LATENTS, Normalisation, Slot, encode_targets, objective_latents
from latentzoo.images import to_rgb
from latentzoo.models.network import IMAGENET_MEAN, IMAGENET_STD
from latentzoo.training.shards import ShardIndex


def decode_image(jpeg: bytes, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """JPEG bytes -> uint8 ``3 x size x size`` array (resized like :meth:`LatentNet.preprocess`)."""
    image = to_rgb(Image.open(io.BytesIO(jpeg)))
    if image.size != (size, size):
        image = image.resize((size, size), getattr(Image.Resampling, interpolation.upper()))
    return np.array(image, dtype=np.uint8).transpose(2, 0, 1)


def normalise_images(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 ``N x 3 x H x W`` -> float, ImageNet-normalised (on the tensor's device)."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean_t) / std_t


def train_normalisation(dataset: RenderedDataset, objective: str) -> Normalisation:
    """Mean/std of the objective's position latents over the dataset's train split (latents.parquet)."""
    positions = [n for n in objective_latents(objective) if n in POSITION_LATENTS]
    return Normalisation.fit(latent_array(dataset.latents("train"), positions))


class SampleOrder:
    """The endless, seeded order of a split's samples: epoch ``e`` is a random permutation of all of
    them (a global shuffle), drawn from ``(seed, e)``."""

    def __init__(self, total: int, seed: int):
        self.total, self.seed = int(total), int(seed)

    @lru_cache(maxsize=2)
    def epoch(self, epoch: int) -> np.ndarray:
        """Sample indices of ``epoch`` in visiting order."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.total)

    def at(self, start: int, stop: int) -> np.ndarray:
        """Sample indices at global positions ``[start, stop)``."""
        positions = np.arange(start, stop)
        out = np.empty(len(positions), dtype=np.int64)
        for epoch in range(start // self.total, (stop - 1) // self.total + 1):
            inside = positions // self.total == epoch
            out[inside] = self.epoch(epoch)[positions[inside] % self.total]
        return out


def collate(samples: Sequence[tuple[str, bytes, dict]], size: int, interpolation: str = "bilinear"
            ) -> tuple[torch.Tensor, dict[str, np.ndarray], list[str]]:
    """Decode samples -> (uint8 images N x 3 x S x S, {latent: array}, keys)."""
    images = torch.from_numpy(np.stack([decode_image(jpg, size, interpolation) for _, jpg, _ in samples]))
    latents = {n: np.asarray([meta[n] for _, _, meta in samples]) for n in LATENTS
               if all(n in meta for _, _, meta in samples)}
    return images, latents, [key for key, _, _ in samples]


class TrainStream(IterableDataset):
    """Batches ``(step, uint8 images, {task: target tensor})`` of steps ``[start_step, steps)`` for one rank."""

    def __init__(self, dataset: RenderedDataset, layout: Sequence[Slot], normalisation: Normalisation | None,
                 size: int, global_batch: int, seed: int, start_step: int, steps: int,
                 rank: int = 0, world_size: int = 1, split: str = "train"):
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} ranks")
        self.index = ShardIndex.build(dataset, split)
        self.order = SampleOrder(len(self.index), seed)
        self.layout, self.normalisation, self.size = list(layout), normalisation, size
        self.global_batch, self.local_batch = global_batch, global_batch // world_size
        self.start_step, self.steps, self.rank = start_step, steps, rank

    def positions(self, step: int) -> tuple[int, int]:
        """Global sample positions ``[start, stop)`` of this rank at ``step``."""
        start = step * self.global_batch + self.rank * self.local_batch
        return start, start + self.local_batch

    def batch_digest(self, step: int) -> int:
        """CRC32 of the sample indices of the whole global batch of ``step`` (logs data order)."""
        start = step * self.global_batch
        return zlib.crc32(self.order.at(start, start + self.global_batch).tobytes())

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, dict[str, torch.Tensor]]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.start_step + worker, self.steps, n_workers):
            images, latents, _ = collate(self.index.read(self.order.at(*self.positions(step))), self.size)
            targets = encode_targets(latents, self.layout, self.normalisation)
            yield step, images, {task: torch.from_numpy(t) for task, t in targets.items()}


class EvalStream(IterableDataset):
    """Batches ``(uint8 images, {latent: array}, keys)`` of a split; workers take every n-th shard."""

    def __init__(self, dataset: RenderedDataset, split: str, size: int, batch_size: int,
                 max_images: int | None = None, interpolation: str = "bilinear"):
        self.root, self.entries = dataset.root, dataset.shard_entries(split)
        if not self.entries:
            raise DatasetError(f"{dataset.root} has no {split!r} shards")
        self.size, self.batch_size, self.interpolation = size, batch_size, interpolation
        self.max_images = max_images

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        budget = None if self.max_images is None else (self.max_images - worker + n_workers - 1) // n_workers
        pending = []
        for entry in self.entries[worker::n_workers]:
            for sample in iter_shard(self.root / entry["name"], entry["sha256"]):
                if budget is not None and budget <= 0:
                    break
                pending.append(sample)
                budget = None if budget is None else budget - 1
                if len(pending) == self.batch_size:
                    yield collate(pending, self.size, self.interpolation)
                    pending = []
        if pending:
            yield collate(pending, self.size, self.interpolation)


def loader(stream: IterableDataset, workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over a stream that already yields whole batches."""
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None, persistent_workers=False)
