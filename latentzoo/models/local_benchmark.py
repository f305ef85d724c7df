"""Local Brain-Score benchmarks from files: a directory becomes Brain-Score's own ``NeuralBenchmark``.

Local benchmark directory (``local:DIR``)::

    DIR/benchmark.json   {"region": "IT", "identifier": "mydata.IT-pls", "visual_degrees": 8,
                          "number_of_trials": 1}   (region is required; the rest has defaults)
    DIR/stimuli.csv      stimulus_id, filename (relative to DIR), optional object_name (stratifies
                         the cross-validation) and any other metadata columns
    DIR/responses.csv    stimulus_id, repetition, neuroid_id, response  (one row per value), or
    DIR/responses.nc     a NetCDF DataArray (presentation x neuroid) with stimulus_id/repetition
                         and neuroid_id coordinates

It becomes Brain-Score's own ``NeuralBenchmark`` with ``load_metric("pls")`` and the
``internal_consistency`` ceiling over repetitions (at least 2 per stimulus).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from latentzoo.errors import UserError
from latentzoo.models.brainscore import VISUAL_DEGREES


def local_benchmark(directory: str | os.PathLike):
    """Brain-Score ``NeuralBenchmark`` built from a directory of files (format in the module doc)."""
    from brainscore_vision import load_ceiling, load_metric
    from brainscore_vision.benchmark_helpers.neural_common import NeuralBenchmark, average_repetition

    directory = Path(directory)
    meta = _read_meta(directory)
    stimuli = _read_stimuli(directory, meta["identifier"])
    assembly = _read_responses(directory, stimuli, meta["region"])
    stratify = "object_name" if "object_name" in stimuli.columns else None
    averaged = average_repetition(assembly)
    ceiler = load_ceiling("internal_consistency")
    return NeuralBenchmark(identifier=meta["identifier"], version=1, assembly=averaged,
                           similarity_metric=load_metric("pls", crossvalidation_kwargs=dict(
                               stratification_coord=stratify, splits=meta["splits"])),
                           visual_degrees=meta["visual_degrees"], number_of_trials=meta["number_of_trials"],
                           ceiling_func=lambda: ceiler(assembly), parent=meta["region"])


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "benchmark.json"
    if not path.is_file():
        raise UserError(f"local benchmark {directory}: benchmark.json is missing (needs at least "
                        '{"region": "V1|V2|V4|IT"})')
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if meta.get("region") not in ("V1", "V2", "V4", "IT"):
        raise UserError(f"{path}: 'region' must be one of V1, V2, V4, IT, got {meta.get('region')!r}")
    return {"identifier": f"local.{directory.name}.{meta['region']}-pls", "visual_degrees": VISUAL_DEGREES,
            "number_of_trials": 1, "splits": 10, **meta}


def _read_stimuli(directory: Path, identifier: str):
    import pandas as pd
    from brainscore_vision import StimulusSet

    path = directory / "stimuli.csv"
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"local benchmark {directory}: stimuli.csv is missing") from None
    missing = {"stimulus_id", "filename"} - set(table.columns)
    if missing:
        raise UserError(f"{path}: missing column(s) {sorted(missing)}")
    table["stimulus_id"] = table["stimulus_id"].astype(str)
    files = {sid: directory / name for sid, name in zip(table["stimulus_id"], table["filename"])}
    absent = [str(p) for p in files.values() if not p.is_file()]
    if absent:
        raise UserError(f"{path}: {len(absent)} stimulus file(s) not found, e.g. {absent[0]}")
    stimuli = StimulusSet(table.drop(columns=["filename"]))
    stimuli.stimulus_paths = {sid: str(p) for sid, p in files.items()}
    stimuli.identifier = identifier
    return stimuli


def _read_responses(directory: Path, stimuli, region: str):
    """Responses as a (presentation x neuroid) ``NeuroidAssembly`` with repetitions, stimulus metadata."""
    import numpy as np
    import pandas as pd
    import xarray as xr
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    csv, nc = directory / "responses.csv", directory / "responses.nc"
    if csv.is_file():
        long = pd.read_csv(csv, dtype={"stimulus_id": str, "neuroid_id": str})
        missing = {"stimulus_id", "repetition", "neuroid_id", "response"} - set(long.columns)
        if missing:
            raise UserError(f"{csv}: missing column(s) {sorted(missing)}")
        wide = long.pivot_table(index=["stimulus_id", "repetition"], columns="neuroid_id", values="response")
        stimulus_ids = wide.index.get_level_values(0).astype(str)
        repetitions = wide.index.get_level_values(1).values
        neuroids, values = wide.columns.astype(str).values, wide.values
    elif nc.is_file():
        data = xr.open_dataarray(nc).load()
        try:
            data = data.transpose("presentation", "neuroid")
            stimulus_ids, repetitions = data["stimulus_id"].values.astype(str), data["repetition"].values
            neuroids, values = data["neuroid_id"].values.astype(str), data.values
        except (KeyError, ValueError) as e:
            raise UserError(f"{nc}: expected presentation x neuroid with stimulus_id, repetition, "
                            f"neuroid_id coordinates ({e})") from None
    else:
        raise UserError(f"local benchmark {directory}: responses.csv or responses.nc is missing")
    unknown = set(stimulus_ids) - set(stimuli["stimulus_id"])
    if unknown:
        raise UserError(f"{directory}: responses name stimuli not in stimuli.csv, e.g. {sorted(unknown)[0]}")
    if len(set(repetitions)) < 2:
        raise UserError(f"{directory}: the internal-consistency ceiling needs >= 2 repetitions per stimulus")
    meta = stimuli.set_index("stimulus_id").loc[list(stimulus_ids)]
    presentation = {"stimulus_id": ("presentation", np.asarray(stimulus_ids)),
                    "repetition": ("presentation", np.asarray(repetitions))}
    presentation.update({c: ("presentation", meta[c].values) for c in meta.columns})
    assembly = NeuroidAssembly(values[:, :, None].astype(np.float64), coords={
        **presentation, "neuroid_id": ("neuroid", neuroids), "region": ("neuroid", [region] * len(neuroids)),
        "time_bin_start": ("time_bin", [70]), "time_bin_end": ("time_bin", [170])},
        dims=["presentation", "neuroid", "time_bin"])
    assembly = assembly.squeeze("time_bin")
    assembly.attrs["stimulus_set"] = stimuli
    return assembly
