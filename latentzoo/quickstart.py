"""``latentzoo quickstart``: the whole study, small, on embedded defaults (no network, no GPU needed).

Steps, each timed and each resumable (a rerun skips finished work, an interrupted one continues):

1. **render** a labelled dataset with the embedded renderer into ``OUT/dataset`` (the 0 A.D. library
   when it has been imported, else the procedural one) and a contact sheet of it;
2. **train** ResNet-18s on ``distance``, ``translation``, ``rotation`` and ``category`` (Adam, the
   paper's losses, ``steps`` steps at ``size`` px) into ``OUT/models/<objective>``, plus an
   ``untrained`` one from the same seed;
3. **register** them in ``OUT/registry.yaml`` (``folder`` weights pinned by sha256, the V1/V2/V4/IT
   layer maps of the authors' ResNet-18 plugins for the same objective), so that
   ``LATENTZOO_REGISTRY=OUT/registry.yaml brainscore score --model quickstart-distance-r18`` works;
4. **score** every model with Brain-Score's machinery on the spatial-latent benchmarks
   ``latentzoo.{Distance,Translation,Rotation,Category}-{V1,V2,V4,IT}`` (``OUT/scores/<id>/``);
5. **analyze**: CKA/RSA/MDS between the models, linear decoding of every latent from every layer and
   spatial-benchmark score vs task performance, written with the steps above as one HTML report,
   ``OUT/report/index.html``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from latentzoo.fileio import sha256_file, write_bytes_atomic
from latentzoo.registry import Registry

OBJECTIVES = ("distance", "translation", "rotation", "category")
ARCH = "r18"


@dataclass(frozen=True)
class QuickstartConfig:
    """What the quickstart runs; the defaults take about 10 minutes on 2 CPU cores."""

    out: str = "quickstart"
    images: int = 2000            # rendered images (10% are the test split)
    render_size: int = 64         # rendered image side (px)
    size: int = 32                # training / evaluation input side (px)
    steps: int = 200              # training steps per objective
    batch_size: int = 32
    library: str | None = None    # None: "0ad" when imported, else "procedural"
    seed: int = 0
    workers: int = 1              # render processes and data-loading workers
    device: str = "auto"
    benchmark_images: int | None = None  # spatial-benchmark stimuli used (None: all 640)
    progress: bool = True

    @property
    def model_ids(self) -> list[str]:
        return [model_id(o) for o in (*OBJECTIVES, "untrained")]


def model_id(objective: str) -> str:
    return f"quickstart-{objective}-{ARCH}"


def default_library() -> str:
    """``0ad`` when its cache has been imported (``latentzoo assets import 0ad``), else ``procedural``."""
    from latentzoo.rendering.libraries.zeroad import default_cache

    return "0ad" if (default_cache() / "index.json").is_file() else "procedural"


class Timings:
    """Wall-clock seconds per named step, printed as each ends."""

    def __init__(self, echo: bool = True):
        self.seconds: dict[str, float] = {}
        self.echo = echo

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.echo:
            print(f"[quickstart] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        if self.echo:
            print(f"[quickstart] {name}: {self.seconds[name]:.1f} s", flush=True)

    def table(self) -> pd.DataFrame:
        rows = [{"step": k, "seconds": round(v, 1)} for k, v in self.seconds.items()]
        return pd.DataFrame(rows + [{"step": "total", "seconds": round(sum(self.seconds.values()), 1)}])


def train_models(cfg: QuickstartConfig, dataset: Path, timings: Timings) -> dict[str, Path]:
    """Train each objective (resuming) and write the untrained reference; {objective: model folder}."""
    import json

    from latentzoo.hub import CONFIG_NAME, save_pretrained
    from latentzoo.models.network import LatentNet
    from latentzoo.training import TrainConfig, train

    folders = {}
    for objective in OBJECTIVES:
        folder = Path(cfg.out) / "models" / objective
        config = folder / CONFIG_NAME
        done = config.is_file() and json.loads(config.read_text())["latentzoo"]["extra"].get("steps") == cfg.steps
        with timings.step(f"train {objective}"):
            if not done:
                train(TrainConfig(data=str(dataset), objective=objective, out=str(folder), arch=ARCH,
                                  seed=cfg.seed, steps=cfg.steps, batch_size=cfg.batch_size, size=cfg.size,
                                  checkpoint_every=max(cfg.steps // 4, 1), workers=cfg.workers,
                                  device=cfg.device, progress=cfg.progress), resume=True)
        folders[objective] = folder
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
        "description": f"latentzoo quickstart ResNet-18 ({cfg.steps} steps at {cfg.size} px).",
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
    from latentzoo.analysis.report import Section, analyze, write_csv
    from latentzoo.registry import load_registry, shipped_registry_path
    from latentzoo.rendering import render_dataset
    from latentzoo.rendering.contact import contact_sheet
    from latentzoo.spatial import STIMULI_SETTINGS
    from latentzoo.weights import from_pretrained

    out = Path(cfg.out)
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    library = cfg.library or default_library()
    timings = Timings()
    with timings.step("render"):
        ds = render_dataset(out / "dataset", images=cfg.images, size=cfg.render_size, seed=cfg.seed,
                            library=library, workers=cfg.workers, shard_size=500, progress=cfg.progress)
        sheet = contact_sheet(ds, report / "contact_sheet.png", n=48)
    folders = train_models(cfg, ds.root, timings)
    with timings.step("register"):
        registry = load_registry([shipped_registry_path(), write_registry(cfg, folders)])
    scores = score_models(cfg, registry, timings)

    models = {m: from_pretrained(m, registry=registry) for m in cfg.model_ids}
    logs = {model_id(o): pd.read_csv(folders[o] / "train" / "log.csv") for o in OBJECTIVES}
    metrics = pd.DataFrame([{"model": m, **net.config.extra.get("metrics", {})}
                            for m, net in models.items() if m != model_id("untrained")])
    scores_csv = write_csv(scores, report / "spatial_scores.csv")
    metrics_csv = write_csv(metrics, report / "test_metrics.csv")
    timings_csv = write_csv(timings.table(), report / "timings.csv")
    preface = [
        Section("Run", f"{cfg.images} images rendered at {cfg.render_size} px ({library} library, seed "
                f"{cfg.seed}); ResNet-18s trained {cfg.steps} steps of batch {cfg.batch_size} at {cfg.size} px. "
                "Wall-clock seconds per step (the analysis below is timed in timings.csv, written last).",
                tables=[timings_csv]),
        Section("Dataset", "Test images; the red cross marks the projected object centre (x, y, z).", [sheet]),
        Section("Training", "Training loss per step (faint: per step; solid: running mean over 10 steps) "
                "and metrics on the test split.",
                plots.training_curves(logs, report / "training_curves"), [metrics_csv]),
        Section("Spatial-latent benchmarks", "Brain-Score scores (raw / ceiling) of cross-validated linear "
                "readouts of distance, translation, rotation and category from each model's committed "
                f"V1/V2/V4/IT layer on {cfg.benchmark_images or STIMULI_SETTINGS['images']} held-out rendered "
                "images at 224 px. The 'alignment vs task "
                "performance' section below plots these scores against each model's negative test loss; "
                "losses of different objectives are on different scales, so with one model per objective it "
                "shows the analysis, not a finding (the paper compares models of one objective).",
                plots.benchmark_scores(scores, report / "spatial_scores"), [scores_csv]),
    ]
    with timings.step("analyze"):
        index = analyze(models, ds.root, report, brainscore_results=[scores_csv],
                        reference=model_id("category"), progress=cfg.progress, preface=preface,
                        title="latentzoo quickstart")
    write_csv(timings.table(), timings_csv)
    print(timings.table().to_string(index=False))
    return index
