"""The trainer: Adam on an objective's loss, streamed shards, DDP, atomic checkpoints, exact resume.

One process::

    latentzoo train --data data/quick --objective distance --arch r18 --steps 1000 --out runs/d

Many (one machine or several; ``torchrun`` sets RANK/WORLD_SIZE, gloo on CPU, nccl on GPU)::

    torchrun --nproc_per_node 8 -m latentzoo.cli train --data ... --batch-size 512 ...

``--batch-size`` is the global batch: each of ``W`` ranks trains on ``B/W`` samples and DDP
averages gradients. BatchNorm statistics are per rank (plain DDP), exactly as in a single
process with ``accumulate=W`` micro-batches, which the equivalence test relies on.

``OUT`` receives the model folder (``model.safetensors``, ``config.json``, ``README.md``) when
training ends, and ``OUT/train/`` the training state: ``checkpoint.pt`` (step, weights, Adam
state, RNG states; the data position is the step itself, see :mod:`latentzoo.training.data`),
``log.csv`` (per-step losses and the CRC of each global batch), ``eval.csv`` (test metrics) and
``tensorboard/``. ``--snapshot-steps N ...`` also keeps the model folder of each step ``N`` in
``OUT/snapshots/step-<N>/`` (:mod:`latentzoo.training.snapshots`). Evaluations save and restore
the RNG states, so evaluating and snapshotting never change the training itself.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from latentzoo.datasets import RenderedDataset
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path, sha256_file, write_bytes_atomic
from latentzoo.latents import Normalisation, objective_latents, objective_tasks
from latentzoo.models.network import LatentNet
from latentzoo.training.data import TrainStream, loader, normalise_images, train_normalisation
from latentzoo.training.metrics import evaluate
from latentzoo.training.objectives import objective_loss
from latentzoo.training.snapshots import SNAPSHOT_DIR, snapshot_folder, snapshot_metrics, write_once

STATE_DIR = "train"
CHECKPOINT = "checkpoint.pt"
#: Settings a resumed run must share with the checkpoint (``steps`` may grow, workers/device may change).
RESUME_KEYS = ("objective", "arch", "seed", "batch_size", "lr", "size", "accumulate")
LOG_FLUSH_EVERY = 20


@dataclass
class TrainConfig:
    """Everything ``latentzoo train`` takes (``batch_size`` is global, over all ranks)."""

    data: str
    objective: str
    out: str
    arch: str = "r18"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    size: int = 224
    eval_every: int = 0          # 0: evaluate only at the end
    eval_images: int | None = None  # cap for the periodic evaluations (the final one uses all)
    checkpoint_every: int = 1000
    workers: int = 2
    accumulate: int = 1          # micro-batches per step (gradient accumulation)
    compile: bool = False
    device: str = "auto"
    progress: bool = True
    snapshot_steps: tuple[int, ...] = ()  # also keep the model folder of these steps (OUT/snapshots/step-N)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else the CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def open_training_data(cfg: TrainConfig) -> tuple[RenderedDataset, Normalisation]:
    """The dataset and its train-split normalisation; UserError when it cannot train ``cfg.objective``."""
    try:
        tasks = objective_tasks(cfg.objective)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not tasks:
        raise UserError(f"objective {cfg.objective!r} has nothing to train (it is a reference model)")
    dataset = RenderedDataset(cfg.data)
    train = dataset.latents("train")
    if train.empty:
        raise UserError(f"{cfg.data} has no training images")
    for name in objective_latents(cfg.objective):
        if name not in train.columns or train[name].isna().any():
            raise UserError(f"{cfg.data} has no {name!r} labels, so it cannot train objective {cfg.objective!r}")
        if train[name].nunique() < 2:
            raise UserError(f"{cfg.data} has a single {name} value (variability {dataset.meta.get('variability')}), "
                            f"so it cannot train objective {cfg.objective!r}")
    return dataset, train_normalisation(dataset, cfg.objective)


class TrainLog:
    """CSV files (``log.csv``, ``eval.csv``) and TensorBoard scalars; rows past a resume point are dropped."""

    def __init__(self, folder: Path, start_step: int, enabled: bool):
        self.folder, self.enabled = folder, enabled
        self.tb = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        for name in ("log.csv", "eval.csv"):
            truncate_csv(folder / name, start_step)
        self.tb = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def write(self, name: str, row: dict[str, Any], tb_prefix: str) -> None:
        if not self.enabled:
            return
        path = self.folder / name
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tb.add_scalar(f"{tb_prefix}/{key}", value, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def truncate_csv(path: Path, last_step: int) -> None:
    """Keep the header and the complete rows with ``step <= last_step`` of a log file."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    width = len(lines[0].split(","))
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.endswith("\n") and len(ln.split(",")) == width
                         and int(ln.split(",")[0]) <= last_step]
    write_bytes_atomic(path, "".join(keep).encode())


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict, previous_step: int | None) -> None:
    """Write ``state`` atomically; out-of-disk and other OS errors become one UserError line."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as e:
        kept = f"the last checkpoint (step {previous_step}) is intact" if previous_step else "no checkpoint was kept"
        reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise UserError(f"cannot write checkpoint {path}: {reason}; {kept}") from None


def load_checkpoint(path: Path, cfg: TrainConfig, dataset_sha: str) -> dict:
    """Read a checkpoint and check that it belongs to this run's settings and dataset."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise UserError(f"{path} is not a readable checkpoint ({e})") from None
    saved = state["config"]
    diff = [f"{k}={saved[k]!r} (now {getattr(cfg, k)!r})" for k in RESUME_KEYS if saved[k] != getattr(cfg, k)]
    if diff:
        raise UserError(f"{path} was written with other settings: {', '.join(diff)}")
    if state["dataset_sha256"] != dataset_sha:
        raise UserError(f"{path} was trained on another dataset than {cfg.data}")
    return state


