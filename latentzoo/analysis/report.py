"""``latentzoo analyze``: compare models on a rendered dataset and write a self-contained HTML report.

:func:`analyze` extracts (cached) activations of every model on one dataset split, then writes
into ``out``: ``index.html``, figures (PNG + SVG) and CSV tables of

* linear CKA (biased and debiased) and RSA between all models at every layer, with per-layer
  heatmaps, similarity-to-reference curves (group mean and band) and MDS of each layer's CKA matrix;
* effective dimensionality of every layer;
* 5-fold linear decoding of every latent from every layer (and a Mann-Whitney comparison of two
  model groups when ``compare`` is given);
* Brain-Score alignment vs task performance (results files and/or scores in model configs) and the
  models' region -> layer assignments, when available.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from torch import nn

from latentzoo.analysis import alignment, plots
from latentzoo.analysis.activations import Stimuli, extract
from latentzoo.analysis.cka import cka_matrix
from latentzoo.analysis.decoding import compare_groups, decoding_table
from latentzoo.analysis.mds import mds_embedding
from latentzoo.analysis.rsa import compare_rdms, effective_dimensionality, rdm
from latentzoo.datasets import RenderedDataset
from latentzoo.errors import UserError
from latentzoo.fileio import write_bytes_atomic

class Section(NamedTuple):
    """One part of the HTML report: heading, paragraph, figures (``.png`` shown, ``.svg`` linked) and CSV tables,
    all inside the report folder."""

    title: str
    text: str
    figures: Sequence[Path] = ()
    tables: Sequence[Path] = ()


#: Analysis presets of :func:`analyze`: today's defaults and the paper's protocol.
PROTOCOLS = ("default", "paper")
#: The paper's CKA layers (torchvision ResNet names); the default when present in every model.
PAPER_LAYERS = ("layer1.0.relu", "layer2.0.relu", "layer3.0.relu", "layer4.0.relu", "avgpool", "fc")


def load_model(spec: nn.Module | str) -> nn.Module:
    """A model object as is; a model folder via :func:`latentzoo.hub.load_pretrained`; else a zoo id."""
    if isinstance(spec, nn.Module):
        return spec
    if Path(spec).is_dir():
        from latentzoo.hub import load_pretrained

        return load_pretrained(spec)
    from latentzoo.weights import from_pretrained

    return from_pretrained(spec)


def name_models(models: Sequence[nn.Module | str] | Mapping[str, nn.Module | str]) -> dict[str, nn.Module]:
    """``{unique name: model}``: mapping keys, else config ids, folder names or ``model<i>``."""
    if isinstance(models, Mapping):
        return {str(k): load_model(v) for k, v in models.items()}
    named: dict[str, nn.Module] = {}
    for i, spec in enumerate(models):
        model = load_model(spec)
        config = getattr(model, "config", None)
        name = (getattr(config, "id", None) or (Path(spec).name if isinstance(spec, str) else None)
                or f"model{i}")
        while name in named:
            name = f"{name}-{i}"
        named[name] = model
    return named


def default_layers(models: Mapping[str, nn.Module]) -> list[str]:
    """The paper's layers present in every model (UserError when none are)."""
    names = [set(dict(m.named_modules())) for m in models.values()]
    layers = [layer for layer in PAPER_LAYERS if all(layer in n for n in names)]
    if not layers:
        raise UserError("the models share none of the paper's layers; name layers with --layers")
    return layers


def similarity_tensor(activations: Mapping[str, Mapping[str, np.ndarray]], layers: Sequence[str],
                      metric: str = "cka") -> xr.DataArray:
    """``(model_a, model_b, layer)`` similarities: ``cka``, ``cka_debiased`` (linear) or ``rsa``."""
    models = list(activations)
    out = np.empty((len(models), len(models), len(layers)))
    for k, layer in enumerate(layers):
        feats = [activations[m][layer] for m in models]
        if metric == "rsa":
            rdms = [rdm(f) for f in feats]
            out[:, :, k] = [[compare_rdms(a, b) for b in rdms] for a in rdms]
        elif metric in ("cka", "cka_debiased"):
            out[:, :, k] = cka_matrix(feats, debiased=metric == "cka_debiased")
        else:
            raise ValueError(f"unknown metric {metric!r}")
    return xr.DataArray(out, dims=("model_a", "model_b", "layer"),
                        coords={"model_a": models, "model_b": models, "layer": list(layers)}, name=metric)


