"""Brain-Score: zoo models as ``ModelCommitment`` s, local benchmarks from files, and scoring.

``commit(id)`` wraps a zoo network in Brain-Score's ``PytorchWrapper`` and commits it with the
registry's region->layer map (always passed, so Brain-Score never runs its S3-backed layer
selection) under one of two protocols (docs/scoring.md): ``leaderboard``, the authors' published
plugins exactly (Brain-Score's own image loading, their layer list, behaviour read at ``fc``), and
``paper`` (latentzoo's image loader, behaviour read at ``avgpool``). ``register()`` adds every registry id to
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
#: The authors' plugins' layer list (their ``get_layers``); Brain-Score reads behaviour at the last one.
LEADERBOARD_LAYERS = ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")


def wrap(net, identifier: str, batch_size: int = 64, protocol: str = "paper"):
    """Brain-Score ``PytorchWrapper`` around a :class:`LatentNet`, reading stimulus files as ``protocol`` says.

    ``paper``: :func:`latentzoo.images.load_image` (any mode: gray, RGBA and LA composited on white,
    palette, 16-bit, CMYK; any size) and ``net.preprocess``, i.e. exactly as ``predict()`` and
    training see images. ``leaderboard``: Brain-Score's own ``load_preprocess_images`` at the input
    size, as the authors' plugins (:func:`leaderboard_preprocess`). Brain-Score pads every batch to
    ``batch_size`` images (its plugins use 64); small benchmarks run faster with less.
    """
    from brainscore_vision.model_helpers.activations.pytorch import PytorchWrapper

    preprocessing = (functools.partial(leaderboard_preprocess, image_size=net.config.input_size)
                     if check_protocol(protocol) == "leaderboard" else functools.partial(preprocess_files, net))
    wrapper = PytorchWrapper(identifier=identifier, model=net.eval(), batch_size=batch_size,
                             preprocessing=preprocessing)
    wrapper.image_size = net.config.input_size
    return wrapper


def preprocess_files(net, paths: Sequence[str]):
    """Brain-Score preprocessing of a zoo model: image files -> ``net.preprocess`` array (N x 3 x S x S)."""
    from latentzoo.images import load_image

    return net.preprocess([load_image(p) for p in paths]).numpy()


def leaderboard_preprocess(paths: Sequence[str], image_size: int = 224):
    """Brain-Score's ``load_preprocess_images(paths, image_size)``, the authors' plugins' preprocessing
    (RGBA/LA/P pasted onto RGB: alpha and transparency dropped). An image it fails on (16-bit or 1-bit
    gray, CMYK, ...) is one UserError naming the file and its mode, never a different conversion."""
    import numpy as np
    from brainscore_vision.model_helpers.activations.pytorch import load_preprocess_images

    arrays = []
    for path in paths:
        try:
            arrays.append(load_preprocess_images([path], image_size=image_size))
        except (OSError, ValueError, TypeError, RuntimeError) as e:  # torchvision on modes it cannot convert
            detail = (str(e).strip().splitlines() or [""])[0][:120]
            raise UserError(f"{path}: Brain-Score's image loader (protocol leaderboard) cannot read this "
                            f"{_image_mode(path)} image ({type(e).__name__}: {detail}); "
                            "--protocol paper reads any mode") from None
    return np.concatenate(arrays)


def _image_mode(path: str) -> str:
    """PIL mode of an image file ('unreadable' when PIL cannot open it)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, ValueError):
        return "unreadable"


def check_protocol(protocol: str) -> str:
    """``protocol`` when it is a scoring protocol (``leaderboard``, ``paper``), else an unknown-name error."""
    from latentzoo.registry import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise unknown("protocol", protocol, PROTOCOLS)
    return protocol


def default_protocol(name: str, registry=None) -> str:
    """A model's default protocol: its registry entry's (``leaderboard`` for the authors' ``tdw-*`` ids),
    ``paper`` for every other model (folders, Hub repos, locally trained or seeded networks)."""
    from latentzoo.registry import load_registry

    registry = registry or load_registry()
    return registry[name].protocol if name in registry else "paper"


