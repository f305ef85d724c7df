"""Figures of the analysis report (matplotlib, no pyplot state): each function writes ``<stem>.png``
and ``<stem>.svg`` and returns their paths.

Inputs are the report's tables: a similarity tensor ``xarray.DataArray (model_a, model_b, layer)``,
decoding / alignment / layer-assignment DataFrames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from latentzoo.analysis.alignment import REGIONS
from latentzoo.fileio import atomic_path

COLORS = matplotlib.colormaps["tab10"].colors


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``fig`` as ``stem.png`` (120 dpi) and ``stem.svg`` (text kept as text) atomically."""
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "latentzoo", "svg.fonttype": "none"}):
        for ext in ("png", "svg"):
            path = Path(f"{stem}.{ext}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=120, metadata={"Date": None} if ext == "svg" else None)
            paths.append(path)
            fig.set_layout_engine("none")  # keep the layout the first save computed
    return paths


def _grid(n: int, size: float = 3.2, sharex: bool = False) -> tuple[Figure, np.ndarray]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(size * cols, size * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharex=sharex).ravel())
    for i, ax in enumerate(axes[n:], start=n):
        ax.set_visible(False)
        if sharex and i >= cols:  # the panel above an empty slot shows the x labels
            axes[i - cols].xaxis.set_tick_params(labelbottom=True)
    return fig, axes


def _regions_in(column: pd.Series) -> list[str]:
    """The regions present in ``column``: V1, V2, V4, IT, behavior first in that order, then any others."""
    present = set(column)
    return [r for r in REGIONS if r in present] + sorted(present - set(REGIONS))


def _group_colors(groups: Mapping[str, str]) -> dict[str, tuple]:
    return {g: COLORS[i % len(COLORS)] for i, g in enumerate(dict.fromkeys(groups.values()))}


def cka_heatmaps(sim: xr.DataArray, stem: str | Path, title: str = "linear CKA") -> list[Path]:
    """One model x model heatmap per layer, values annotated when the matrix is small."""
    models = [str(m) for m in sim["model_a"].values]
    fig, axes = _grid(sim.sizes["layer"], size=1.2 + 0.45 * len(models))
    for ax, layer in zip(axes, sim["layer"].values):
        values = sim.sel(layer=layer).values
        im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(str(layer), fontsize=9)
        ax.set_xticks(range(len(models)), models, rotation=90, fontsize=7)
        ax.set_yticks(range(len(models)), models, fontsize=7)
        if len(models) <= 8:
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=list(axes), shrink=0.6, label=title)
    return save(fig, stem)


def similarity_curves(sim: xr.DataArray, reference: str, groups: Mapping[str, str],
                      stem: str | Path) -> list[Path]:
    """Similarity of every model to ``reference`` across layers: group mean with a min-max band."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    layers = [str(layer) for layer in sim["layer"].values]
    x = np.arange(len(layers))
    colors = _group_colors(groups)
    to_ref = sim.sel(model_b=reference)
    for group, color in colors.items():
        members = [m for m, g in groups.items() if g == group and m != reference]
        if not members:
            continue
        values = to_ref.sel(model_a=members).transpose("model_a", "layer").values
        ax.plot(x, values.mean(0), color=color, marker="o", label=f"{group} (n={len(members)})")
        ax.fill_between(x, values.min(0), values.max(0), color=color, alpha=0.2)
    _reference_axes(ax, layers, reference, "similarity to reference across layers")
    return save(fig, stem)


def _reference_axes(ax, layers: Sequence[str], reference: str, title: str) -> None:
    """Layer ticks, a 0-1 CKA axis to ``reference``, title and legend of a similarity-curve panel."""
    ax.set_xticks(np.arange(len(layers)), layers, rotation=45, ha="right")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(f"CKA to {reference}")
    ax.set_title(title)
    ax.legend(fontsize=7)


def mds_scatter(coords: Mapping[str, np.ndarray], models: Sequence[str], groups: Mapping[str, str],
                stem: str | Path) -> list[Path]:
    """MDS coordinates of the models, one panel per layer, coloured by group."""
    colors = _group_colors(groups)
    fig, axes = _grid(len(coords))
    for ax, (layer, xy) in zip(axes, coords.items()):
        for (x, y), m in zip(xy, models):
            ax.scatter(x, y, color=colors[groups[m]], s=30)
            ax.annotate(m, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("MDS 1")
        ax.set_ylabel("MDS 2")
        ax.margins(0.2)
        ax.set_aspect("equal", adjustable="datalim")
    handles = [matplotlib.lines.Line2D([], [], marker="o", ls="", color=c, label=g) for g, c in colors.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8)
    return save(fig, stem)


def decoding_curves(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Decoding score per layer, one panel per target, one line per model."""
    targets = list(dict.fromkeys(table["target"]))
    layers = list(dict.fromkeys(table["layer"]))
    fig, axes = _grid(len(targets), sharex=True)
    for ax, target in zip(axes, targets):
        sub = table[table["target"] == target]
        for i, (model, rows) in enumerate(sub.groupby("model", sort=False)):
            rows = rows.set_index("layer").reindex(layers)
            ax.plot(range(len(layers)), rows["score"], marker="o", color=COLORS[i % len(COLORS)], label=model)
        ax.set_title(target, fontsize=9)
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(sub["metric"].iloc[0], fontsize=8)
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize=7)
    return save(fig, stem)


