"""ThreeDWorld backend: TDW-117 datasets rendered by a TDW build with the authors' generator.

Modules: :mod:`~.library` (TDW-117/TDW-N from the pinned list and TDW's model librarian),
:mod:`~.placement` (the authors' camera and object sampling), :mod:`~.commands` (the TDW command
stream), :mod:`~.output` (reading the build's output data and the occlusion test), :mod:`~.frames`
(what the build reports -> camera-frame latents) and :mod:`~.backend` (launching builds, scene
blocks, skyboxes, rendering).
"""

from __future__ import annotations


def __getattr__(name: str):
    # Lazy, so that `get_library("tdw117")` does not start importing zmq and the build machinery.
    if name == "TDWBackend":
        from latentzoo.rendering.tdw.backend import TDWBackend

        return TDWBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
