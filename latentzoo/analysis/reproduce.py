"""``latentzoo reproduce``: every result of Xie et al. (ICLR 2025) that a set of models allows, each under
the paper's number, as one HTML report with CSV tables and the paper's published values beside ours.

Inputs are model folders (or zoo ids) and rendered datasets. The first dataset's test split is the
evaluation set (its first 2,000 images); every dataset given is also matched with the models'
training data (the ``dataset_sha256`` in their configs), which tells each model's training-set size
and variability (full, or reduced: fewer categories, centred). A model folder's
``snapshots/step-<N>/`` folders join the performance-vs-alignment analysis. Groups default to the
objective (plus the variability when reduced); ``groups`` overrides them.

Results, each when the inputs allow it (the report lists what was not computed and why):

* Table C.1/C.2: mean (SD) V1, V2, V4, IT, neural mean and behavior per architecture and group;
* Figure 2: alignment vs the number of supervised outputs;
* Figure 3 / Table C.3: Pearson r of negative test loss and alignment across snapshots and seeds;
* Figure 4: CKA per layer within and between groups, MDS (:mod:`latentzoo.analysis.protocol`);
* Figure 5 / E.1: decoding of non-target latents, full vs reduced variability, Mann-Whitney U;
* Figure C.2: alignment vs training-set size.

Scores come from results files, from the models' configs (``scores``) and, for models still
without any, from scoring: on the public Brain-Score benchmarks when their data can be downloaded,
else on the spatial-latent ``latentzoo.*`` benchmarks (or the benchmarks asked for), every table
saying which. A model folder without a V1/V2/V4/IT layer map first gets one, written into its config
as ``latentzoo layermap`` does: the ``layers`` given, else Brain-Score's layer selection over its
fine candidate layers (the first benchmark of each region); a snapshot gets its final model's.
Scores are kept in ``OUT/scores/<model>-<weights digest>/``, activations and decodings in
``OUT/cache``, so a rerun resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import pearsonr
from torch import nn

from latentzoo.analysis import plots
from latentzoo.analysis.activations import Stimuli
from latentzoo.analysis.alignment import load_results, performance_of, scores_from_configs
from latentzoo.analysis.decoding import compare_groups
from latentzoo.analysis.protocol import (DECODING_TEXT, PAPER_CKA_LAYERS, PAPER_N_IMAGES, PIXELS, paper_activations,
                                         paper_decoding, similarity_section)
from latentzoo.analysis.published import SCORE_COLUMNS, paper_performance_alignment, paper_scores
from latentzoo.analysis.report import Section, _latents_of, _write_html, name_models, write_csv
from latentzoo.datasets import RenderedDataset
from latentzoo.errors import UserError
from latentzoo.fileio import sha256_file
from latentzoo.hub import read_config
from latentzoo.latents import objective_latents

NEURAL = ("V1", "V2", "V4", "IT")
SNAPSHOTS = "snapshots"
FULL = "full"


# ---------------------------------------------------------------- inputs

def dataset_info(roots: Sequence[str | Path]) -> dict[str, dict]:
    """``{sha256 of dataset.json: {root, train_images, variability}}`` of the datasets given."""
    info = {}
    for root in map(Path, roots):
        ds = RenderedDataset(root)
        info[sha256_file(root / "dataset.json")] = {"root": str(root), "train_images": ds.meta["splits"]["train"],
                                                    "variability": variability_label(ds.meta.get("variability"))}
    return info


def variability_label(variability: Mapping | None) -> str:
    """``full``, or what a reduced-variability dataset holds fixed as the paper's controls do: ``1 category``,
    ``K models per category``, ``centred`` (a dataset of several categories counts as full category variability)."""
    variability = variability or {}
    parts = []
    categories = variability.get("categories")
    if categories and len(categories) == 1:
        parts.append("1 category")
    models = variability.get("models_per_category")
    if models:
        parts.append(f"{models} model{'s' if models > 1 else ''} per category")
    if variability.get("centered"):
        parts.append("centred")
    return ", ".join(parts) or FULL


def snapshot_folders(spec: str) -> list[tuple[int, Path]]:
    """``[(step, folder)]`` of a model folder's ``snapshots/step-<N>/`` model folders, by step."""
    found = []
    for folder in Path(spec, SNAPSHOTS).glob("step-*"):
        step = folder.name.removeprefix("step-")
        if step.isdigit() and (folder / "config.json").is_file():
            found.append((int(step), folder))
    return sorted(found)


