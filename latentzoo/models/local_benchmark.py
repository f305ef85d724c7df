"""Local Brain-Score benchmarks from files: a directory becomes Brain-Score's own ``NeuralBenchmark``.

Local benchmark directory (``local:DIR``; docs/benchmarks-local.md)::

    DIR/benchmark.json   {"region": "IT", "identifier": "mydata.IT-pls", "visual_degrees": 8,
                          "number_of_trials": 1, "splits": 10}   (region is required; the rest has defaults)
    DIR/stimuli.csv      stimulus_id (read as text: "007" stays "007"), filename (relative to DIR),
                         optional object_name (stratifies the cross-validation when every class can be
                         split) and any other metadata columns
    DIR/responses.csv    stimulus_id, repetition, neuroid_id, response  (one row per value), or
    DIR/responses.nc     a NetCDF DataArray (presentation x neuroid) with stimulus_id/repetition
                         and neuroid_id coordinates

It becomes Brain-Score's own ``NeuralBenchmark`` with ``load_metric("pls")`` and the
``internal_consistency`` ceiling over repetitions (at least 2 per stimulus). Every problem of the
files is one UserError line raised here, before any model runs. The stimulus set's identifier
carries a digest of the files' contents, so Brain-Score's on-disk caches never serve an edited
benchmark's old activations or layer scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from latentzoo.errors import UserError
from latentzoo.fileio import sha256_file
from latentzoo.models.brainscore import VISUAL_DEGREES

REGIONS = ("V1", "V2", "V4", "IT")
#: Brain-Score's cross-validation of ``load_metric("pls")``: a 90/10 split (sklearn's ``train_size=0.9``).
TRAIN_SIZE = 0.9


def local_benchmark(directory: str | os.PathLike, images: int | None = None):
    """Brain-Score ``NeuralBenchmark`` built from a directory of files (format in the module doc).

    ``images``: use at most this many stimuli (a fixed random subset, the same on every run), e.g.
    for a quick ``layermap``; the benchmark's identifier then ends with ``-images<N>``.
    """
    from brainscore_vision import load_ceiling, load_metric
    from brainscore_vision.benchmark_helpers.neural_common import NeuralBenchmark, average_repetition

    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"local benchmark {directory}: no such directory")
    meta = _read_meta(directory)
    table = _read_stimuli(directory)
    values, stimulus_ids, repetitions, neuroids = _read_responses(directory, set(table["stimulus_id"]))
    keep = _subset(list(table["stimulus_id"]), images)
    identifier = meta["identifier"] + (f"-images{len(keep)}" if len(keep) < len(table) else "")
    rows = np.isin(stimulus_ids, keep)
    values, stimulus_ids, repetitions = values[rows], stimulus_ids[rows], repetitions[rows]
    table = table[table["stimulus_id"].isin(keep)].reset_index(drop=True)
    _check_counts(directory, table, stimulus_ids, repetitions)
    stratify = _stratification(directory, table, meta["splits"])
    stimuli = _stimulus_set(directory, table, f"{identifier}-{_digest(directory, table)}")
    assembly = _assembly(stimuli, values, stimulus_ids, repetitions, neuroids, meta["region"])
    averaged = average_repetition(assembly)
    ceiler = load_ceiling("internal_consistency")
    return NeuralBenchmark(identifier=identifier, version=1, assembly=averaged,
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
    if not isinstance(meta, dict) or meta.get("region") not in REGIONS:
        raise UserError(f"{path}: 'region' must be one of V1, V2, V4, IT, got "
                        f"{meta.get('region') if isinstance(meta, dict) else meta!r}")
    meta = {"identifier": f"local.{directory.name}.{meta['region']}-pls", "visual_degrees": VISUAL_DEGREES,
            "number_of_trials": 1, "splits": 10, **meta}
    if not isinstance(meta["splits"], int) or meta["splits"] < 2:
        raise UserError(f"{path}: 'splits' must be an integer >= 2, got {meta['splits']!r}")
    return meta


def _read_stimuli(directory: Path):
    """stimuli.csv as a DataFrame (ids as text), every listed file present and readable as an image."""
    import pandas as pd
    from PIL import Image, UnidentifiedImageError

    path = directory / "stimuli.csv"
    try:
        table = pd.read_csv(path, dtype={"stimulus_id": str, "object_name": str}, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"local benchmark {directory}: stimuli.csv is missing") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None
    missing = {"stimulus_id", "filename"} - set(table.columns)
    if missing:
        raise UserError(f"{path}: missing column(s) {sorted(missing)}")
    if table.empty:
        raise UserError(f"{path}: lists no stimuli")
    duplicated = table["stimulus_id"][table["stimulus_id"].duplicated()]
    if len(duplicated):
        raise UserError(f"{path}: stimulus_id {duplicated.iloc[0]!r} appears more than once")
    files = [directory / str(name) for name in table["filename"]]
    absent = [str(p) for p in files if not p.is_file()]
    if absent:
        raise UserError(f"{path}: {len(absent)} stimulus file(s) not found, e.g. {absent[0]}")
    for p in files:
        try:
            with Image.open(p):
                pass  # the header only
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"{path}: {p} is not a readable image ({e})") from None
    return table


def _read_responses(directory: Path, known: set[str]):
    """(values presentation x neuroid, stimulus_ids, repetitions, neuroids) from responses.csv/.nc."""
    import pandas as pd
    import xarray as xr

    csv, nc = directory / "responses.csv", directory / "responses.nc"
    if csv.is_file():
        try:
            long = pd.read_csv(csv, dtype={"stimulus_id": str, "neuroid_id": str}, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserError(f"{csv}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None
        missing = {"stimulus_id", "repetition", "neuroid_id", "response"} - set(long.columns)
        if missing:
            raise UserError(f"{csv}: missing column(s) {sorted(missing)}")
        response = pd.to_numeric(long["response"], errors="coerce")
        bad = long.index[response.isna()]
        if len(bad):
            row = long.loc[bad[0]]
            raise UserError(f"{csv}: response of stimulus {row['stimulus_id']}, repetition {row['repetition']}, "
                            f"neuroid {row['neuroid_id']} is not a number ({row['response']!r}; line {bad[0] + 2})")
        long = long.assign(response=response)
        _check_ids(directory, long["stimulus_id"], known)
        twice = long.duplicated(["stimulus_id", "repetition", "neuroid_id"])
        if twice.any():
            row = long[twice].iloc[0]
            raise UserError(f"{csv}: stimulus {row['stimulus_id']}, repetition {row['repetition']}, neuroid "
                            f"{row['neuroid_id']} has more than one response")
        wide = long.pivot(index=["stimulus_id", "repetition"], columns="neuroid_id", values="response")
        if wide.isna().values.any():
            (sid, rep), neuroid = wide.index[np.isnan(wide.values).any(1)][0], wide.columns[np.isnan(wide.values).any(0)][0]
            raise UserError(f"{csv}: no response for stimulus {sid}, repetition {rep}, neuroid {neuroid} "
                            "(every stimulus and repetition needs a value for every neuroid)")
        stimulus_ids = wide.index.get_level_values(0).astype(str).values
        repetitions = wide.index.get_level_values(1).values
        neuroids, values = wide.columns.astype(str).values, wide.values
    elif nc.is_file():
        try:
            data = xr.open_dataarray(nc).load().transpose("presentation", "neuroid")
            stimulus_ids, repetitions = data["stimulus_id"].values.astype(str), data["repetition"].values
            neuroids, values = data["neuroid_id"].values.astype(str), data.values.astype(np.float64)
        except (KeyError, ValueError, OSError) as e:
            raise UserError(f"{nc}: expected presentation x neuroid with stimulus_id, repetition, "
                            f"neuroid_id coordinates ({str(e).strip().splitlines()[0]})") from None
        if not np.isfinite(values).all():
            raise UserError(f"{nc}: holds NaN or infinite responses")
        _check_ids(directory, stimulus_ids, known)
    else:
        raise UserError(f"local benchmark {directory}: responses.csv or responses.nc is missing")
    return values, np.asarray(stimulus_ids), np.asarray(repetitions), neuroids


def _check_ids(directory: Path, stimulus_ids, known: set[str]) -> None:
    """The responses name exactly the stimuli of stimuli.csv."""
    unknown = set(stimulus_ids) - known
    if unknown:
        raise UserError(f"{directory}: responses name {len(unknown)} stimuli not in stimuli.csv, e.g. "
                        f"{sorted(unknown)[0]!r}")
    silent = known - set(stimulus_ids)
    if silent:
        raise UserError(f"{directory}: {len(silent)} stimuli of stimuli.csv have no responses, e.g. "
                        f"{sorted(silent)[0]!r}; remove them from stimuli.csv")


def _subset(ids: list[str], images: int | None) -> list[str]:
    """At most ``images`` of ``ids``: a fixed random choice (seed 0), kept in file order."""
    if images is None or images >= len(ids):
        return ids
    if images < 1:
        raise UserError(f"--images must be at least 1, got {images}")
    chosen = set(np.random.default_rng(0).choice(len(ids), images, replace=False).tolist())
    return [sid for i, sid in enumerate(ids) if i in chosen]


def _check_counts(directory: Path, table, stimulus_ids: np.ndarray, repetitions: np.ndarray) -> None:
    """Enough repetitions for the ceiling, enough stimuli for a 90/10 split that tests 2 or more."""
    import pandas as pd

    per_stimulus = pd.Series(repetitions).groupby(stimulus_ids).nunique()
    if per_stimulus.min() < 2:
        raise UserError(f"{directory}: stimulus {per_stimulus.idxmin()!r} has a single repetition; the "
                        "internal-consistency ceiling needs >= 2 repetitions per stimulus")
    n = len(table)
    if n - int(np.floor(TRAIN_SIZE * n)) < 2:
        raise UserError(f"{directory}: {n} stimuli are too few; Brain-Score's 90/10 cross-validation needs "
                        "at least 11 so that each split tests on 2 or more")


def _stratification(directory: Path, table, splits: int) -> str | None:
    """``"object_name"`` when sklearn's ``StratifiedShuffleSplit`` (Brain-Score's splitter) can split
    by it; else None, with a one-line warning saying why (e.g. a class with a single stimulus)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if "object_name" not in table.columns:
        return None
    classes = table["object_name"].values
    try:
        next(StratifiedShuffleSplit(n_splits=splits, train_size=TRAIN_SIZE, random_state=1)
             .split(np.zeros(len(classes)), classes))
    except ValueError as e:
        counts = table["object_name"].value_counts()
        reason = (f"object_name {counts.idxmin()!r} has a single stimulus" if counts.min() < 2
                  else str(e).strip().splitlines()[0])
        warnings.warn(f"{directory}: the cross-validation is not stratified by object_name ({reason})",
                      stacklevel=3)
        return None
    return "object_name"


