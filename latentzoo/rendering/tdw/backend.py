"""The ``tdw`` backend: renders scenes with a ThreeDWorld (Unity) build driven by the ``tdw`` package.

Build: the ``TDW_BUILD_PATH`` environment variable (``latentzoo render --tdw-build PATH`` sets
it), else the tdw package's default download location (``~/tdw_build/TDW/TDW.x86_64``). Each
backend instance (one per writer worker) launches its own build on a free port, so
``--workers N`` runs N builds side by side. With ``TDW_PORT`` set (``--tdw-port``) it instead
waits for a build the user started on that port (e.g. on another machine:
``./TDW.x86_64 -port=1071 -address=<this host>``). Both live in the environment, not in the
render settings, so they never become part of a dataset's recorded plan.

Per image (:meth:`TDWBackend.render`): switch environment every :data:`ENVIRONMENT_BLOCK` indices,
swap the model if the identity changed, draw a placement
(:func:`~latentzoo.rendering.tdw.placement.place`), render, and reject it (drawing the next
attempt) while the object is more than :data:`MAX_OCCLUSION` hidden or covers less than
:data:`MIN_VISIBLE_FRACTION` of the image; after :data:`MAX_ATTEMPTS` the last one is kept (its
``attempts``, ``occlusion`` and ``visible_fraction`` are in the image's extras). The
latents are computed from the build's own output (Transforms, Bounds, CameraMatrices) by
:func:`~latentzoo.rendering.tdw.frames.camera_frame_latents`, the mask from the ``_id`` pass.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from latentzoo.errors import UserError
from latentzoo.rendering import Rendered, RenderSettings
from latentzoo.rendering.libraries import get_library
from latentzoo.rendering.sampler import Scene
from latentzoo.rendering.tdw import commands
from latentzoo.rendering.tdw.frames import camera_frame_latents
from latentzoo.rendering.tdw.library import TDWLibrary
from latentzoo.rendering.tdw.output import read_frame, read_regions, read_segmentation_color
from latentzoo.rendering.tdw.placement import place

BUILD_ENV = "TDW_BUILD_PATH"
PORT_ENV = "TDW_PORT"
ENVIRONMENT_BLOCK = 500          # consecutive image indices rendered in one environment
MAX_OCCLUSION = 0.25             # the paper rejects poses with the object >20-30 % occluded
MIN_VISIBLE_FRACTION = 0.002     # ... or too small: fewer visible pixels than this share of the image
MAX_ATTEMPTS = 50
PR_SET_PDEATHSIG = 1             # prctl option (linux/prctl.h)


def build_release() -> tuple[str, str]:
    """``(version, download URL)`` of the Linux build that matches the installed ``tdw`` package
    (the release ``tdw`` itself would download: the package version without its last part)."""
    from tdw.version import __version__

    version = ".".join(__version__.split(".")[:3])
    return version, f"https://github.com/threedworld-mit/tdw/releases/download/v{version}/TDW_Linux.tar.gz"


def default_build_path() -> Path:
    """Where ``tdw`` downloads its build (``~/tdw_build/TDW/TDW.x86_64`` on Linux)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from tdw.backend.paths import BUILD_PATH
    return Path(BUILD_PATH)


def find_build() -> Path:
    """The TDW build executable to launch: ``$TDW_BUILD_PATH``, else tdw's default download location.

    Raises UserError in one line naming what is missing, how to get it, and the embedded fallback.
    """
    given = os.environ.get(BUILD_ENV)
    version, url = build_release()
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise UserError(f"TDW build {path} does not exist (--tdw-build / {BUILD_ENV}); "
                            f"point it at the TDW.x86_64 executable of an unpacked TDW v{version} build, "
                            f"or render with `--backend embedded`, which works everywhere")
        return path
    path = default_build_path()
    if path.is_file():
        return path
    raise UserError(f"no ThreeDWorld build found: pass --tdw-build PATH or set {BUILD_ENV} to the TDW.x86_64 "
                    f"of a TDW v{version} Linux build (unpack {url}; it needs a GPU and an X display), "
                    f"or render with `--backend embedded`, which works everywhere")