def commit(name: str, registry=None, layers: dict[str, str] | None = None, batch_size: int = 64,
           protocol: str | None = None):
    """``ModelCommitment`` for a zoo id (or a model folder with ``layers`` in its config) under a scoring
    ``protocol`` (default: :func:`default_protocol`)."""
    from brainscore_vision.model_helpers.brain_transformation import ModelCommitment

    from latentzoo.registry import REGIONS, load_registry
    from latentzoo.weights import from_pretrained

    registry = registry or load_registry()
    protocol = check_protocol(protocol or default_protocol(name, registry))
    net = from_pretrained(name, registry=registry)
    layers = layers or (registry[name].layers if name in registry else net.config.extra.get("layers")) or {}
    region_map = {r: layers[r] for r in REGIONS if r in layers}  # regions layermap has not chosen yet stay out
    if not region_map:
        raise UserError(f"{name} has no V1/V2/V4/IT layer map; choose one with `latentzoo layermap {name} "
                        "--benchmarks ...` (or add it to the registry or its config's latentzoo.extra.layers)")
    identifier = net.config.id or str(name)
    if protocol == "leaderboard":  # as the authors' plugins: no readout passed, Brain-Score takes the last layer
        require_layers(net, name, LEADERBOARD_LAYERS, "protocol leaderboard reads the authors' ResNet layers "
                       "conv1, layer1-4, fc; use --protocol paper")
        model_layers, behavior = list(LEADERBOARD_LAYERS), None
    else:
        behavior = layers.get("behavior", "avgpool")
        model_layers = list(dict.fromkeys([*region_map.values(), behavior]))
    activations = wrap(net, cache_identifier(net, identifier, protocol), batch_size, protocol)
    return ModelCommitment(identifier=identifier, activations_model=activations, layers=model_layers,
                           behavioral_readout_layer=behavior, region_layer_map=region_map,
                           visual_degrees=VISUAL_DEGREES)


def require_layers(net, name: str, layers: Sequence[str], hint: str = "") -> None:
    """UserError (ending with ``hint``) when ``net`` lacks any of the modules ``layers``."""
    missing = [layer for layer in layers if layer not in dict(net.named_modules())]
    if missing:
        raise UserError(f"{name} has no layer(s) {', '.join(missing)}" + (f"; {hint}" if hint else ""))


def cache_identifier(net, identifier: str, protocol: str = "paper") -> str:
    """``identifier`` plus a digest of the weights and the protocol: Brain-Score caches activations and
    layer scores on disk (result_caching) under these identifiers, so neither a retrained folder nor
    the other protocol's image loading may reuse an earlier run's."""
    from latentzoo.models.network import weights_hash

    return f"{identifier}-w{weights_hash(net)[:12]}-{protocol}"


def register(registry=None) -> list[str]:
    """Add every registry id to ``brainscore_vision.model_registry`` (lazily built); returns the ids."""
    from brainscore_vision import model_registry

    from latentzoo.registry import load_registry

    registry = registry or load_registry()
    for model_id in registry.ids:
        model_registry[model_id] = functools.partial(commit, model_id)
    return registry.ids


# ---------------------------------------------------------------- benchmarks

