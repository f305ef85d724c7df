"""``latentzoo quickstart``: the whole study, small, on embedded defaults (no network, no GPU needed).

Steps, each timed and each resumable (a rerun skips finished work, an interrupted one continues):

1. **render** a labelled dataset with the embedded renderer into ``OUT/dataset`` (the 0 A.D. library
   when it has been imported, else :data:`CATEGORIES` of the procedural one) and a contact sheet of it;
2. **train** ResNet-18s on ``distance``, ``translation``, ``rotation`` and ``category`` (Adam, the
   paper's losses, ``steps`` steps of ``batch_size`` at ``size`` px; rotation, which learns slowest,
   ``rotation_scale`` times the steps at ``rotation_scale`` times the batch) into ``OUT/models/<objective>``,
   ``parallel`` trainings at a time, plus an ``untrained`` one from the same seed;
3. **register** them in ``OUT/registry.yaml`` (``folder`` weights pinned by sha256, the V1/V2/V4/IT
   layer maps of the authors' ResNet-18 plugins for the same objective), so that
   ``LATENTZOO_REGISTRY=OUT/registry.yaml brainscore score --model quickstart-distance-r18`` works;
4. **score** every model with Brain-Score's machinery on the spatial-latent benchmarks
   ``latentzoo.{Distance,Translation,Rotation,Category}-{V1,V2,V4,IT}`` (``OUT/scores/<id>/``);
5. **reproduce**: the paper's results these models allow (:func:`latentzoo.analysis.reproduce.reproduce`:
   Table C.2, Figure 2, Figure 4's CKA and MDS, Figure 5's decoding with the pixel baseline), written
   after the steps above (contact sheet, training curves, test metrics beside the best constant guess,
   benchmark scores, timings) as one HTML report, ``OUT/report/index.html``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from latentzoo.datasets import RenderedDataset
from latentzoo.fileio import sha256_file, write_bytes_atomic
from latentzoo.latents import ANGLE_LATENTS, POSITION_LATENTS, circular_mean, objective_latents
from latentzoo.registry import Registry

OBJECTIVES = ("distance", "translation", "rotation", "category")
ARCH = "r18"
# Procedural families without a vertical symmetry axis, so that their rotation can be learnt
# (vases, bottles or tori look the same turned about it) and 10 classes a short run can tell apart.
CATEGORIES = ("chair", "car", "airplane", "arrow", "letter_l", "hammer", "teapot", "bench", "bed", "table")


@dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart runs; the defaults take about 14 minutes on 2 CPU cores."""

    out: str = "quickstart"
    images: int = 6000            # rendered images (10% are the test split)
    render_size: int = 64         # rendered image side (px)
    size: int = 32                # training / evaluation input side (px)
    steps: int = 250              # training steps per objective
    batch_size: int = 32
    rotation_scale: int = 2       # rotation trains this many times the steps at this many times the batch
    parallel: int = 2             # trainings at a time, each with cores / parallel threads
    library: str | None = None    # None: "0ad" when imported, else "procedural"
    categories: tuple[str, ...] | None = None  # None: CATEGORIES of the procedural library, every one of another
    backgrounds: str = "none"     # plain grey: small objects stand out at 32 px (or "procedural", "photos")
    fov: float = 35.0             # degrees: objects 1.7x larger in the frame than at render's default 60
    seed: int = 0
    workers: int = 1              # render processes and data-loading workers
    device: str = "auto"
    benchmark_images: int | None = 320   # spatial-benchmark stimuli used (None: all 640; 320 halves scoring)
    analysis_images: int = 200    # test images of the reproduce step (its decoding costs most)
    progress: bool = True

    def schedule(self, objective: str) -> tuple[int, int]:
        """``(steps, batch_size)`` that ``objective`` trains with."""
        scale = self.rotation_scale if objective == "rotation" else 1
        return self.steps * scale, self.batch_size * scale

    @property
    def model_ids(self) -> list[str]:
        return [model_id(o) for o in (*OBJECTIVES, "untrained")]

    def categories_of(self, library: str) -> tuple[str, ...] | None:
        """Categories to render from ``library`` (None: all)."""
        return self.categories or (CATEGORIES if library == "procedural" else None)