def free_port() -> int:
    """A TCP port that is free right now (each worker's build gets its own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the build's process before exec: Linux sends it SIGTERM when its parent exits, so a
    writer worker that is terminated (the pool ends) or crashes never leaves a build behind."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def launch_build(build: Path, port: int) -> subprocess.Popen:
    """Start ``build`` connecting to a controller on ``port`` (TDW's ``-port=N`` argument); the
    build ends with the process that launched it."""
    return subprocess.Popen([str(build), f"-port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


def connect(port: int):
    """A ``tdw`` Controller on ``port`` (blocks until the build connects; no version check, no download)."""
    import zmq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from tdw.controller import Controller
    try:
        return Controller(port=port, check_version=False, launch_build=False)
    except zmq.error.ZMQError as e:
        raise UserError(f"cannot listen for a TDW build on port {port} ({e}); "
                        f"another controller holds it (with --tdw-port, render with --workers 1)") from e


def environment_for(index: int) -> str:
    """The TDW environment of image ``index``: blocks of :data:`ENVIRONMENT_BLOCK` cycle through
    :data:`~latentzoo.rendering.tdw.commands.ENVIRONMENTS` (a scene load takes seconds)."""
    return commands.ENVIRONMENTS[(int(index) // ENVIRONMENT_BLOCK) % len(commands.ENVIRONMENTS)]


class TDWBackend:
    """Renders :class:`~latentzoo.rendering.sampler.Scene` s with a TDW build (module docstring)."""

    name = "tdw"

    def __init__(self, settings: RenderSettings):
        self.settings = settings
        library = get_library(settings.library)
        if not isinstance(library, TDWLibrary):
            raise UserError(f"the tdw backend draws TDW models; use --library tdw117, not {settings.library!r}")
        self.library = library
        self.skyboxes = commands.skybox_names()
        self.background_count = len(self.skyboxes)
        port = os.environ.get(PORT_ENV)
        self._process = None
        if not port:
            build = find_build()
            port = free_port()
            self._process = launch_build(build, port)
        self.controller = connect(int(port))
        self._environment = self._identity = self._skybox = None
        self._regions: list = []
        self._color = np.zeros(3, dtype=np.uint8)
        self._scale = 1.0

    def _prepare(self, scene: Scene) -> None:
        """Load the scene's environment and model if they differ from the current ones."""
        environment = environment_for(scene.index)
        if environment != self._environment:
            setup = commands.environment_commands(environment, self.settings.size, self.settings.fov_deg)
            self._regions = read_regions(self.controller.communicate(setup))
            self._environment, self._identity, self._skybox = environment, None, None
        if scene.identity != self._identity:
            resp = self.controller.communicate(commands.object_commands(self.library.models[scene.identity],
                                                                        previous=self._identity is not None))
            self._color = read_segmentation_color(resp, commands.OBJECT_ID)
            self._identity, self._scale = scene.identity, 1.0

    def render(self, scene: Scene) -> Rendered:
        """Render ``scene``; latents come from the build's output data, not from the placement."""
        self._prepare(scene)
        model = self.library.models[scene.identity]
        skybox = self.skyboxes[scene.background % len(self.skyboxes)]
        for attempt in range(MAX_ATTEMPTS):
            placement = place(scene, model, self._regions, attempt)
            resp = self.controller.communicate(commands.image_commands(
                placement, placement.object_scale / self._scale, None if skybox == self._skybox else skybox))
            self._skybox, self._scale = skybox, placement.object_scale
            frame = read_frame(resp, commands.OBJECT_ID)
            mask = np.all(frame.id_pass == self._color, axis=-1)
            if frame.occlusion <= MAX_OCCLUSION and mask.mean() >= MIN_VISIBLE_FRACTION:
                break
        latents = camera_frame_latents(frame.object_center, frame.object_rotation, model.canonical_rotation,
                                       frame.camera_matrix)
        latents.update(category=scene.category, identity=scene.identity)
        extras = {"scale": scene.scale, "background": scene.background, "scene": self._environment,
                  "skybox": skybox, "model": model.name, "attempts": attempt + 1,
                  "occlusion": frame.occlusion, "visible_fraction": float(mask.mean())}
        return Rendered(rgb=frame.rgb, mask=mask, latents=latents, extras=extras)

    def close(self) -> None:
        """Terminate the build (if this backend launched it)."""
        try:
            self.controller.communicate({"$type": "terminate"})
        finally:
            self.controller.socket.close(linger=0)
            if self._process is not None:
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._process.kill()