def load_benchmark(name: str, images: int | None = None):
    """A Brain-Score benchmark: ``local:DIR`` (see :mod:`latentzoo.models.local_benchmark`) or a registered
    identifier. ``images``: at most this many stimuli (``local:DIR`` and ``latentzoo.*`` benchmarks)."""
    if name.startswith("local:"):
        from latentzoo.models.local_benchmark import local_benchmark

        return local_benchmark(name.removeprefix("local:"), images)
    if name.startswith("latentzoo."):
        from latentzoo.spatial import SpatialLatentBenchmark, benchmark_factories

        factories = benchmark_factories()
        if name not in factories:
            raise unknown("benchmark", name, factories)
        benchmark = factories[name]()
        return SpatialLatentBenchmark(benchmark.task, benchmark.region, n_images=images) if images else benchmark
    if images is not None:
        raise UserError(f"--images works with local:DIR and latentzoo.* benchmarks, not with Brain-Score's {name} "
                        "(its cross-validation is stratified over all of its objects)")
    import brainscore_vision

    try:
        return brainscore_vision.load_benchmark(name)
    except Exception as e:  # data on S3 (botocore/urllib errors), unknown plugin (ValueError/KeyError)
        if "No registrations found" in str(e) or isinstance(e, (KeyError, ImportError)):
            raise unknown("benchmark", name, benchmark_ids(), "local:DIR builds one from files") from None
        detail = (str(e).strip().splitlines() or [""])[0]  # whole: it often ends with the URL
        raise UserError(f"benchmark {name}: its data could not be downloaded from Brain-Score's S3 "
                        f"({type(e).__name__}: {detail}); run where the network exists, or use local:DIR") from None


def resolve_model(name: str, registry=None, batch_size: int = 64, protocol: str | None = None):
    """A zoo id or model folder via :func:`commit` (under ``protocol``); any other id through Brain-Score's
    own ``load_model``, scored as its plugin defines (no ``protocol`` applies)."""
    from latentzoo.registry import load_registry

    registry = registry or load_registry()
    if is_zoo_model(name, registry):
        return commit(name, registry=registry, batch_size=batch_size, protocol=protocol)
    if protocol is not None:
        raise UserError(f"--protocol applies to zoo ids and model folders; {name} is not one (a Brain-Score "
                        "plugin is scored as its plugin defines)")
    import brainscore_vision

    check_model_name(name, registry)
    return brainscore_vision.load_model(name)


def check_model_name(name: str, registry) -> None:
    """Raise the one-line unknown-model error unless ``name`` is a zoo model or a Brain-Score plugin id."""
    if not is_zoo_model(name, registry) and name not in plugin_ids("models"):
        raise unknown("model", name, [*registry.ids, *plugin_ids("models")],
                      "neither a zoo id (`brainscore list`) nor a Brain-Score plugin")


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


