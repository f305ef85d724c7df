"""Spatial-latent Brain-Score benchmarks: how well can a linear readout of a model's committed layer
recover an object's distance, translation, rotation and category?

Any Brain-Score model (in-tree plugins and zoo ids alike) is shown held-out rendered images; the
benchmark records the region's layer (IT by default) through the ordinary ``start_recording`` /
``look_at`` interface and fits a cross-validated linear readout:

* ``latentzoo.Distance-<region>``: ridge R^2 of ``z``;
* ``latentzoo.Translation-<region>``: mean ridge R^2 of ``x`` and ``y``;
* ``latentzoo.Rotation-<region>``: mean ridge R^2 of ``sin`` and ``cos`` of ``rot_x, rot_y, rot_z``;
* ``latentzoo.Category-<region>``: chance-corrected accuracy ``(acc - 1/K) / (1 - 1/K)`` of a
  ridge classifier.

The raw score is the mean over 5 shuffled folds (features scaled by one global factor, centred per
training fold, and the ridge penalty chosen
by leave-one-out inside each training fold; a ridge classifier for Category, which stays fast for
layers with tens of thousands of units). The ceiling is the same readout fitted to
the ground-truth latents themselves (x, y, z, sin/cos of the angles, one-hot category) on the same
folds: what a perfect spatial code reaches with this procedure and sample size. The reported score is
``clip(raw / ceiling, 0, 1)``, with ``raw`` and ``ceiling`` in its attrs.

The stimuli are rendered deterministically on first use with the embedded backend (procedural
library, full variability, the paper's face-the-camera +-45 degree poses) into
``<cache>/benchmarks/<STIMULI_VERSION>`` and reused afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeClassifierCV, RidgeCV
from sklearn.metrics import make_scorer, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
from brainscore_core.metrics import Score  # noqa: E402
from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet  # noqa: E402
from brainscore_vision.benchmark_helpers.screen import place_on_screen  # noqa: E402
from brainscore_vision.benchmarks import BenchmarkBase  # noqa: E402
from brainscore_vision.model_interface import BrainModel  # noqa: E402

from latentzoo.datasets import DatasetError, RenderedDataset  # noqa: E402
from latentzoo.citation import BIBTEX  # noqa: E402
from latentzoo.errors import UserError, unknown  # noqa: E402
from latentzoo.latents import ANGLE_LATENTS  # noqa: E402
from latentzoo.fileio import cache_dir, write_bytes_atomic  # noqa: E402


#: v3: the authors' rotation latents and balanced categories; v2: face-camera poses; v1: SO(3) poses.
STIMULI_VERSION = "spatial-v3"
#: The render that defines the stimuli (a pure function of these settings).
STIMULI_SETTINGS = dict(images=640, size=224, seed=20250101, library="procedural", test_fraction=0.0)
REGIONS = ("V1", "V2", "V4", "IT")
TASKS = ("Distance", "Translation", "Rotation", "Category")
VISUAL_DEGREES = 8
N_FOLDS = 5
ALPHAS = np.logspace(-2, 7, 10)


def task_targets(task: str, latents: pd.DataFrame) -> np.ndarray:
    """Readout targets of ``task``: (n,) class indices for Category, (n, k) floats otherwise."""
    if task == "Distance":
        return latents[["z"]].to_numpy(np.float64)
    if task == "Translation":
        return latents[["x", "y"]].to_numpy(np.float64)
    if task == "Rotation":
        angles = latents[list(ANGLE_LATENTS)].to_numpy(np.float64)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if task == "Category":
        return latents["category"].to_numpy(np.int64)
    raise unknown("task", task, TASKS)


def ideal_features(latents: pd.DataFrame) -> np.ndarray:
    """A perfect spatial code: x, y, z, sin/cos of the three angles and one-hot category."""
    angles = latents[list(ANGLE_LATENTS)].to_numpy(np.float64)
    onehot = np.eye(int(latents["category"].max()) + 1)[latents["category"].to_numpy()]
    return np.concatenate([latents[["x", "y", "z"]].to_numpy(np.float64), np.sin(angles),
                           np.cos(angles), onehot], axis=1)


def readout_score(features: np.ndarray, targets: np.ndarray, classification: bool, seed: int = 0) -> float:
    """Mean over 5 shuffled folds of a centred ridge readout: R^2 averaged over target
    columns, or chance-corrected accuracy ``(acc - 1/K) / (1 - 1/K)`` of a ridge classifier
    (stratified folds; as many as the smallest category has images when that is under 5).

    The penalty is chosen per training fold by efficient leave-one-out over ``ALPHAS``, which reach
    far enough (1e7) for layers with tens of thousands of units and a few hundred images.
    """
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    x = x / (np.sqrt(x.var(axis=0).mean()) or 1.0)  # one global scale: sparse ReLU units stay finite
    if classification:
        smallest = int(np.unique(targets, return_counts=True)[1].min())
        if smallest < 2:
            raise UserError(f"a category has {smallest} image(s): the Category readout needs at least 2 per category")
        # fewer folds when a subset of the stimuli has fewer than 5 images per category
        splitter = StratifiedKFold(min(N_FOLDS, smallest), shuffle=True, random_state=seed)
        model = make_pipeline(StandardScaler(with_std=False), RidgeClassifierCV(alphas=ALPHAS))
        chance = 1.0 / len(np.unique(targets))
        acc = cross_val_score(model, x, targets, cv=splitter, scoring="accuracy")
        return float(np.mean((acc - chance) / (1 - chance)))
    splitter = KFold(N_FOLDS, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(with_std=False), RidgeCV(alphas=ALPHAS, alpha_per_target=True))
    y = targets.reshape(len(targets), -1)
    r2 = cross_val_score(model, x, y, cv=splitter, scoring=make_scorer(r2_score, multioutput="uniform_average"))
    return float(np.mean(r2))


def stimuli_dir(cache: str | os.PathLike | None = None) -> Path:
    """Directory of the benchmark's rendered dataset (rendered on first use, reused afterwards)."""
    from latentzoo.rendering import render_dataset  # moderngl only when stimuli must be rendered

    root = Path(cache) if cache else cache_dir() / "benchmarks" / STIMULI_VERSION
    if (root / "latents.parquet").is_file():
        try:
            RenderedDataset(root).verify()
            return root
        except DatasetError:
            pass  # a missing, truncated or modified shard: the render below re-renders it
    render_dataset(root, **STIMULI_SETTINGS)  # resumes a partial render
    return root