def model_id(objective: str) -> str:
    return f"quickstart-{objective}-{ARCH}"


def default_library() -> str:
    """``0ad`` when its cache has been imported (``latentzoo assets import 0ad``), else ``procedural``."""
    from latentzoo.rendering.libraries.zeroad import default_cache

    return "0ad" if (default_cache() / "index.json").is_file() else "procedural"


def chance_metrics(dataset: RenderedDataset, objective: str) -> dict[str, float]:
    """Test-split metrics (:func:`latentzoo.training.metrics.latent_metrics`) of the best constant guess from
    the training split, the chance level a trained model must beat: the mean position, the circular
    mean angle, the most frequent class."""
    from latentzoo.training.metrics import latent_metrics

    train, test = dataset.latents("train"), dataset.latents("test")
    guess = {}
    for name in objective_latents(objective):
        if name in POSITION_LATENTS:
            value = train[name].mean()
        elif name in ANGLE_LATENTS:
            value = circular_mean(train[name].to_numpy())
        else:
            value = train[name].mode().iloc[0]
        guess[name] = np.full(len(test), value)
    return latent_metrics(guess, {name: test[name].to_numpy() for name in guess})


def learning_table(metrics: dict[str, dict[str, float]], dataset: RenderedDataset) -> pd.DataFrame:
    """``model, metric, trained, chance, beats_chance`` for each objective's R^2, angle error and top-1
    (``metrics``: {objective: its model's test metrics})."""
    rows = []
    for objective, trained in metrics.items():
        for metric, chance in chance_metrics(dataset, objective).items():
            if metric.endswith(("_r2", "_mae", "_top1")):
                better = trained[metric] < chance if metric.endswith("_mae") else trained[metric] > chance
                rows.append({"model": model_id(objective), "metric": metric, "trained": round(trained[metric], 4),
                             "chance": round(chance, 4), "beats_chance": bool(better)})
    return pd.DataFrame(rows)