def model_table(specs: Sequence[str], named: Mapping[str, nn.Module], datasets: Mapping[str, dict],
                groups: Mapping[str, str]) -> pd.DataFrame:
    """One row per model and snapshot: ``name, path, kind (final | snapshot), parent, objective, arch,
    seed, steps, output_units, performance, train_images, variability, group``."""
    rows = []
    for (name, model), spec in zip(named.items(), specs):
        row = _row(name, spec, "final", name, model.config, datasets)
        row["group"] = groups.get(name) or groups.get(spec) or _default_group(row)
        rows.append(row)
        for step, folder in snapshot_folders(spec):
            snap = _row(f"{name}@step-{step}", str(folder), "snapshot", name, read_config(folder), datasets)
            rows.append({**snap, "group": row["group"], "steps": step})
    return pd.DataFrame(rows)


def _row(name: str, path: str, kind: str, parent: str, cfg, datasets: Mapping[str, dict]) -> dict:
    extra = cfg.extra or {}
    data = datasets.get(extra.get("dataset_sha256"), {})
    units = sum(s.stop - s.start for s in cfg.layout) or (cfg.head_size if cfg.objective == "imagenet" else 0)
    return {"name": name, "path": path, "kind": kind, "parent": parent, "objective": cfg.objective,
            "arch": cfg.arch, "seed": extra.get("seed"), "steps": extra.get("steps"), "output_units": units,
            "performance": performance_of(extra), "train_images": data.get("train_images", extra.get("train_images")),
            "variability": data.get("variability", "unknown")}


def _default_group(row: Mapping) -> str:
    reduced = row["variability"] not in (FULL, "unknown")
    return f"{row['objective']} ({row['variability']})" if reduced else row["objective"]


# ---------------------------------------------------------------- scores

def resolve_benchmarks(requested: Sequence[str] | None) -> tuple[list[str], str]:
    """Benchmark ids to score with and how the report labels them. ``None``: the paper's public
    benchmarks when their data can be loaded, else the spatial-latent ones; ``["none"]``: no scoring."""
    from latentzoo.models.brainscore import PUBLIC_BENCHMARKS, load_benchmark
    from latentzoo.spatial import TASKS

    if requested and list(requested) == ["none"]:
        return [], "none (scores from results files and model configs only)"
    if requested:
        for b in requested:
            load_benchmark(b)  # unknown or unreachable benchmarks fail before any scoring
        return list(requested), benchmark_label(requested)
    try:
        for b in PUBLIC_BENCHMARKS:
            load_benchmark(b)
        return list(PUBLIC_BENCHMARKS), benchmark_label(PUBLIC_BENCHMARKS)
    except UserError:
        spatial = [f"latentzoo.{task}-{region}" for region in NEURAL for task in TASKS]  # Distance-V1 first
        return spatial, benchmark_label(spatial) + " (the public benchmarks' data could not be downloaded)"


def benchmark_label(benchmarks: Sequence[str]) -> str:
    """``public Brain-Score`` / ``spatial-latent (latentzoo.*)`` / ``local`` / ``Brain-Score``, per kind present."""
    from latentzoo.models.brainscore import PUBLIC_BENCHMARKS

    kinds = ["public Brain-Score" if b in PUBLIC_BENCHMARKS else "spatial-latent (latentzoo.*, not the paper's)"
             if b.startswith("latentzoo.") else "local (not the paper's)" if b.startswith("local:")
             else "Brain-Score" for b in benchmarks]
    return ", ".join(dict.fromkeys(kinds)) + " benchmarks: " + ", ".join(benchmarks)


