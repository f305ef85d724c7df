"""The paper's analysis protocol (Xie et al. 2025): ``latentzoo analyze --protocol paper`` and the
representation analyses of ``latentzoo reproduce``.

* Activations: flattened (``N x C*H*W``, no pooling) at :data:`PAPER_CKA_LAYERS` and ``fc``
  restricted to the units the model was trained on (:func:`trained_units`), on the first
  :data:`PAPER_N_IMAGES` held-out images; cached on disk by :func:`~latentzoo.analysis.activations.extract`.
* Similarity: biased linear CKA per layer (:func:`cka_similarity`), each model's centred Gram
  streamed from the cache in feature chunks; group means/SDs (:mod:`latentzoo.analysis.groups`);
  MDS on the rows of each layer's CKA matrix.
* Decoding: :func:`latentzoo.analysis.decoding.paper_decoding_table` at every layer and ``fc``, and
  the same decoding of the pixels themselves (:func:`pixel_decoding`); a Mann-Whitney U test
  between two groups when asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from joblib import Parallel, delayed
from torch import nn

from latentzoo.analysis import plots
from latentzoo.analysis.activations import Pixels, Reducer, Stimuli, cache_key, extract
from latentzoo.analysis.cka import centered_gram, cka_from_grams
from latentzoo.analysis.decoding import compare_groups, paper_decoding_table
from latentzoo.analysis.groups import group_similarity
from latentzoo.analysis.mds import mds_embedding
from latentzoo.analysis.report import Section, write_csv
from latentzoo.errors import UserError

PAPER_CKA_LAYERS = ("layer1.0.relu", "layer2.0.relu", "layer3.0.relu", "layer4.0.relu", "avgpool")
PAPER_DECODING_LAYERS = PAPER_CKA_LAYERS + ("fc",)
PAPER_N_IMAGES = 2000
PIXELS = "pixels"


def trained_units(model: nn.Module) -> np.ndarray:
    """Indices of the head units the model's objective trains (its config layout; every unit of an
    ``imagenet`` classifier); empty when none (untrained)."""
    config = getattr(model, "config", None)
    layout = getattr(config, "layout", None) or []
    if layout:
        return np.concatenate([np.arange(s.start, s.stop) for s in layout])
    return np.arange(config.head_size) if getattr(config, "objective", None) == "imagenet" else np.array([], int)


def paper_activations(named: Mapping[str, nn.Module], stimuli: Stimuli, cache_dir: Path, *,
                      batch_size: int = 64, device: str | None = None,
                      progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """``{model: {layer: n x features}}`` at the paper's layers, flattened and cached (memmaps);
    ``fc`` keeps only the trained units and is left out for models that have none (untrained)."""
    acts = {}
    for m, model in named.items():
        modules = set(dict(model.named_modules()))
        missing = [layer for layer in PAPER_CKA_LAYERS if layer not in modules]
        if missing:
            raise UserError(f"model {m} lacks the paper's layer(s) {', '.join(missing)} (the protocol "
                            "is defined for torchvision ResNets)")
        layers = [layer for layer in PAPER_DECODING_LAYERS if layer in modules]
        a = dict(extract(model, stimuli, layers, pooling="none", batch_size=batch_size, device=device,
                         cache_dir=cache_dir, model_id=m, progress=progress))
        units = trained_units(model)
        if "fc" in a and len(units):
            a["fc"] = np.asarray(a["fc"][:, units])
        else:
            a.pop("fc", None)
        acts[m] = a
    return acts


def cka_similarity(acts: Mapping[str, Mapping[str, np.ndarray]],
                   layers: Sequence[str] = PAPER_CKA_LAYERS) -> xr.DataArray:
    """``(model_a, model_b, layer)`` biased linear CKA of flattened activations, memory ``models x n x n``."""
    models = list(acts)
    out = np.empty((len(models), len(models), len(layers)))
    for k, layer in enumerate(layers):
        out[:, :, k] = cka_from_grams([centered_gram(acts[m][layer]) for m in models])
    return xr.DataArray(out, dims=("model_a", "model_b", "layer"),
                        coords={"model_a": models, "model_b": models, "layer": list(layers)}, name="cka")


def group_table(sim: xr.DataArray, labels: Mapping[str, str]) -> pd.DataFrame:
    """Group means/SDs of every layer's CKA matrix: ``layer, group_a, group_b, mean, sd, n``."""
    groups = [labels[str(m)] for m in sim["model_a"].values]
    frames = [group_similarity(sim.sel(layer=layer).values, groups).assign(layer=str(layer))
              for layer in sim["layer"].values]
    return pd.concat(frames, ignore_index=True)[["layer", "group_a", "group_b", "mean", "sd", "n"]]


def mds_coordinates(sim: xr.DataArray) -> dict[str, np.ndarray]:
    """``{layer: models x 2}`` MDS of each layer's CKA matrix (Euclidean distances between its rows)."""
    return {str(layer): mds_embedding(sim.sel(layer=layer).values) for layer in sim["layer"].values}


def mds_frame(coords: Mapping[str, np.ndarray], models: Sequence[str]) -> pd.DataFrame:
    """MDS coordinates as a table ``layer, model, mds1, mds2``."""
    return pd.DataFrame([{"layer": layer, "model": m, "mds1": xy[0], "mds2": xy[1]}
                         for layer, c in coords.items() for m, xy in zip(models, c)])