def alignment_scatter(per_model: pd.DataFrame, correlations: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Task performance vs each region's score (``per_model``: model, region, score, performance), r in titles."""
    regions = _regions_in(per_model["region"])
    stats = correlations.set_index("region")
    fig, axes = _grid(len(regions))
    for ax, region in zip(axes, regions):
        sub = per_model[per_model["region"] == region]
        ax.scatter(sub["performance"], sub["score"], s=25)
        for _, row in sub.iterrows():
            ax.annotate(row["model"], (row["performance"], row["score"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        r = stats["r"].get(region, np.nan)
        ax.set_title(f"{region}: r = {r:.2f}", fontsize=9)
        ax.set_xlabel("task performance (-test loss)")
        ax.set_ylabel("Brain-Score")
    return save(fig, stem)


def layer_assignment_diagram(assignment: pd.DataFrame, layers: Sequence[str], stem: str | Path) -> list[Path]:
    """Which layer each model commits to each region: layers on x, models on y, a marker per region."""
    models = list(dict.fromkeys(assignment["model"]))
    fig = Figure(figsize=(max(5, 0.5 * len(layers)), 2 + 0.4 * len(models)), layout="constrained")
    ax = fig.subplots()
    regions = [r for r in REGIONS if r in set(assignment["region"])]
    for k, region in enumerate(regions):
        sub = assignment[assignment["region"] == region]
        offset = (k - (len(regions) - 1) / 2) * 0.12
        ax.scatter(sub["depth"], [models.index(m) + offset for m in sub["model"]], label=region,
                   color=COLORS[k], s=30)
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(models)), models, fontsize=7)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_ylim(-0.5, len(models) - 0.5)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    ax.set_title("layer committed to each region")
    return save(fig, stem)


def training_curves(logs: Mapping[str, pd.DataFrame], stem: str | Path, smooth: int = 10) -> list[Path]:
    """Training loss per step (``logs``: model -> table with ``step``, ``loss``), one panel per model,
    raw values faint and a running mean over ``smooth`` steps on top."""
    fig, axes = _grid(len(logs), size=3.0)
    for i, (ax, (model, log)) in enumerate(zip(axes, logs.items())):
        color = COLORS[i % len(COLORS)]
        ax.plot(log["step"], log["loss"], color=color, alpha=0.25, lw=0.8)
        ax.plot(log["step"], log["loss"].rolling(smooth, min_periods=1).mean(), color=color)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
    return save(fig, stem)


def benchmark_scores(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Scores of every model on every benchmark (``table``: model, benchmark, region, score): one panel
    per region, benchmarks on x, a bar per model."""
    regions = _regions_in(table["region"])
    models = list(dict.fromkeys(table["model"]))
    fig, axes = _grid(len(regions), size=3.6)
    width = 0.8 / len(models)
    for ax, region in zip(axes, regions):
        sub = table[table["region"] == region]
        benchmarks = list(dict.fromkeys(sub["benchmark"]))
        for k, model in enumerate(models):
            values = sub[sub["model"] == model].set_index("benchmark")["score"].reindex(benchmarks)
            ax.bar(np.arange(len(benchmarks)) + (k - (len(models) - 1) / 2) * width, values, width,
                   color=COLORS[k % len(COLORS)], label=model)
        ax.set_xticks(range(len(benchmarks)), [b.rsplit(".", 1)[-1] for b in benchmarks], rotation=30,
                      ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(region, fontsize=9)
        ax.set_ylabel("score (raw / ceiling)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(models), 5), fontsize=8)
    return save(fig, stem)


def group_heatmaps(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Group x group mean CKA per layer (``table``: layer, group_a, group_b, mean, sd), annotated mean (SD)."""
    layers = list(dict.fromkeys(table["layer"]))
    groups = list(dict.fromkeys(table["group_a"]))
    fig, axes = _grid(len(layers), size=1.6 + 0.6 * len(groups))
    for ax, layer in zip(axes, layers):
        sub = table[table["layer"] == layer]
        mean = sub.pivot(index="group_a", columns="group_b", values="mean").reindex(index=groups, columns=groups)
        sd = sub.pivot(index="group_a", columns="group_b", values="sd").reindex(index=groups, columns=groups)
        im = ax.imshow(mean.values, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(layer, fontsize=9)
        ax.set_xticks(range(len(groups)), groups, rotation=90, fontsize=7)
        ax.set_yticks(range(len(groups)), groups, fontsize=7)
        if len(groups) <= 8:
            for (i, j), v in np.ndenumerate(mean.values):
                ax.text(j, i, f"{v:.2f}\n({sd.values[i, j]:.2f})", ha="center", va="center", fontsize=5,
                        color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=list(axes), shrink=0.6, label="group mean CKA")
    return save(fig, stem)


def group_curves(table: pd.DataFrame, reference: str, stem: str | Path) -> list[Path]:
    """Mean CKA (error bars: SD) of every group to the ``reference`` group across layers; the reference
    group's own within-group similarity is the dashed line."""
    layers = list(dict.fromkeys(table["layer"]))
    sub = table[table["group_b"] == reference]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(layers))
    for i, group in enumerate(dict.fromkeys(sub["group_a"])):
        rows = sub[sub["group_a"] == group].set_index("layer").reindex(layers)
        style = dict(ls="--", color="black") if group == reference else dict(color=COLORS[i % len(COLORS)])
        ax.errorbar(x + (0 if group == reference else 0.03 * i), rows["mean"], yerr=rows["sd"], marker="o",
                    capsize=3, label=f"{group} (within)" if group == reference else group, **style)
    _reference_axes(ax, layers, reference, "similarity to the reference group across layers")
    return save(fig, stem)


def decoding_group_curves(table: pd.DataFrame, labels: Mapping[str, str], stem: str | Path,
                          baseline: str | None = None) -> list[Path]:
    """Decoding score per layer, one panel per target, group mean with an SD band across the group's
    models; the ``baseline`` model's (e.g. pixels) score is a dashed line."""
    models = table[table["model"] != baseline]
    targets = list(dict.fromkeys(models["target"]))
    layers = list(dict.fromkeys(models["layer"]))
    colors = _group_colors(labels)
    fig, axes = _grid(len(targets), sharex=True)
    for ax, target in zip(axes, targets):
        sub = models[models["target"] == target].assign(group=lambda d: d["model"].map(labels))
        stats = sub.groupby(["group", "layer"])["score"].agg(["mean", "std"])
        for group, color in colors.items():
            if group in stats.index.get_level_values(0):
                rows = stats.loc[group].reindex(layers)
                ax.plot(range(len(layers)), rows["mean"], marker="o", ms=3, color=color, label=group)
                ax.fill_between(range(len(layers)), rows["mean"] - rows["std"], rows["mean"] + rows["std"],
                                color=color, alpha=0.2, lw=0)
        base = table[(table["model"] == baseline) & (table["target"] == target)]["score"]
        if len(base):
            ax.axhline(float(base.iloc[0]), color="black", ls="--", lw=1, label=baseline)
        ax.set_title(target, fontsize=9)
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(sub["metric"].iloc[0], fontsize=8)
    axes[0].legend(fontsize=6)
    return save(fig, stem)


def region_panels(table: pd.DataFrame, x: str, stem: str | Path, xlabel: str, *, log_x: bool = False,
                  lines: bool = True, paper: pd.DataFrame | None = None) -> list[Path]:
    """One panel per score column (V1, V2, V4, IT, neural_mean, behavior present in ``table.region``):
    ``mean`` (error bars: ``sd`` when given) against column ``x``, one colour per ``group``; ``paper``
    (``region, group, x, value``) adds the published values as open squares."""
    order = [*REGIONS[:4], "neural_mean", "behavior"]
    regions = [r for r in order if r in set(table["region"])]
    colors = _group_colors({g: g for g in table["group"]})
    fig, axes = _grid(len(regions))
    for ax, region in zip(axes, regions):
        for group, rows in table[table["region"] == region].groupby("group", sort=False):
            rows = rows.sort_values(x)
            ax.errorbar(rows[x], rows["mean"], yerr=rows["sd"] if "sd" in rows else None, color=colors[group],
                        marker="o", ms=4, ls="-" if lines else "none", capsize=2, label=group)
        if paper is not None:
            for group, rows in paper[paper["region"] == region].groupby("group", sort=False):
                ax.scatter(rows[x], rows["value"], marker="s", facecolors="none",
                           edgecolors=[colors.get(group, "grey")], label=f"{group} (paper)")
        if log_x:
            ax.set_xscale("symlog", linthresh=1)
        ax.set_title(region, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("score", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=7)
    return save(fig, stem)