class Timings:
    """Wall-clock seconds per named step, printed as each ends."""

    def __init__(self, echo: bool = True):
        self.seconds: dict[str, float] = {}
        self.echo = echo
        self.start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.echo:
            print(f"[quickstart] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = seconds
        if self.echo:
            print(f"[quickstart] {name}: {seconds:.1f} s", flush=True)

    def table(self) -> pd.DataFrame:
        """Seconds per step and the wall-clock ``total`` so far (less than their sum when steps overlapped)."""
        rows = [{"step": k, "seconds": round(v, 1)} for k, v in self.seconds.items()]
        return pd.DataFrame(rows + [{"step": "total", "seconds": round(time.perf_counter() - self.start, 1)}])


def train_objective(cfg: QuickstartConfig, dataset: Path, objective: str, threads: int) -> float:
    """Train one objective's model into ``OUT/models/<objective>`` with ``threads`` CPU threads unless done
    (resuming); returns the seconds it took."""
    import json

    import torch

    from latentzoo.hub import CONFIG_NAME
    from latentzoo.training import TrainConfig, train

    start = time.perf_counter()  # after the imports: a spawned process pays them once
    torch.set_num_threads(threads)
    folder = Path(cfg.out) / "models" / objective
    config = folder / CONFIG_NAME
    steps, batch_size = cfg.schedule(objective)
    if not (config.is_file() and json.loads(config.read_text())["latentzoo"]["extra"].get("steps") == steps):
        train(TrainConfig(data=str(dataset), objective=objective, out=str(folder), arch=ARCH,
                          seed=cfg.seed, steps=steps, batch_size=batch_size, size=cfg.size,
                          checkpoint_every=max(steps // 4, 1), workers=cfg.workers,
                          device=cfg.device, progress=cfg.progress and cfg.parallel == 1), resume=True)
    return time.perf_counter() - start


def train_models(cfg: QuickstartConfig, dataset: Path, timings: Timings) -> dict[str, Path]:
    """Train each objective (resuming; ``cfg.parallel`` at a time, in their own processes, the longest
    first) and write the untrained reference; {objective: model folder}."""
    import multiprocessing

    from latentzoo.hub import save_pretrained
    from latentzoo.models.network import LatentNet

    threads = max((os.cpu_count() or 1) // cfg.parallel, 1)
    order = sorted(OBJECTIVES, key=lambda o: -np.prod(cfg.schedule(o)))
    if timings.echo:
        print(f"[quickstart] train {', '.join(order)}: {cfg.parallel} at a time, {threads} thread(s) each ...", flush=True)
    with ProcessPoolExecutor(cfg.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {pool.submit(train_objective, cfg, dataset, o, threads): o for o in order}
        for job in as_completed(jobs):
            timings.add(f"train {jobs[job]}", job.result())
    folders = {o: Path(cfg.out) / "models" / o for o in OBJECTIVES}
    folders["untrained"] = Path(cfg.out) / "models" / "untrained"
    net = LatentNet.create(ARCH, "untrained", seed=cfg.seed, input_size=cfg.size)
    save_pretrained(net, folders["untrained"], dataset="none", seed=cfg.seed, steps=0,
                    candidate_layers=net.layers)
    return folders


def write_registry(cfg: QuickstartConfig, folders: dict[str, Path]) -> Path:
    """``OUT/registry.yaml``: one ``folder`` entry per model, sha256-pinned, with the authors' layer maps."""
    import yaml

    from latentzoo.registry import load_registry, shipped_registry_path

    shipped = load_registry([shipped_registry_path()])
    members = {o: {"weights": {"folder": {"path": str(f.relative_to(cfg.out)),
                                          "sha256": sha256_file(f / "model.safetensors")}},
                   "layers": dict(shipped[f"tdw-{o}-{ARCH}"].layers)} for o, f in folders.items()}
    doc = {"version": 1, "families": [{
        "id": model_id("{objective}"), "arch": ARCH, "seed": cfg.seed, "dataset": "quickstart",
        "description": f"latentzoo quickstart ResNet-18 ({cfg.steps} steps at {cfg.size} px, rotation "
                       f"{cfg.schedule('rotation')[0]}).",
        "attribution": "Layer maps of the authors' ResNet-18 Brain-Score plugins for the same objective.",
        "members": members}]}
    path = Path(cfg.out) / "registry.yaml"
    write_bytes_atomic(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return path


def score_models(cfg: QuickstartConfig, registry: Registry, timings: Timings) -> pd.DataFrame:
    """Score every quickstart model on the 16 spatial-latent benchmarks (resuming per model)."""
    from latentzoo.models.brainscore import score, write_scores
    from latentzoo.spatial import REGIONS, TASKS, SpatialLatentBenchmark

    benchmarks = [SpatialLatentBenchmark(task, region, n_images=cfg.benchmark_images)
                  for task in TASKS for region in REGIONS]
    tables = []
    for model in cfg.model_ids:
        folder = Path(cfg.out) / "scores" / model
        with timings.step(f"score {model}"):
            if not (folder / "scores.csv").is_file():
                write_scores(score(model, benchmarks, registry=registry), folder)
        tables.append(pd.read_csv(folder / "scores.csv"))
    return pd.concat(tables, ignore_index=True)


def run_quickstart(cfg: QuickstartConfig = QuickstartConfig()) -> Path:
    """Run every step (see the module docstring); returns the report's ``index.html``."""
    from latentzoo.analysis import plots
    from latentzoo.analysis.report import Section, write_csv
    from latentzoo.analysis.reproduce import reproduce
    from latentzoo.hub import read_config
    from latentzoo.registry import load_registry, shipped_registry_path
    from latentzoo.rendering import render_dataset
    from latentzoo.rendering.contact import contact_sheet
    from latentzoo.spatial import STIMULI_SETTINGS

    out = Path(cfg.out)
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    library = cfg.library or default_library()
    timings = Timings()
    with timings.step("render"):
        ds = render_dataset(out / "dataset", images=cfg.images, size=cfg.render_size, seed=cfg.seed,
                            library=library, backgrounds=cfg.backgrounds, categories=cfg.categories_of(library),
                            fov_deg=cfg.fov,
                            workers=cfg.workers, shard_size=500, progress=cfg.progress)
        sheet = contact_sheet(ds, report / "contact_sheet.png", n=48)
    folders = train_models(cfg, ds.root, timings)
    with timings.step("register"):
        registry = load_registry([shipped_registry_path(), write_registry(cfg, folders)])
    scores = score_models(cfg, registry, timings)

    logs = {model_id(o): pd.read_csv(folders[o] / "train" / "log.csv") for o in OBJECTIVES}
    trained = {o: read_config(folders[o]).extra["metrics"] for o in OBJECTIVES}
    scores_csv = write_csv(scores, report / "spatial_scores.csv")
    metrics_csv = write_csv(pd.DataFrame([{"model": model_id(o), **m} for o, m in trained.items()]),
                            report / "test_metrics.csv")
    learning_csv = write_csv(learning_table(trained, ds), report / "learning.csv")
    timings_csv = write_csv(timings.table(), report / "timings.csv")
    categories = cfg.categories_of(library)
    rotation_steps, rotation_batch = cfg.schedule("rotation")
    preface = [
        Section("Run", f"{cfg.images} images rendered at {cfg.render_size} px ({library} library, "
                f"{len(categories) if categories else 'all'} categories, {cfg.backgrounds} backgrounds, {cfg.fov:g} degree "
                f"field of view, seed {cfg.seed}); ResNet-18s trained {cfg.steps} steps of batch {cfg.batch_size} "
                f"at {cfg.size} px, rotation (the slowest to learn) {rotation_steps} steps of batch {rotation_batch}, "
                f"{cfg.parallel} trainings at a time. "
                "Wall-clock seconds per step (overlapping trainings: the total is less than their sum; "
                "the reproduce step is timed in timings.csv, written last).",
                tables=[timings_csv]),
        Section("Dataset", "Test images; the red cross marks the projected object centre (x, y, z).", [sheet]),
        Section("Training", "Training loss per step (faint: per step; solid: running mean over 10 steps), "
                "metrics on the test split, and learning.csv: each objective's R^2, mean absolute angle error "
                "(radians) or top-1 beside chance, the same metric of the best constant guess from the "
                "training split (its mean position, circular mean angle or most frequent category).",
                plots.training_curves(logs, report / "training_curves"), [metrics_csv, learning_csv]),
        Section("Spatial-latent benchmarks", "Brain-Score scores (raw / ceiling) of cross-validated linear "
                "readouts of distance, translation, rotation and category from each model's committed "
                f"V1/V2/V4/IT layer on {cfg.benchmark_images or STIMULI_SETTINGS['images']} held-out rendered "
                "images at 224 px. The sections below are the paper's results these scores and models "
                "allow (one model per objective: group SDs are blank, and Figure 3 needs snapshots or seeds).",
                plots.benchmark_scores(scores, report / "spatial_scores"), [scores_csv]),
    ]
    with timings.step("reproduce"):
        names = {model_id(o): folder.name for o, folder in folders.items()}  # reproduce names folders by name
        results = write_csv(scores.assign(model=scores["model"].map(names)), out / "scores" / "by_folder.csv")
        index = reproduce([str(f) for f in folders.values()], [ds.root], report, benchmarks=["none"],
                          brainscore_results=[results], n_images=cfg.analysis_images, n_jobs=-1, progress=cfg.progress,
                          preface=preface, title="latentzoo quickstart")
    write_csv(timings.table(), timings_csv)
    print(timings.table().to_string(index=False))
    return index
