"""Brain-Score: zoo models as ``ModelCommitment`` s, local benchmarks from files, and scoring.

``commit(id)`` wraps a zoo network in Brain-Score's ``PytorchWrapper`` and commits it with the
registry's region->layer map and ``avgpool`` behavioural readout (always passing the map, so
Brain-Score never runs its S3-backed layer selection). ``register()`` adds every registry id to
``brainscore_vision.model_registry``. ``score(id, benchmarks)`` runs
``brainscore_core.benchmarks.score_benchmark`` on public benchmarks or on ``local:DIR``.

A local benchmark directory (``local:DIR``) is read by :mod:`latentzoo.models.local_benchmark`.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from latentzoo.errors import UserError, unknown

os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
warnings.filterwarnings("ignore", message="xarray subclass .* __slots__", category=FutureWarning)

#: The paper's five public benchmarks (data on Brain-Score's S3).
PUBLIC_BENCHMARKS = ("FreemanZiemba2013public.V1-pls", "FreemanZiemba2013public.V2-pls",
                     "MajajHong2015public.V4-pls", "MajajHong2015public.IT-pls",
                     "Rajalingham2018public-i2n")
VISUAL_DEGREES = 8


def wrap(net, identifier: str, batch_size: int = 64):
    """Brain-Score ``PytorchWrapper`` around a :class:`LatentNet` using the model's own preprocessing.

    Stimulus files are read with :func:`latentzoo.images.load_image` (any mode: gray, RGBA, palette,
    16-bit, CMYK; any size) and preprocessed by ``net.preprocess``, i.e. exactly as ``predict()`` and
    training see images. (Brain-Score's ``load_preprocess_images`` resizes and normalises the same
    way but clips 16-bit images and fails on CMYK.) Brain-Score pads every batch to ``batch_size``
    images; small benchmarks run faster with less.
    """
    from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper

    wrapper = PytorchWrapper(identifier=identifier, model=net.eval(), batch_size=batch_size,
                             preprocessing=functools.partial(preprocess_files, net))
    wrapper.image_size = net.config.input_size
    return wrapper


def preprocess_files(net, paths: Sequence[str]):
    """Brain-Score preprocessing of a zoo model: image files -> ``net.preprocess`` array (N x 3 x S x S)."""
    from latentzoo.images import load_image

    return net.preprocess([load_image(p) for p in paths]).numpy()


def commit(name: str, registry=None, layers: dict[str, str] | None = None, batch_size: int = 64):
    """``ModelCommitment`` for a zoo id (or a model folder with ``layers`` in its config)."""
    from brainscore_vision.model_helpers.brain_transformation import ModelCommitment

    from latentzoo.registry import REGIONS, load_registry
    from latentzoo.weights import from_pretrained

    registry = registry or load_registry()
    net = from_pretrained(name, registry=registry)
    layers = layers or (registry[name].layers if name in registry else net.config.extra.get("layers"))
    if not layers or any(r not in layers for r in REGIONS):
        raise UserError(f"{name} has no V1/V2/V4/IT layer map; add one to the registry "
                        "(`latentzoo layermap`) or to its config's latentzoo.extra.layers")
    identifier = net.config.id or str(name)
    region_map = {r: layers[r] for r in REGIONS}
    behavior = layers.get("behavior", "avgpool")
    activations = wrap(net, cache_identifier(net, identifier), batch_size)
    return ModelCommitment(identifier=identifier, activations_model=activations,
                           layers=list(dict.fromkeys([*region_map.values(), behavior])),
                           behavioral_readout_layer=behavior, region_layer_map=region_map,
                           visual_degrees=VISUAL_DEGREES)


def cache_identifier(net, identifier: str) -> str:
    """``identifier`` plus a digest of the weights: Brain-Score caches activations on disk (result_caching)
    under the activations model's identifier, so a retrained folder must never reuse an older run's."""
    from latentzoo.analysis.activations import weights_hash

    return f"{identifier}-w{weights_hash(net)[:12]}"


def register(registry=None) -> list[str]:
    """Add every registry id to ``brainscore_vision.model_registry`` (lazily built); returns the ids."""
    from brainscore_vision import model_registry

    from latentzoo.registry import load_registry

    registry = registry or load_registry()
    for model_id in registry.ids:
        model_registry[model_id] = functools.partial(commit, model_id)
    return registry.ids


# ---------------------------------------------------------------- benchmarks

def load_benchmark(name: str):
    """A Brain-Score benchmark: ``local:DIR`` (see :mod:`latentzoo.models.local_benchmark`) or a registered identifier."""
    if name.startswith("local:"):
        from latentzoo.models.local_benchmark import local_benchmark

        return local_benchmark(name.removeprefix("local:"))
    if name.startswith("latentzoo."):
        from latentzoo.spatial import benchmark_factories

        factories = benchmark_factories()
        if name not in factories:
            raise unknown("benchmark", name, factories)
        return factories[name]()
    import brainscore_vision

    try:
        return brainscore_vision.load_benchmark(name)
    except Exception as e:  # data on S3 (botocore/urllib errors), unknown plugin (ValueError/KeyError)
        if "No registrations found" in str(e) or isinstance(e, (KeyError, ImportError)):
            raise unknown("benchmark", name, benchmark_ids(), "local:DIR builds one from files") from None
        detail = (str(e).strip().splitlines() or [""])[0]  # whole: it often ends with the URL
        raise UserError(f"benchmark {name}: its data could not be downloaded from Brain-Score's S3 "
                        f"({type(e).__name__}: {detail}); run where the network exists, or use local:DIR") from None


def resolve_model(name: str, registry=None, batch_size: int = 64):
    """A zoo id or model folder via :func:`commit`; any other id through Brain-Score's own ``load_model``."""
    from latentzoo.registry import load_registry

    registry = registry or load_registry()
    if name in registry or Path(name).is_dir() or "/" in name:
        return commit(name, registry=registry, batch_size=batch_size)
    import brainscore_vision

    try:
        return brainscore_vision.load_model(name)
    except AssertionError:  # brainscore's plugin search: "No registrations found for ..."
        raise unknown("model", name, [*registry.ids, *plugin_ids("models")],
                      "neither a zoo id (`brainscore list`) nor a Brain-Score plugin") from None


