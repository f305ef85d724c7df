"""Brain-Score results as one table, task performance vs alignment, and layer assignments.

Results files (what ``brainscore score`` writes, or hand-made) are CSV or JSON with one row per
(model, benchmark)::

    model,benchmark,region,score[,performance]
    tdw-distance-r18,MajajHong2015public.IT-pls,IT,0.52,-0.31

``region`` may be omitted (it is inferred from the benchmark name: V1, V2, V4, IT, behavior);
JSON is a list of such records or ``{"scores": [...]}`` (``brainscore score``'s scores.json).
Extra columns (``raw``, ``ceiling``, ...) are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import pearsonr

from latentzoo.errors import UserError

REGIONS = ("V1", "V2", "V4", "IT", "behavior")
REQUIRED = ("model", "benchmark", "score")


def region_of(benchmark: str) -> str:
    """Brain region a benchmark measures, from its identifier (``...V4-pls`` -> ``V4``, ``...-i2n`` -> behavior)."""
    for region in ("V1", "V2", "V4", "IT"):
        if f".{region}-" in benchmark or benchmark.endswith(f".{region}") or f"-{region}-" in benchmark:
            return region
    return "behavior"


def load_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Brain-Score results files -> one table ``model, benchmark, region, score, ...``."""
    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"Brain-Score results file {path} does not exist")
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(path.read_text())
                frame = pd.DataFrame(data.get("scores", data) if isinstance(data, dict) else data)
            else:
                frame = pd.read_csv(path)
        except (ValueError, pd.errors.ParserError) as e:
            raise UserError(f"cannot parse Brain-Score results {path}: {e}") from None
        missing = [c for c in REQUIRED if c not in frame]
        if missing:
            raise UserError(f"{path} lacks column(s) {', '.join(missing)} "
                            f"(expected model,benchmark,region,score[,performance])")
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=REQUIRED)
    if "region" not in table:
        table["region"] = table["benchmark"].map(region_of)
    table["region"] = table["region"].fillna(table["benchmark"].map(region_of))
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    return table.drop_duplicates(["model", "benchmark"], keep="last").reset_index(drop=True)


def scores_from_configs(extras: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Scores stored in model configs (``latentzoo.extra.scores = {benchmark: score}``) as a results table."""
    rows = [{"model": m, "benchmark": b, "region": region_of(b), "score": float(s)}
            for m, extra in extras.items() for b, s in (extra.get("scores") or {}).items()]
    return pd.DataFrame(rows, columns=["model", "benchmark", "region", "score"])


def performance_of(extra: Mapping[str, Any]) -> float:
    """Task performance of a model: ``metrics.performance`` of its config, else minus ``metrics.loss``
    (the test loss), else NaN."""
    metrics = extra.get("metrics") or {}
    if "performance" in metrics:
        return float(metrics["performance"])
    return -float(metrics["loss"]) if "loss" in metrics else float("nan")


def performance_alignment(results: pd.DataFrame, performance: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Pearson r of task performance with each region's score across models.

    Performance comes from a ``performance`` column of ``results`` or from ``performance``
    ``{model: value}``; a region's score is the mean over its benchmarks. Columns: ``region, r, p, n``.
    """
    table = results.copy()
    if performance is not None:
        table["performance"] = table["model"].map(performance)
    if "performance" not in table:
        raise UserError("no task performance: give models with test metrics or a performance column")
    per_model = table.groupby(["region", "model"], sort=False).agg(score=("score", "mean"),
                                                                   performance=("performance", "first"))
    rows = []
    for region, sub in per_model.dropna().groupby(level="region", sort=False):
        r, p = pearsonr(sub["performance"], sub["score"]) if len(sub) > 2 else (np.nan, np.nan)
        rows.append({"region": region, "r": float(r), "p": float(p), "n": len(sub)})
    order = {r: i for i, r in enumerate(REGIONS)}
    return pd.DataFrame(rows, columns=["region", "r", "p", "n"]).sort_values(
        "region", key=lambda s: s.map(lambda r: order.get(r, len(order)))).reset_index(drop=True)


def layer_assignment(layer_maps: Mapping[str, Mapping[str, str]], layers: Sequence[str]) -> pd.DataFrame:
    """``model, region, layer, depth`` for each model's region -> layer map (``depth`` = index in ``layers``)."""
    position = {name: i for i, name in enumerate(layers)}
    rows = [{"model": m, "region": region, "layer": layer, "depth": position.get(layer, np.nan)}
            for m, mapping in layer_maps.items() for region, layer in mapping.items()]
    return pd.DataFrame(rows, columns=["model", "region", "layer", "depth"])