def load_stimuli(root: str | os.PathLike, n_images: int | None = None):
    """(StimulusSet of JPEG files, latents DataFrame) of the benchmark dataset at ``root``."""
    ds = RenderedDataset(root)
    latents = ds.latents()
    if n_images is not None:
        latents = latents.iloc[:n_images].reset_index(drop=True)
    image_dir = Path(root) / "stimuli"
    wanted = set(latents["key"])
    for key, jpg, _ in ds.raw_samples():  # sha256-checked shards; missing or altered JPEG files are rewritten
        path = image_dir / f"{key}.jpg"
        if key in wanted and (not path.is_file() or path.read_bytes() != jpg):
            write_bytes_atomic(path, jpg)
    # Only ids: latent columns such as "z" would clash with Brain-Score's own coordinate names.
    stimuli = StimulusSet(pd.DataFrame({"stimulus_id": latents["key"]}))
    stimuli.stimulus_paths = {k: image_dir / f"{k}.jpg" for k in stimuli["stimulus_id"]}
    stimuli.identifier = f"latentzoo.{STIMULI_VERSION}.{len(stimuli)}"
    return stimuli, latents


class SpatialLatentBenchmark(BenchmarkBase):
    """Brain-Score benchmark: cross-validated linear readout of one spatial latent from a region."""

    def __init__(self, task: str, region: str = "IT", root: str | os.PathLike | None = None,
                 n_images: int | None = None):
        if task not in TASKS or region not in REGIONS:
            raise ValueError(f"no benchmark latentzoo.{task}-{region}; tasks {TASKS}, regions {REGIONS}")
        self.task, self.region, self._root, self._n_images = task, region, root, n_images
        self._stimuli = self._latents = self._ceiling_score = None
        super().__init__(identifier=f"latentzoo.{task}-{region}", ceiling_func=None,
                         version=1, parent=f"latentzoo.{task}", bibtex=BIBTEX)

    def _load(self) -> None:
        if self._stimuli is None:
            self._stimuli, self._latents = load_stimuli(stimuli_dir(self._root), self._n_images)

    @property
    def ceiling(self) -> Score:
        """The readout's score on the ground-truth latents (computed per instance, not cached on disk)."""
        self._load()
        if self._ceiling_score is None:
            self._ceiling_score = Score(readout_score(ideal_features(self._latents),
                                                      task_targets(self.task, self._latents),
                                                      classification=self.task == "Category"))
        return self._ceiling_score

    def __call__(self, candidate: BrainModel) -> Score:
        self._load()
        candidate.start_recording(self.region, time_bins=[(70, 170)])
        stimuli = place_on_screen(self._stimuli, target_visual_degrees=candidate.visual_degrees(),
                                  source_visual_degrees=VISUAL_DEGREES)
        activations = candidate.look_at(stimuli, number_of_trials=1)
        if "time_bin" in activations.dims:
            activations = activations.squeeze("time_bin", drop=True)
        order = {k: i for i, k in enumerate(activations["stimulus_id"].values)}
        features = activations.values[[order[k] for k in self._latents["key"]]]
        raw = readout_score(features, task_targets(self.task, self._latents),
                               classification=self.task == "Category")
        ceiling = float(self.ceiling)
        score = Score(float(np.clip(raw / ceiling, 0, 1)))
        score.attrs.update(raw=Score(raw), ceiling=Score(ceiling), region=self.region,
                           n_images=len(self._latents))
        return score


def benchmark_factories() -> dict[str, Callable[[], SpatialLatentBenchmark]]:
    """{identifier: constructor} of every spatial-latent benchmark, for benchmark_registry."""
    return {f"latentzoo.{t}-{r}": (lambda t=t, r=r: SpatialLatentBenchmark(t, r))
            for t in TASKS for r in REGIONS}