def _extra(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    return dict(getattr(config, "extra", None) or {})


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write ``table`` to ``path`` atomically (6 significant digits); returns ``path``."""
    write_bytes_atomic(path, table.to_csv(index=False, float_format="%.6g").encode())
    return path


def analyze(models: Sequence[nn.Module | str] | Mapping[str, nn.Module | str], data: str | Path,
            out: str | Path, *, layers: Sequence[str] | None = None, split: str = "test",
            n_images: int | None = None, brainscore_results: Sequence[str | Path] = (),
            reference: str | None = None, groups: Mapping[str, str] | None = None,
            compare: tuple[str, str] | None = None, pooling: str | int = "avg", batch_size: int = 64,
            cv: int = 5, device: str | None = None, progress: bool = True,
            preface: Sequence[Section] = (), title: str = "latentzoo analysis", protocol: str = "default") -> Path:
    """Run every analysis on ``models`` x ``data[split]`` and write the report into ``out``; returns index.html.

    ``groups`` maps model name (or the model as given) -> group label (default: the model's
    objective); ``reference`` is the model the similarity curves compare with (default: the first);
    ``compare`` names two groups whose decoding scores are tested per layer. Activations are cached
    in ``out/cache``, so a rerun (or a rerun after an interruption) recomputes nothing already
    extracted. ``preface`` sections (files inside ``out``) come first in the report, under ``title``.
    ``protocol="paper"`` runs the paper's protocol instead (:mod:`latentzoo.analysis.protocol`:
    flattened CKA at its layers with group statistics, its decoding and a pixel baseline, on the
    first 2,000 images by default; ``reference`` then names a group and ``layers``/``pooling`` do not apply).
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    out = Path(out)
    named = name_models(models)
    if len(named) < 2:
        raise UserError("analyze needs at least two models to compare")
    given = dict(zip(named, models)) if not isinstance(models, Mapping) else {}
    groups = {m: _group_of(m, given.get(m), model, groups or {}) for m, model in named.items()}
    if protocol == "paper":
        from latentzoo.analysis.protocol import PAPER_CKA_LAYERS, PAPER_N_IMAGES, paper_sections

        stimuli = Stimuli.from_dataset(data, split=split, n=n_images or PAPER_N_IMAGES)
        sections = list(preface) + paper_sections(
            named, stimuli, _latents_of(data, split, stimuli), out, groups, reference=reference, compare=compare,
            batch_size=batch_size, device=device, progress=progress)
        sections += alignment_sections(named, brainscore_results, out, PAPER_CKA_LAYERS)
        return _write_html(out, title, named, data, split, len(stimuli), PAPER_CKA_LAYERS, sections)
    layers = list(layers) if layers else default_layers(named)
    stimuli = Stimuli.from_dataset(data, split=split, n=n_images)
    latents = _latents_of(data, split, stimuli)
    reference = reference or next(iter(named))
    if reference not in named:
        raise UserError(f"reference {reference!r} is not one of the models: {', '.join(named)}")

    acts = {m: extract(model, stimuli, layers, pooling=pooling, batch_size=batch_size, device=device,
                       cache_dir=out / "cache", model_id=m, progress=progress) for m, model in named.items()}
    sections = list(preface)

    sims = {metric: similarity_tensor(acts, layers, metric) for metric in ("cka", "cka_debiased", "rsa")}
    sim_table = pd.concat([s.to_series() for s in sims.values()], axis=1).reset_index()
    similarity_csv = write_csv(sim_table, out / "similarity.csv")
    dims = pd.DataFrame([{"model": m, "layer": layer, "effective_dimensionality": effective_dimensionality(x)}
                         for m, per_layer in acts.items() for layer, x in per_layer.items()])
    coords = {layer: mds_embedding(sims["cka"].sel(layer=layer).values) for layer in layers}
    mds_table = pd.DataFrame([{"layer": layer, "model": m, "mds1": xy[0], "mds2": xy[1]}
                              for layer, c in coords.items() for m, xy in zip(named, c)])
    sections.append(Section("Representational similarity",
                     f"Linear CKA, debiased linear CKA and RSA (Spearman of correlation-distance RDMs) "
                     f"between every pair of models on {len(stimuli)} {split} images, per layer "
                     f"(activations: {pooling} pooling). MDS of each layer's CKA matrix uses Euclidean "
                     f"distances between its rows.",
                     plots.cka_heatmaps(sims["cka"], out / "cka_heatmaps")
                     + plots.cka_heatmaps(sims["cka_debiased"], out / "cka_debiased_heatmaps", "debiased CKA")
                     + plots.similarity_curves(sims["cka"], reference, groups, out / "similarity_to_reference")
                     + plots.mds_scatter(coords, list(named), groups, out / "mds"),
                     [similarity_csv, write_csv(dims, out / "effective_dimensionality.csv"),
                      write_csv(mds_table, out / "mds.csv")]))

    decoding = decoding_table(acts, latents, cv=cv)
    tables = [write_csv(decoding, out / "decoding.csv")]
    if compare:
        members = [[m for m, g in groups.items() if g == label] for label in compare]
        tables.append(write_csv(compare_groups(decoding, *members), out / "decoding_groups.csv"))
    sections.append(Section("Linear decoding", f"{cv}-fold cross-validated ridge (R^2) and logistic regression "
                     "(accuracy) readouts of each latent from each layer.",
                     plots.decoding_curves(decoding, out / "decoding"), tables))

    sections += alignment_sections(named, brainscore_results, out, layers)
    return _write_html(out, title, named, data, split, len(stimuli), layers, sections)