def _all_reduce_mean(t: torch.Tensor, ddp: Distributed) -> torch.Tensor:
    if ddp.world_size > 1:
        dist.all_reduce(t)
        t /= ddp.world_size
    return t


def _any_rank(flag: bool, ddp: Distributed, device: torch.device) -> bool:
    if ddp.world_size == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item())


class Trainer:
    """Runs one training job (see module docstring); :meth:`fit` returns the model folder."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        if min(cfg.steps, cfg.checkpoint_every, cfg.batch_size, cfg.accumulate, cfg.size) < 1:
            raise UserError("--steps, --checkpoint-every, --batch-size, --accumulate and --size must be positive")
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.ddp = init_distributed(self.device)
        late = [n for n in cfg.snapshot_steps if not 1 <= n <= cfg.steps]
        if late:
            raise UserError(f"--snapshot-steps {late[0]} is outside 1..{cfg.steps} (--steps)")
        if cfg.batch_size % (self.ddp.world_size * cfg.accumulate):
            raise UserError(f"--batch-size {cfg.batch_size} must be divisible by "
                            f"{self.ddp.world_size} ranks x {cfg.accumulate} micro-batches")
        self.dataset, normalisation = open_training_data(cfg)
        self.dataset_sha = sha256_file(self.dataset.root / "dataset.json")
        self.out = Path(cfg.out)
        self.state_dir = self.out / STATE_DIR
        self.net = LatentNet.create(cfg.arch, cfg.objective, len(self.dataset.categories),
                                    len(self.dataset.identities), seed=cfg.seed,
                                    normalisation=normalisation, input_size=cfg.size)
        self.net.to(self.device)
        if self.device.type == "cuda":
            self.net.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.step = 0
        self.checkpoint_step: int | None = None
        self._restore(resume)
        self.model = self.net
        if self.ddp.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        if cfg.compile:
            self.model = torch.compile(self.model)

    def _restore(self, resume: bool) -> None:
        path = self.state_dir / CHECKPOINT
        if not path.is_file():
            if self.ddp.main:  # left by a run killed before its first checkpoint; this run starts over
                shutil.rmtree(self.out / SNAPSHOT_DIR, ignore_errors=True)
            torch.manual_seed(self.cfg.seed)
            return
        if not resume:
            raise UserError(f"{self.out} already holds a training run; pass --resume to continue it "
                            f"or choose another --out")
        state = load_checkpoint(path, self.cfg, self.dataset_sha)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.step = self.checkpoint_step = int(state["step"])
        lost = [n for n in self.cfg.snapshot_steps
                if n <= self.step and n < self.cfg.steps and not snapshot_folder(self.out, n).is_dir()]
        if lost:
            raise UserError(f"cannot snapshot step {lost[0]}: the run resumes from step {self.step}; "
                            f"train into a new --out to snapshot earlier steps")

    def _on_main(self, action, what: str) -> None:
        """Run ``action()`` on rank 0 only; a UserError there stops every rank with its line."""
        failed = ""
        if self.ddp.main:
            try:
                action()
            except UserError as e:
                failed = str(e)
        if _any_rank(bool(failed), self.ddp, self.device):
            raise UserError(failed or f"rank 0 could not {what}")

    def _checkpoint(self) -> None:
        state = {"step": self.step, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "rng": rng_state(), "config": asdict(self.cfg), "dataset_sha256": self.dataset_sha,
                 "world_size": self.ddp.world_size}
        self._on_main(lambda: save_checkpoint(self.state_dir / CHECKPOINT, state, self.checkpoint_step),
                      "write its checkpoint")
        self.checkpoint_step = self.step

    def _snapshot(self, log: TrainLog) -> None:
        """Write ``OUT/snapshots/step-<step>/`` unless it exists (with the metrics of a full test
        evaluation) and log the metrics it records to eval.csv."""
        folder = snapshot_folder(self.out, self.step)

        def write() -> None:
            write_once(folder, lambda tmp: self._write_model(tmp, self._evaluate(None)))
            log.write("eval.csv", {"step": self.step, **snapshot_metrics(folder)}, "test")

        self._on_main(write, f"write snapshot {folder}")

    def _train_step(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimiser step over ``accumulate`` micro-batches; returns [loss, task losses...] (detached)."""
        cuda = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=True)
        targets = {t: v.to(self.device, non_blocking=True) for t, v in targets.items()}
        n = self.cfg.accumulate
        self.optimizer.zero_grad(set_to_none=True)
        logged = []
        for i in range(n):
            chunk = slice(i * len(images) // n, (i + 1) * len(images) // n)
            x = normalise_images(images[chunk])
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = self.model.no_sync() if self.ddp.world_size > 1 and i < n - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    outputs = self.model(x)
                loss, losses = objective_loss(outputs, {t: v[chunk] for t, v in targets.items()},
                                              self.net.config.layout)
                (loss / n).backward()
            logged.append(torch.stack([loss.detach(), *[v.detach() for v in losses.values()]]))
        self.optimizer.step()
        return torch.stack(logged).mean(0)

    def _flush(self, pending: list[tuple[int, torch.Tensor, float]], log: TrainLog, stream: TrainStream) -> None:
        """Write the losses of the pending steps (one device sync); stop on a non-finite loss."""
        if not pending:
            return
        values = _all_reduce_mean(torch.stack([v for _, v, _ in pending]), self.ddp).cpu().numpy()
        tasks = [s.task for s in self.net.config.layout]
        for (step, _, rate), row in zip(pending, values):
            if not np.all(np.isfinite(row)):
                kept = (f"the last checkpoint (step {self.checkpoint_step}) is intact" if self.checkpoint_step
                        else "no checkpoint was written")
                raise UserError(f"the loss became {row[0]} at step {step} (try a lower --lr); {kept}")
            log.write("log.csv", {"step": step, "loss": float(row[0]),
                                  **{f"loss_{t}": float(v) for t, v in zip(tasks, row[1:])},
                                  "batch_crc32": stream.batch_digest(step - 1), "images_per_s": round(rate, 1)},
                      "train")
        pending.clear()

    def _evaluate(self, max_images: int | None) -> dict[str, float]:
        """Test metrics (the first ``max_images``, or all); the RNG states are left as they were."""
        state = rng_state()
        try:
            return evaluate(self.net, self.dataset, "test", batch_size=max(self.cfg.batch_size, 64),
                            workers=min(self.cfg.workers, 2), max_images=max_images)
        finally:
            set_rng_state(state)

    def fit(self) -> Path:
        """Train to ``cfg.steps`` (checkpointing and evaluating on the way) and export the model folder."""
        from tqdm.auto import tqdm

        cfg, main = self.cfg, self.ddp.main
        log = TrainLog(self.state_dir, self.step, main)
        stream = TrainStream(self.dataset, self.net.config.layout, self.net.config.normalisation, cfg.size,
                             cfg.batch_size, cfg.seed, self.step, cfg.steps, self.ddp.rank, self.ddp.world_size)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (main and cfg.progress), desc="train",
                   unit="step", dynamic_ncols=True)
        pending: list[tuple[int, torch.Tensor, float]] = []
        self.net.train()
        tick = time.perf_counter()
        try:
            for index, images, targets in loader(stream, cfg.workers, self.device.type == "cuda"):
                if index != self.step:
                    raise RuntimeError(f"data stream out of order: got step {index}, expected {self.step}")
                values = self._train_step(images, targets)
                self.step += 1
                now = time.perf_counter()
                pending.append((self.step, values, cfg.batch_size / max(now - tick, 1e-9)))
                tick = now
                bar.update(1)
                due_eval = cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps
                due_checkpoint = self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
                if len(pending) >= LOG_FLUSH_EVERY or due_eval or due_checkpoint:
                    self._flush(pending, log, stream)
                    bar.set_postfix(loss=f"{float(values[0]):.4f}")
                snapshot = self.step in cfg.snapshot_steps and self.step < cfg.steps  # the last: after export
                if snapshot:  # before the checkpoint, so no checkpoint is ever ahead of a missing snapshot
                    self._snapshot(log)
                if due_checkpoint:
                    self._checkpoint()
                if due_eval and main and not snapshot:
                    log.write("eval.csv", {"step": self.step, **self._evaluate(cfg.eval_images)}, "test")
            self._flush(pending, log, stream)
            if self.step > (self.checkpoint_step or 0):
                self._checkpoint()
            folder = self._export(log) if main else self.out
        finally:
            bar.close()
            log.close()
        if self.ddp.world_size > 1:
            dist.barrier()
        return folder

    def _export(self, log: TrainLog) -> Path:
        metrics = self._evaluate(None)
        log.write("eval.csv", {"step": self.step, **metrics}, "test")
        folder = self._write_model(self.out, metrics)
        if self.step in self.cfg.snapshot_steps:
            write_once(snapshot_folder(self.out, self.step), lambda tmp: self._write_model(tmp, metrics))
        return folder

    def _write_model(self, folder: Path, metrics: dict[str, float]) -> Path:
        from latentzoo.training.export import export_model

        return export_model(self.net, folder, self.dataset, self.dataset_sha, self.cfg.seed, self.step, metrics)


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train ``cfg`` (resuming from ``OUT/train/checkpoint.pt`` when ``resume``); returns the model folder."""
    trainer = Trainer(cfg, resume)
    try:
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