def layer_map(path: str) -> dict[str, str]:
    """The region -> layer map in a model folder's config (empty for zoo ids, whose registry holds theirs)."""
    return dict(read_config(path).extra.get("layers") or {}) if Path(path).is_dir() else {}


def ensure_layer_map(path: str, benchmarks: Sequence[str], batch_size: int,
                     fallback: Mapping[str, str] | None = None) -> None:
    """Give a model folder without a V1/V2/V4/IT map one, written into its config (zoo ids keep theirs):
    ``fallback`` when given (e.g. a snapshot's final model's map), else Brain-Score's layer selection over
    its fine candidates on the first benchmark of each region."""
    from latentzoo.hub import update_card_fields
    from latentzoo.models.brainscore import choose_layers, load_benchmark

    layers = layer_map(path)
    if not Path(path).is_dir() or all(r in layers for r in NEURAL):
        return
    if fallback and all(r in fallback for r in NEURAL):
        update_card_fields(path, layers={**dict(fallback), **layers})
        return
    first = {}
    for b in benchmarks:
        first.setdefault(getattr(load_benchmark(b), "region", None), b)
    missing = [r for r in NEURAL if r not in first]
    if missing:
        raise UserError(f"{path} has no layer map and no {'/'.join(missing)} benchmark to choose one with; "
                        "run `latentzoo layermap` on it, give --layer-map, or add such benchmarks")
    chosen = choose_layers(path, [first[r] for r in NEURAL], batch_size=batch_size, protocol="paper")
    update_card_fields(path, layers={**layers, **{r: next(iter(s)) for r, s in chosen.items()}})


def collect_scores(table: pd.DataFrame, benchmarks: Sequence[str], results: Sequence[str | Path], out: Path,
                   batch_size: int, layers: Mapping[str, str] | None = None,
                   images: int | None = None) -> pd.DataFrame:
    """``model, benchmark, region, score``: results files, then config scores, then scoring of the
    models (and snapshots) that have none yet (cached in ``out/scores/<model>-<digest>/scores.csv``),
    on at most ``images`` stimuli per benchmark (``local:`` and ``latentzoo.*`` ones) when given.
    A model without a layer map gets ``layers`` when given, else one chosen by layer selection; a
    snapshot without one gets its final model's."""
    from latentzoo.models.brainscore import score, write_scores

    frames = [load_results(results)[["model", "benchmark", "region", "score"]]] if results else []
    extras = {row.name: read_config(row.path).extra for row in table.itertuples() if Path(row.path).is_dir()}
    frames.append(scores_from_configs(extras))
    frames = [f for f in frames if len(f)]
    have = set(pd.concat(frames)["model"]) if frames else set()
    for row in table.itertuples():
        if row.name in have or not benchmarks:
            continue
        folder = score_folder(out, row.name, row.path, images)
        if not (folder / "scores.csv").is_file():
            parent = table.loc[table["name"] == row.parent, "path"].iloc[0]
            ensure_layer_map(row.path, benchmarks, batch_size, layer_map(parent) if row.kind == "snapshot" else layers)
            write_scores(score(row.path, benchmarks, batch_size=batch_size, protocol="paper", images=images)
                         .assign(model=row.name), folder)
        frames.append(pd.read_csv(folder / "scores.csv")[["model", "benchmark", "region", "score"]])
    if not frames:
        return pd.DataFrame(columns=["model", "benchmark", "region", "score"])
    scores = pd.concat(frames, ignore_index=True)
    return scores[scores["model"].isin(set(table["name"]))].drop_duplicates(["model", "benchmark"], keep="first")