def is_zoo_model(name: str, registry) -> bool:
    """True for a registry id, a model folder or a Hub repo (``org/name``): models :func:`commit` builds."""
    return name in registry or Path(name).is_dir() or "/" in name


def benchmark_ids() -> list[str]:
    """Every benchmark id :func:`load_benchmark` knows besides ``local:DIR``: Brain-Score's plugins and
    latentzoo's spatial-latent ``latentzoo.*`` benchmarks."""
    from latentzoo.spatial import benchmark_factories

    return [*plugin_ids("benchmarks"), *benchmark_factories()]


def plugin_ids(kind: str) -> list[str]:
    """Identifiers Brain-Score's plugin folders register (``kind``: ``models`` or ``benchmarks``), read
    from their ``__init__.py`` files the way ``brainscore_vision.load_*`` finds them."""
    import re

    import brainscore_vision

    pattern = re.compile(rf"""{kind[:-1]}_registry\[['"]([^'"]+)['"]\]""")
    root = Path(brainscore_vision.__file__).parent / kind
    ids = {m for init in root.glob("*/__init__.py") for m in pattern.findall(init.read_text(errors="replace"))}
    return sorted(i for i in ids if "<" not in i)  # skip templates such as '<identifier>'


def score(name: str, benchmarks: Sequence[Any] = PUBLIC_BENCHMARKS, registry=None, batch_size: int = 64):
    """Score a model on benchmarks (ids or benchmark objects): a DataFrame (model, benchmark, region,
    score, raw, ceiling)."""
    import pandas as pd
    from brainscore_core.benchmarks import score_benchmark

    model = resolve_model(name, registry=registry, batch_size=batch_size)
    rows = []
    for b in benchmarks:
        benchmark = load_benchmark(b) if isinstance(b, str) else b
        result = score_benchmark(benchmark, model)
        raw, ceiling = result.attrs.get("raw"), result.attrs.get("ceiling")
        rows.append({"model": model.identifier, "benchmark": benchmark.identifier,
                     "region": getattr(benchmark, "region", "behavior"), "score": float(result.values),
                     "raw": float(raw.values) if raw is not None else float("nan"),
                     "ceiling": float(ceiling.values) if ceiling is not None else float("nan")})
    return pd.DataFrame(rows)


def neural_mean(table) -> float:
    """Mean score over the neural (V1/V2/V4/IT) benchmarks of a :func:`score` table."""
    neural = table[table["region"].isin(["V1", "V2", "V4", "IT"])]
    return float(neural["score"].mean()) if len(neural) else float("nan")


def write_scores(table, out: str | os.PathLike) -> list[Path]:
    """Write a :func:`score` table as ``scores.csv`` and ``scores.json`` (with the neural mean) into ``out``."""
    from latentzoo.fileio import atomic_path, write_json_atomic

    out = Path(out)
    with atomic_path(out / "scores.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json_atomic(out / "scores.json", {"neural_mean": neural_mean(table),
                                            "scores": table.to_dict(orient="records")})
    return [out / "scores.csv", out / "scores.json"]


def choose_layers(name: str, benchmarks: Sequence[str], layers: Sequence[str] | None = None,
                  registry=None, batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Brain-Score's layer scoring per benchmark region: {region: {layer: score}}, best layer first.

    Uses ``LayerScores`` (what Brain-Score's ``LayerSelection`` runs) on the raw activations, without
    its ImageNet-PCA step, whose images live on S3.
    """
    from brainscore_vision.model_helpers.brain_transformation.neural import LayerScores

    from latentzoo.weights import from_pretrained

    net = from_pretrained(name, registry=registry)
    identifier = net.config.id or str(name)
    candidates = list(layers or net.layers)
    unknown = sorted(set(candidates) - {n for n, _ in net.named_modules()})
    if unknown:
        raise UserError(f"{name} has no layer(s) {', '.join(unknown)}")
    scoring = LayerScores(model_identifier=identifier, activations_model=wrap(net, identifier, batch_size),
                          visual_degrees=VISUAL_DEGREES)
    chosen = {}
    for b in benchmarks:
        benchmark = load_benchmark(b)
        region = getattr(benchmark, "region", None)
        if region not in ("V1", "V2", "V4", "IT"):
            raise UserError(f"benchmark {b} is not a neural V1/V2/V4/IT benchmark")
        scores = scoring(benchmark=benchmark, layers=candidates, prerun=True)
        ranked = sorted(((str(layer), float(scores.sel(layer=layer))) for layer in scores["layer"].values),
                        key=lambda item: -item[1])
        chosen[region] = dict(ranked)
    return chosen