def _latents_of(data: str | Path, split: str, stimuli: Stimuli) -> pd.DataFrame:
    """The latents table rows of ``stimuli``, in their order."""
    return RenderedDataset(data).latents(split).set_index("key").loc[stimuli.ids].reset_index()


def _group_of(name: str, spec: object, model: nn.Module, groups: Mapping[str, str]) -> str:
    """A model's group label: ``groups`` by name, else by the string the model was given as, else its objective."""
    label = groups.get(name) or (groups.get(spec) if isinstance(spec, str) else None)
    return label or getattr(getattr(model, "config", None), "objective", name)


def alignment_sections(named: Mapping[str, nn.Module], brainscore_results: Sequence[str | Path], out: Path,
                       layers: Sequence[str]) -> list[Section]:
    """Brain alignment vs task performance and layer-assignment sections, when scores / layer maps exist."""
    sections = []
    extras = {m: _extra(model) for m, model in named.items()}
    results = alignment.scores_from_configs(extras)
    if brainscore_results:
        results = pd.concat([results.dropna(axis=1, how="all") if len(results) else None,
                             alignment.load_results(brainscore_results)])
    results = results[results["model"].isin(named)].copy() if len(results) else results
    if len(results):
        performance = results["model"].map({m: alignment.performance_of(e) for m, e in extras.items()})
        results["performance"] = (results["performance"].fillna(performance) if "performance" in results
                                  else performance)
        correlations = alignment.performance_alignment(results)
        per_model = results.groupby(["model", "region"], as_index=False).agg(
            score=("score", "mean"), performance=("performance", "first"))
        sections.append(Section("Brain alignment vs task performance",
                         "Pearson r across models of task performance (negative test loss) with the mean "
                         "Brain-Score of each region.",
                         plots.alignment_scatter(per_model, correlations, out / "alignment"),
                         [write_csv(results, out / "brainscore.csv"),
                          write_csv(correlations, out / "performance_alignment.csv")]))

    maps = {m: e["layers"] for m, e in extras.items() if e.get("layers")}
    if maps:
        all_layers = getattr(next(iter(named.values())), "layers", layers)
        assignment = alignment.layer_assignment(maps, all_layers)
        sections.append(Section("Layer assignment", "The layer each model commits to each brain region.",
                         plots.layer_assignment_diagram(assignment, all_layers, out / "layer_assignment"),
                         [write_csv(assignment, out / "layer_assignment.csv")]))
    return sections


def _write_html(out: Path, title: str, models: Mapping[str, nn.Module], data: str | Path, split: str, n: int,
                layers: Sequence[str], sections: Sequence[Section]) -> Path:
    """index.html linking the figures (PNG shown, SVG linked) and embedding every CSV table."""
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1><p>{len(models)} models ({esc(', '.join(models))}) on "
            f"{n} {esc(split)} images of <code>{esc(str(data))}</code>; layers: {esc(', '.join(layers))}.</p>"]
    for section in sections:
        body.append(f"<h2>{esc(section.title)}</h2><p>{esc(section.text)}</p>")
        for png in (p for p in section.figures if p.suffix == ".png"):
            svg = png.with_suffix(".svg").name
            body.append(f'<figure><img src="{esc(png.name)}" alt="{esc(png.stem)}">'
                        f'<figcaption>{esc(png.stem)} (<a href="{esc(svg)}">SVG</a>)</figcaption></figure>')
        for csv in section.tables:
            table = pd.read_csv(csv)
            shown = table.to_html(index=False, float_format=lambda v: f"{v:.3f}", max_rows=60, border=0)
            body.append(f'<h3><a href="{esc(csv.name)}">{esc(csv.name)}</a></h3>{shown}')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:12px}td,th{padding:2px 8px;border-bottom:1px solid #ddd}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    path = out / "index.html"
    write_bytes_atomic(path, page.encode())
    return path