def score_folder(out: Path, name: str, path: str, images: int | None = None) -> Path:
    """``out/scores/<name>[-<weights sha256 prefix>][-images<N>]``: a folder's scores are never reused for
    other weights or another number of stimuli."""
    weights = Path(path) / "model.safetensors"
    digest = f"-{sha256_file(weights)[:12]}" if weights.is_file() else ""
    return out / "scores" / f"{name.replace('/', '_')}{digest}{f'-images{images}' if images else ''}"


def region_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Long ``model, region, score``: mean over each region's benchmarks, plus ``neural_mean`` (mean of the
    V1, V2, V4, IT scores a model has)."""
    per = scores.groupby(["model", "region"], as_index=False, sort=False)["score"].mean()
    neural = per[per["region"].isin(NEURAL)].groupby("model", as_index=False)["score"].mean()
    return pd.concat([per, neural.assign(region="neural_mean")], ignore_index=True)


def group_stats(long: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean, SD (ddof=1) and n of ``score`` per ``by`` + region."""
    return long.groupby([*by, "region"], sort=False)["score"].agg(mean="mean", sd="std", n="count").reset_index()


def paper_long() -> pd.DataFrame:
    """Tables C.1/C.2 as ``table, arch, group, output_units, region, value``."""
    return paper_scores().rename(columns={"objective": "group"}).melt(
        id_vars=["table", "arch", "group", "output_units"], value_vars=list(SCORE_COLUMNS),
        var_name="region", value_name="value")


# ---------------------------------------------------------------- results

def score_sections(table: pd.DataFrame, scores: pd.DataFrame, label: str, out: Path,
                   skipped: list[str]) -> list[Section]:
    """Table C.1/C.2, Figure 2, Figure 3 / Table C.3 and Figure C.2 from the scores."""
    long = region_scores(scores).merge(table, left_on="model", right_on="name")
    finals = long[long["kind"] == "final"]
    published = paper_long()
    stats = group_stats(finals, ["arch", "group", "output_units"])
    c12 = stats.merge(published, how="left", on=["arch", "group", "region"], suffixes=("", "_paper"))
    keys = ["arch", "group", "output_units"]
    wide = c12.set_index([*keys, "region"])[["mean", "sd", "value"]].unstack("region")
    suffix = {"mean": "", "sd": "_sd", "value": "_paper"}
    wide.columns = [f"{region}{suffix[kind]}" for kind, region in wide.columns]
    columns = [f"{r}{s}" for r in SCORE_COLUMNS for s in ("", "_sd", "_paper") if f"{r}{s}" in wide.columns]
    counts = finals.groupby(keys, sort=False)["model"].nunique().rename("n")
    c12_table = counts.to_frame().join(wide[columns]).reset_index()  # groups in order of first appearance
    c12_table.insert(0, "table", c12_table["arch"].map({"r50": "C.1", "r18": "C.2"}).fillna("-"))
    sections = [Section(
        "Table C.1 / C.2: Brain-Score by objective",
        f"Mean and SD over each group's models of the region scores ({label}); neural_mean is the mean of "
        "V1, V2, V4 and IT; *_paper columns are the paper's published means (public benchmarks; Table C.1 "
        "ResNet-50, C.2 ResNet-18), blank where the paper has no such model.",
        [], [write_csv(c12_table, out / "table_c1_c2.csv")])]

    paper2 = published[published["arch"].isin(set(finals["arch"]))].rename(columns={"output_units": "x"})
    sections.append(Section(
        "Figure 2: alignment vs number of supervised outputs",
        "Group mean (SD) of each score against the objective's number of output units; open squares: the "
        "paper's values for the same architecture.",
        plots.region_panels(stats.rename(columns={"output_units": "x"}), "x", out / "figure2",
                            "supervised output units", log_x=True, lines=False, paper=paper2),
        [write_csv(stats, out / "figure2.csv")]))

    c3 = group_performance_alignment(long)
    if len(c3):
        paper3 = paper_performance_alignment().melt(id_vars="objective", var_name="region", value_name="r_paper")
        c3 = c3.merge(paper3.rename(columns={"objective": "group"}), how="left", on=["group", "region"])
        points = long.dropna(subset=["performance"]).rename(columns={"score": "mean"})
        sections.append(Section(
            "Figure 3 / Table C.3: task performance vs alignment",
            "Pearson r, per group, of negative test loss and each score across the group's models and their "
            "training snapshots; r_paper is Table C.3 (ResNet-50).",
            plots.region_panels(points, "performance", out / "figure3", "task performance (-test loss)",
                                lines=False),
            [write_csv(c3, out / "table_c3.csv")]))
    else:
        skipped.append("Figure 3 / Table C.3: no group has 3 or more models or snapshots with both a test loss "
                       "and scores")

    sized = finals.dropna(subset=["train_images"])
    sized = sized[sized.groupby("group")["train_images"].transform("nunique") > 1]
    if len(sized):
        c2 = group_stats(sized, ["group", "train_images"])
        sections.append(Section(
            "Figure C.2: alignment vs training-set size",
            "Group mean (SD) of each score against the number of training images (groups trained on 2 or "
            "more dataset sizes).",
            plots.region_panels(c2, "train_images", out / "figure_c2", "training images", log_x=True),
            [write_csv(c2, out / "figure_c2.csv")]))
    else:
        skipped.append("Figure C.2: no group has models trained on two or more dataset sizes (known from the "
                       "datasets given with --data)")
    return sections