def score(name: str, benchmarks: Sequence[Any] = PUBLIC_BENCHMARKS, registry=None, batch_size: int = 64,
          protocol: str | None = None, pls: str = "kernel", images: int | None = None, progress=None):
    """Score a model on benchmarks (ids or benchmark objects) under ``protocol`` (default: the model's,
    :func:`default_protocol`): a DataFrame (model, protocol, benchmark, region, score, raw, ceiling, pls);
    ``protocol`` is ``plugin`` for a Brain-Score plugin model. ``-pls`` benchmarks use ``pls``: ``kernel``
    (exact kernel-form PLS on Gram matrices, :mod:`latentzoo.models.gram_scoring`) or ``brainscore``.
    ``images`` caps each benchmark's stimuli (:func:`load_benchmark`); the model's name is checked, then
    every benchmark is loaded (its files checked), before the model is built and runs; ``progress`` (default: stderr) gets a line per benchmark."""
    import pandas as pd

    from latentzoo.models.gram_scoring import score_pls
    from latentzoo.models.layermap import with_progress
    from latentzoo.registry import load_registry

    registry = registry or load_registry()
    check_model_name(name, registry)  # a mistyped id is its own error, before any benchmark download
    loaded = [load_benchmark(b, images) if isinstance(b, str) else b for b in benchmarks]
    model = resolve_model(name, registry=registry, batch_size=batch_size, protocol=protocol)
    used = (protocol or default_protocol(name, registry)) if is_zoo_model(name, registry) else "plugin"
    if used != "plugin":  # a zoo model's map may lack regions: say so before any benchmark runs
        for given, benchmark in zip(benchmarks, loaded):
            region = getattr(benchmark, "region", None)
            if region in ("V1", "V2", "V4", "IT") and region not in model.layer_model.region_layer_map:
                hint = given if isinstance(given, str) else "..."
                raise UserError(f"{name} has no {region} layer for {benchmark.identifier}; choose one with "
                                f"`latentzoo layermap {name} --benchmarks {hint}`")

    def row(benchmark) -> dict:
        result, method = score_pls(benchmark, model, pls)
        raw, ceiling = result.attrs.get("raw"), result.attrs.get("ceiling")
        return {"model": model.identifier, "protocol": used, "benchmark": benchmark.identifier,
                "region": getattr(benchmark, "region", "behavior"), "score": float(result.values),
                "raw": float(raw.values) if raw is not None else float("nan"),
                "ceiling": float(ceiling.values) if ceiling is not None else float("nan"), "pls": method}

    by_id = {b.identifier: b for b in loaded}
    rows = with_progress("score", list(by_id), lambda b: row(by_id[b]), progress, lambda r: f"{r['score']:.4f}")
    return pd.DataFrame(list(rows.values()))


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
                  registry=None, batch_size: int = 64, protocol: str | None = None,
                  pls: str = "kernel", candidates: str | None = None, images: int | None = None,
                  progress=None) -> dict[str, dict[str, float]]:
    """Brain-Score's layer scoring per benchmark region: {region: {layer: score}}, best layer first.

    Uses ``LayerScores`` (what Brain-Score's ``LayerSelection`` runs) on the raw activations, without
    its ImageNet-PCA step, whose images live on S3. Images are read as ``protocol`` says (default:
    :func:`default_protocol`); default candidates are the authors' plugin layers under
    ``leaderboard``, the model's fine candidate list (``net.layers``) under ``paper``; ``candidates``
    (``fine``, ``leaderboard``) names the list instead, ``layers`` gives it. ``-pls`` benchmarks
    are scored with kernel PLS, one layer at a time, unless ``pls`` is ``brainscore``: then Brain-Score's
    own ``LayerSelection`` procedure runs (``LayerPCA`` + ``LayerScores``,
    :func:`latentzoo.models.layermap.pca_layer_scores`). ``images`` caps each benchmark's stimuli
    (:func:`load_benchmark`); ``progress`` (default: stderr) gets a line per layer with the time left.
    Every benchmark is loaded (and its files checked) before any model runs.
    """
    from latentzoo.models.gram_scoring import check_pls, layer_scores, lean_benchmark
    from latentzoo.models.layermap import candidate_layers, pca_layer_scores, with_progress
    from latentzoo.weights import from_pretrained

    protocol = check_protocol(protocol or default_protocol(name, registry))
    net = from_pretrained(name, registry=registry)
    identifier = cache_identifier(net, net.config.id or str(name), protocol)
    candidates = list(layers or candidate_layers(net, candidates or ("leaderboard" if protocol == "leaderboard"
                                                                     else "fine")))
    require_layers(net, name, candidates)
    activations_model = wrap(net, identifier, batch_size, protocol)
    loaded = {b: load_benchmark(b, images) for b in benchmarks}
    for b, benchmark in loaded.items():
        if getattr(benchmark, "region", None) not in ("V1", "V2", "V4", "IT"):
            raise UserError(f"benchmark {b} is not a neural V1/V2/V4/IT benchmark")
    chosen = {}
    for benchmark in loaded.values():
        if check_pls(pls) == "kernel" and lean_benchmark(benchmark) is not None:
            scores = with_progress(benchmark.identifier, candidates, lambda layer: layer_scores(
                benchmark, activations_model, [layer], identifier, VISUAL_DEGREES)[layer], progress)
        else:
            scores = pca_layer_scores(activations_model, identifier, benchmark, candidates, batch_size, progress)
        region = benchmark.region
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        chosen[region] = dict(ranked)
    return chosen
