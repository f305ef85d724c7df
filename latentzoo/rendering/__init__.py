"""Rendering labelled single-object datasets: samplers, backends, object libraries, writers.

The seams (how the parts plug together):

* :class:`~latentzoo.rendering.sampler.SceneSampler` turns ``(seed, index)`` into a
  :class:`~latentzoo.rendering.sampler.Scene` (labels + drawing parameters), independent of the
  backend.
* A :class:`Backend` draws a scene: ``backend.render(scene) -> Rendered(rgb, mask, latents,
  extras)``. Backends are constructed from a picklable :class:`RenderSettings` (each worker
  process builds its own), registered by name in :data:`BACKENDS` as ``"module:Class"``.
* Object libraries implement :class:`~latentzoo.rendering.library.ObjectLibrary` and are looked up
  by name with :func:`latentzoo.rendering.libraries.get_library`.
* :func:`render_dataset` (in :mod:`~latentzoo.rendering.writer`) shards the index range, runs
  workers, resumes and writes the dataset directory (docs/datasets.md).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from latentzoo.errors import unknown
from latentzoo.rendering.sampler import Scene

#: Backend name -> "module:Class"; the class is built as ``Class(settings: RenderSettings)``.
BACKENDS: dict[str, str] = {
    "embedded": "latentzoo.rendering.embedded:EmbeddedBackend",
    "tdw": "latentzoo.rendering.tdw:TDWBackend",
}


@dataclass(frozen=True)
class RenderSettings:
    """What a backend needs to know once (picklable, sent to every worker process).

    ``options`` holds backend-specific settings as sorted ``(key, value)`` pairs (e.g. a TDW build
    path); use :meth:`option` to read one.
    """

    size: int
    fov_deg: float
    library: str = "procedural"
    backgrounds: str = "procedural"
    msaa: int = 4
    options: tuple[tuple[str, object], ...] = ()

    def option(self, key: str, default: object = None) -> object:
        return dict(self.options).get(key, default)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["options"] = dict(self.options)
        return d


@dataclass
class Rendered:
    """One rendered image: ``rgb`` uint8 (H, W, 3), ``mask`` bool (H, W) of object pixels,
    ``latents`` (docs/latents.md names, physical units) and backend ``extras`` (flat scalars);
    ``jpeg``: the image already encoded by the renderer (the TDW build's own JPEG), which the writer
    stores as is instead of encoding ``rgb``."""

    rgb: np.ndarray
    mask: np.ndarray
    latents: dict
    extras: dict
    jpeg: bytes | None = None


class Backend(Protocol):
    """A renderer: draws scenes one at a time. ``background_count`` is the number of backgrounds
    the sampler may pick from (``Scene.background`` indexes them)."""

    name: str
    settings: RenderSettings
    background_count: int

    def render(self, scene: Scene) -> Rendered:
        """Draw one scene; the returned latents are the ground truth of the pixels."""
        ...

    def close(self) -> None:
        """Release contexts, processes and files."""
        ...


def backend_class(name: str) -> type:
    """The class of backend ``name`` (see :data:`BACKENDS`); unknown names raise UnknownNameError (a UserError)."""
    if name not in BACKENDS:
        raise unknown("backend", name, BACKENDS)
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_backend(name: str, settings: RenderSettings) -> Backend:
    """Build backend ``name`` (see :data:`BACKENDS`)."""
    return backend_class(name)(settings)


def generator_record(name: str, settings: dict) -> dict | None:
    """What backend ``name`` does beyond the shared sampler with ``settings`` (as recorded in the
    render plan), for dataset.json: its class's ``generator(settings)``, or None for a backend that
    draws the sampler's scenes as they are."""
    generator = getattr(backend_class(name), "generator", None)
    return generator(settings) if generator else None


# Imported last: the writer uses the names above.
from latentzoo.rendering.writer import render_dataset  # noqa: E402

__all__ = ["BACKENDS", "Backend", "RenderSettings", "Rendered", "Scene", "make_backend", "render_dataset"]