def group_performance_alignment(long: pd.DataFrame) -> pd.DataFrame:
    """``group, region, r, p, n``: Pearson r of performance and score over each group's models and
    snapshots (groups with at least 3 such points)."""
    rows = []
    for (group, region), sub in long.dropna(subset=["performance", "score"]).groupby(["group", "region"],
                                                                                      sort=False):
        if len(sub) >= 3 and sub["performance"].nunique() > 1 and sub["score"].nunique() > 1:
            r, p = pearsonr(sub["performance"], sub["score"])
            rows.append({"group": group, "region": region, "r": float(r), "p": float(p), "n": len(sub)})
    return pd.DataFrame(rows, columns=["group", "region", "r", "p", "n"])


def nontarget(decoding: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a decoding table whose target the model was not trained on (pixels kept), with group and variability."""
    info = table.set_index("name")
    latent = decoding["target"].str.removeprefix("sin_").str.removeprefix("cos_")
    trained = [m != PIXELS and lat in objective_latents(info.at[m, "objective"])
               for m, lat in zip(decoding["model"], latent)]
    kept = decoding[~np.array(trained, dtype=bool)].copy()
    kept["group"] = kept["model"].map(info["group"]).fillna(PIXELS)
    kept["variability"] = kept["model"].map(info["variability"]).fillna("-")
    return kept


def u_tests(decoding: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Mann-Whitney U of non-target decoding, full vs each reduced variability, per objective, layer and target."""
    finals = table[table["kind"] == "final"]
    frames = []
    for objective, sub in finals.groupby("objective", sort=False):
        full = sub.loc[sub["variability"] == FULL, "name"].tolist()
        for variability in sorted(set(sub["variability"]) - {FULL, "unknown"}):
            reduced = sub.loc[sub["variability"] == variability, "name"].tolist()
            if full and reduced:
                test = compare_groups(decoding, full, reduced).rename(columns={"mean_a": "mean_full",
                                                                              "mean_b": "mean_reduced"})
                frames.append(test.assign(objective=objective, reduced=variability, n_full=len(full),
                                          n_reduced=len(reduced)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def decoding_section(decoding: pd.DataFrame, table: pd.DataFrame, out: Path, skipped: list[str]) -> Section:
    """Figure 5 / E.1 from the paper-protocol decoding table (written whole as ``decoding_paper.csv``)."""
    tables = [write_csv(decoding, out / "decoding_paper.csv")]
    decoding = nontarget(decoding, table)
    labels = dict(zip(table["name"], table["group"]))
    tables.append(write_csv(decoding, out / "figure5_nontarget.csv"))
    tests = u_tests(decoding[decoding["model"] != PIXELS], table)
    if len(tests):
        tables.append(write_csv(tests, out / "figure5_u_test.csv"))
    else:
        skipped.append("Figure 5 / E.1 U test: no objective has models trained with both full and reduced "
                       "variability (known from the datasets given with --data)")
    return Section(
        "Figure 5 / E.1: non-target latents, full vs reduced variability",
        f"{DECODING_TEXT} Shown: the latents each model was not trained on, group mean (SD band) per layer; "
        "dashed: the pixels. The U test compares, per objective, the models trained with full variability "
        "against those trained with reduced variability (two-sided Mann-Whitney U across seeds); "
        "decoding_paper.csv has every target.",
        plots.decoding_group_curves(decoding, labels, out / "figure5", PIXELS), tables)


def reproduce(models: Sequence[str], data: Sequence[str | Path], out: str | Path, *,
              benchmarks: Sequence[str] | None = None, brainscore_results: Sequence[str | Path] = (),
              groups: Mapping[str, str] | None = None, n_images: int = PAPER_N_IMAGES, split: str = "test",
              layers: Mapping[str, str] | None = None, benchmark_images: int | None = None,
              batch_size: int = 64, device: str | None = None, n_jobs: int | None = None, progress: bool = True,
              preface: Sequence[Section] = (), title: str = "latentzoo reproduce: Xie et al. (ICLR 2025)") -> Path:
    """Compute every paper result ``models`` x ``data`` allow and write ``out/index.html`` (returned), with the
    ``preface`` sections first. ``layers`` (region -> layer) goes to models without a layer map instead of
    layer selection; ``benchmark_images`` caps the stimuli of the ``local:``/``latentzoo.*`` benchmarks scored;
    ``n_jobs`` models are decoded at a time (joblib's meaning: None is 1, -1 every core)."""
    if not data:
        raise UserError("reproduce needs at least one dataset (--data); the first is the evaluation set")
    out = Path(out)
    models = [str(m) for m in models]
    datasets = dataset_info(data)
    named = name_models(models)
    table = model_table(models, named, datasets, groups or {})
    sections = [Section("Models", "Every model and snapshot analysed, with the group it counts in; "
                        "train_images and variability come from the matching --data dataset.", [],
                        [write_csv(table.drop(columns="path"), out / "models.csv")])]
    skipped: list[str] = []
    names, label = resolve_benchmarks(benchmarks)
    if benchmark_images:
        label += f" (scored on at most {benchmark_images} stimuli each)"
    scores = collect_scores(table, names, brainscore_results, out, batch_size, layers, benchmark_images)
    if len(scores):
        sections += score_sections(table, scores, label, out, skipped)
    else:
        skipped.append("Tables C.1-C.3, Figures 2, 3 and C.2: no Brain-Score results (give --brainscore-results "
                       "or benchmarks to score with)")
    stimuli = Stimuli.from_dataset(data[0], split=split, n=n_images)
    if len(named) >= 2:
        labels = dict(zip(table["name"], table["group"]))
        acts = paper_activations(named, stimuli, out / "cache", batch_size=batch_size, device=device,
                                 progress=progress)
        similarity = similarity_section(acts, labels, out, len(stimuli))
        sections.append(similarity._replace(title="Figure 4: " + similarity.title))
        decoding = paper_decoding(named, acts, stimuli, _latents_of(data[0], split, stimuli), out / "cache",
                                  batch_size=batch_size, progress=progress, n_jobs=n_jobs)
        sections.append(decoding_section(decoding, table, out, skipped))
    else:
        skipped.append("Figures 4, 5 and E.1: need at least two models")
    if skipped:
        sections.append(Section("Not computed", " | ".join(skipped)))
    return _write_html(out, title, named, data[0], split, len(stimuli),
                       PAPER_CKA_LAYERS, [*preface, *sections])