def _digest(directory: Path, table) -> str:
    """sha256 (12 hex) over the benchmark's files: json, stimuli table, responses, every stimulus image."""
    h = hashlib.sha256()
    for name in ("benchmark.json", "stimuli.csv", "responses.csv", "responses.nc"):
        if (directory / name).is_file():
            h.update(f"{name}:{sha256_file(directory / name)}".encode())
    for name in table["filename"]:
        h.update(sha256_file(directory / str(name)).encode())
    return h.hexdigest()[:12]


def _stimulus_set(directory: Path, table, identifier: str):
    """Brain-Score ``StimulusSet`` of ``table``; ``filename`` stays a column, so the presentation index
    has two levels even without ``object_name`` (a single level makes Brain-Score's splitter fail)."""
    from brainscore_vision import StimulusSet

    stimuli = StimulusSet(table.copy())
    stimuli.stimulus_paths = {sid: str(directory / str(name)) for sid, name in zip(table["stimulus_id"], table["filename"])}
    stimuli.identifier = identifier
    return stimuli


def _assembly(stimuli, values: np.ndarray, stimulus_ids: np.ndarray, repetitions: np.ndarray,
              neuroids: np.ndarray, region: str):
    """Responses as a (presentation x neuroid) ``NeuroidAssembly`` with repetitions and stimulus metadata."""
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    meta = stimuli.set_index("stimulus_id").loc[list(stimulus_ids)]
    presentation = {"stimulus_id": ("presentation", stimulus_ids), "repetition": ("presentation", repetitions)}
    presentation.update({c: ("presentation", meta[c].values) for c in meta.columns})
    assembly = NeuroidAssembly(values[:, :, None].astype(np.float64), coords={
        **presentation, "neuroid_id": ("neuroid", neuroids), "region": ("neuroid", [region] * len(neuroids)),
        "time_bin_start": ("time_bin", [70]), "time_bin_end": ("time_bin", [170])},
        dims=["presentation", "neuroid", "time_bin"])
    assembly = assembly.squeeze("time_bin")
    assembly.attrs["stimulus_set"] = stimuli
    return assembly