def cached_decoding(name: str, acts: Mapping[str, np.ndarray], latents: pd.DataFrame, folder: Path,
                    seed: int = 0) -> pd.DataFrame:
    """:func:`paper_decoding_table` of one model, stored as ``decoding-paper-s<seed>.csv`` in its activation
    cache folder (keyed by weights and stimuli), so a rerun decodes only models not done yet."""
    path = folder / f"decoding-paper-s{seed}.csv"
    if path.is_file():
        return pd.read_csv(path).assign(model=name)
    table = paper_decoding_table({name: acts}, latents, seed=seed)
    write_csv(table, path)
    return table


def paper_decoding(named: Mapping[str, nn.Module], acts: Mapping[str, Mapping[str, np.ndarray]],
                   stimuli: Stimuli, latents: pd.DataFrame, cache_dir: Path, *, pixels: bool = True,
                   batch_size: int = 64, progress: bool = True, seed: int = 0, n_jobs: int | None = None) -> pd.DataFrame:
    """Decoding table of every model (resumable) plus, when ``pixels``, the pixel baseline as model ``pixels``
    at the first model's input size; ``n_jobs`` models are decoded at a time (joblib's meaning: None is 1,
    -1 every core; the result does not depend on it)."""
    reducer = Reducer("none")
    jobs = [(m, acts[m], cache_dir / cache_key(named[m], stimuli, reducer, np.float32, m)) for m in named]
    if pixels:
        size = getattr(getattr(next(iter(named.values())), "config", None), "input_size", 224)
        pix = Pixels(size)
        pix_acts = extract(pix, stimuli, [PIXELS], pooling="none", batch_size=batch_size, device="cpu",
                           cache_dir=cache_dir, model_id=PIXELS, progress=progress)
        jobs.append((PIXELS, pix_acts, cache_dir / cache_key(pix, stimuli, reducer, np.float32, PIXELS)))
    tables = Parallel(n_jobs=n_jobs)(delayed(cached_decoding)(m, a, latents, folder, seed) for m, a, folder in jobs)
    return pd.concat(tables, ignore_index=True)


def paper_sections(named: Mapping[str, nn.Module], stimuli: Stimuli, latents: pd.DataFrame, out: Path,
                   labels: Mapping[str, str], *, reference: str | None = None,
                   compare: tuple[str, str] | None = None, batch_size: int = 64, device: str | None = None,
                   progress: bool = True) -> list[Section]:
    """The paper's CKA / group / MDS and decoding analyses of ``named`` on ``stimuli`` as report sections
    (figures and CSVs written into ``out``). ``labels`` maps model -> group; ``reference`` is the group
    the similarity curves compare with (default: ``category`` when present, else the first);
    ``compare`` names two groups whose decoding scores get a Mann-Whitney U test per layer and target."""
    acts = paper_activations(named, stimuli, out / "cache", batch_size=batch_size, device=device, progress=progress)
    similarity = similarity_section(acts, labels, out, len(stimuli), reference)
    decoding = paper_decoding(named, acts, stimuli, latents, out / "cache", batch_size=batch_size, progress=progress)
    tables = [write_csv(decoding, out / "decoding_paper.csv")]
    if compare:
        names = list(named)
        members = [[m for m in names if labels[m] == g] for g in compare]
        if not all(members):
            raise UserError(f"--compare groups {' and '.join(compare)} need models; groups are "
                            f"{', '.join(dict.fromkeys(labels[m] for m in names))}")
        tables.append(write_csv(compare_groups(decoding, *members), out / "decoding_paper_groups.csv"))
    decode = Section(
        "Linear decoding (paper protocol)", DECODING_TEXT + " Group means with SD across models; the dashed "
        "line decodes the pixels themselves.",
        plots.decoding_group_curves(decoding, {m: labels[m] for m in named}, out / "decoding_paper", PIXELS),
        tables)
    return [similarity, decode]


DECODING_TEXT = ("Layers wider than johnson_lindenstrauss_min_dim(n, eps=0.1) features are reduced by a Gaussian "
                 "random projection; 5 random 80/20 splits; LinearSVC(C=5e-3) accuracy for classes, RidgeCV "
                 "Pearson r for continuous latents; fc keeps only the trained units.")


def similarity_section(acts: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, str], out: Path,
                       n_images: int, reference: str | None = None) -> Section:
    """CKA heatmaps, group means/SDs (heatmaps and curves to the ``reference`` group) and MDS as one
    report section, with ``cka_paper.csv``, ``cka_groups.csv`` and ``mds_paper.csv``."""
    sim = cka_similarity(acts)
    groups = group_table(sim, labels)
    names = list(acts)
    group_names = list(dict.fromkeys(labels[m] for m in names))
    reference = reference or ("category" if "category" in group_names else group_names[0])
    if reference not in group_names:
        raise UserError(f"reference group {reference!r} is not one of the groups: {', '.join(group_names)}")
    coords = mds_coordinates(sim)
    return Section(
        "Representational similarity (paper protocol)",
        f"Biased linear CKA of flattened activations (no pooling) on {n_images} held-out images at "
        f"{', '.join(PAPER_CKA_LAYERS)}. Group similarity: mean (SD, ddof=1) of the off-diagonal pairs "
        "within a group and of all pairs between groups. MDS (2 components) on the rows of each layer's "
        "CKA matrix.",
        plots.cka_heatmaps(sim, out / "cka_paper_heatmaps")
        + plots.group_heatmaps(groups, out / "cka_group_heatmaps")
        + plots.group_curves(groups, reference, out / "cka_group_to_reference")
        + plots.mds_scatter(coords, names, {m: labels[m] for m in names}, out / "mds_paper"),
        [write_csv(sim.to_series().reset_index(), out / "cka_paper.csv"),
         write_csv(groups, out / "cka_groups.csv"), write_csv(mds_frame(coords, names), out / "mds_paper.csv")])
