"""The ``tdw`` backend: the authors' generator (YudiXie/tdw_image_dataset) on a ThreeDWorld build.

Build: the ``TDW_BUILD_PATH`` environment variable (``latentzoo render --tdw-build PATH`` sets
it), else the tdw package's default download location (``~/tdw_build/TDW/TDW.x86_64``). Each
backend instance (one per writer worker) launches its own build on a free port, so
``--workers N`` runs N builds side by side. With ``TDW_PORT`` set (``--tdw-port``) it instead
waits for a build the user started on that port (e.g. on another machine:
``./TDW.x86_64 -port=1071 -address=<this host>``). Both live in the environment, not in the
render settings, so they never become part of a dataset's recorded plan.

What each image shows follows the authors' generator, not the shared sampler's camera-frame
draw: the sampler only chooses the model (balanced over categories, then models) and, through
its category cycle, the scene and skybox (:func:`scene_of`); the camera and object are placed by
:func:`~latentzoo.rendering.tdw.placement.sample_configuration` and the build, and the latents are
what the authors computed from the build's report (:mod:`~latentzoo.rendering.tdw.frames`).

Per image (:meth:`TDWBackend.render`): load the scene when the scene block changes, swap the
model, draw attempts at 32x32 until the build reports one that passes the authors' occlusion test
(:attr:`~latentzoo.rendering.tdw.output.Sample.accepted`), then capture it at the full size.
"""

from __future__ import annotations

import ctypes
import math
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
from latentzoo.rendering.tdw import commands, output, placement
from latentzoo.rendering.tdw.frames import camera_frame_latents
from latentzoo.rendering.tdw.library import EXCLUDED_MODELS, TDWLibrary
from latentzoo.rendering.tdw.output import read_capture, read_regions, read_sample, read_segmentation_color
from latentzoo.rendering.tdw.placement import attempt_rng, camera_boxes, sample_configuration

BUILD_ENV = "TDW_BUILD_PATH"
PORT_ENV = "TDW_PORT"
SCENE_BLOCK_IMAGES = 500         # a scene block holds at least this many images (whole category cycles)
MAX_ATTEMPTS = 1000              # sampling attempts per image before the render stops
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


def scene_of(scene: Scene) -> tuple[str, int]:
    """``(TDW scene, cycle within that scene)`` of an image.

    A scene block is ``ceil(500 / C)`` consecutive category cycles of its balanced block (``C``
    images each, one per category), so every block holds each category equally often, and the
    models of a category within 2 images of each other (a block may straddle two of the sampler's
    model cycles); blocks go through :data:`~.commands.SCENES` in turn, so the scenes get equal
    shares of a split (+-1 block). The second value counts the scene's cycles over all its blocks:
    the skybox cycle advances with it (:meth:`TDWBackend.skybox`).
    """
    per_block = max(1, math.ceil(SCENE_BLOCK_IMAGES / scene.cycle_length))
    block, offset = divmod(scene.cycle, per_block)
    rounds, k = divmod(block, len(commands.SCENES))
    return commands.SCENES[k], rounds * per_block + offset


class TDWBackend:
    """Renders :class:`~latentzoo.rendering.sampler.Scene` s with a TDW build (module docstring)."""

    name = "tdw"
    background_count = 1  # the skybox follows the scene's cycle, not the sampler's background draw

    def __init__(self, settings: RenderSettings):
        self.settings = settings
        library = get_library(settings.library)
        if not isinstance(library, TDWLibrary):
            raise UserError(f"the tdw backend draws TDW models; use --library tdw117, not {settings.library!r}")
        self.library = library
        self.skyboxes = commands.skybox_cycle()
        port = os.environ.get(PORT_ENV)
        self._process = None
        if not port:
            build = find_build()
            port = free_port()
            self._process = launch_build(build, port)
        self.controller = connect(int(port))
        self._scene = self._identity = self._skybox = None
        self._boxes: list = []
        self._color = np.zeros(3, dtype=np.uint8)

    @staticmethod
    def generator(settings: dict) -> dict:
        """The generator's settings for render ``settings`` (:meth:`RenderSettings.to_dict`), recorded
        in dataset.json: the authors' camera-first draw, not the shared sampler's camera-frame one
        (which only chooses the model here), and the commands that set the build up."""
        return {
            "source": "YudiXie/tdw_image_dataset image_dataset.py (Xie et al., ICLR 2025)",
            "latents": "x, y, z: the sampled object centre in the camera's frame; rot_x, rot_y, rot_z: TDW's "
                       "quaternion_to_euler_angles of inverse(q_camera) * q_object as the build reports them "
                       "(ImageSensors, Transforms); the camera is placed first, the sampler's x, y, z and pose "
                       "are not used",
            "scenes": list(commands.SCENES),
            "scene_block": f"ceil({SCENE_BLOCK_IMAGES} / categories) category cycles per block, scenes in turn",
            "region_offset_m": placement.REGION_OFFSET, "camera_min_y_m": placement.CAMERA_MIN_Y,
            "scene_overrides": placement.SCENE_OVERRIDES,
            "distance_m": list(placement.DISTANCE_RANGE), "min_direction_y": placement.MIN_DIRECTION_Y,
            "max_resamples": placement.MAX_RESAMPLES,
            "object_jitter_deg": placement.OBJECT_JITTER_DEG,
            "camera_jitter_deg": placement.CAMERA_JITTER_DEG, "camera_jitter_centered_deg": 0.0,
            "accept": {"occluded_fraction_below": output.MAX_OCCLUDED_FRACTION,
                       "occluded_value_above": output.MIN_OCCLUDED_VALUE, "test_size": commands.SAMPLING_SIZE},
            "max_attempts": MAX_ATTEMPTS,
            "scale": "unit size (TDWUtils.get_unit_scale)",
            "excluded_models": list(EXCLUDED_MODELS),
            "skybox_cycle": commands.skybox_cycle(), "skybox_switch": "next entry every category cycle of a scene",
            "scene_setup": commands.scene_commands(commands.SCENES[0], settings["fov_deg"])[1:],
            "sampling_mode": commands.sampling_commands(),
            "capture_mode": commands.capture_mode_commands(settings["size"]),
        }

    def skybox(self, scene_cycle: int) -> str:
        """The skybox of a scene's ``scene_cycle``-th cycle: the authors' 82-entry cycle, one entry
        per cycle (each category's successive images in a scene go through it in order)."""
        return self.skyboxes[scene_cycle % len(self.skyboxes)]

    def _prepare(self, scene_name: str, identity: int) -> None:
        """Load the scene if it changed, then swap the model in, ready to sample."""
        if scene_name != self._scene:
            release = []  # the previous scene's object and asset bundles (model, skybox, scene) go first
            if self._scene is not None:
                release = [{"$type": "destroy_object", "id": commands.OBJECT_ID}, {"$type": "unload_asset_bundles"}]
            resp = self.controller.communicate(release + commands.scene_commands(scene_name, self.settings.fov_deg))
            self._boxes = camera_boxes(read_regions(resp), scene_name)
            self._scene, self._identity, self._skybox = scene_name, None, None
        if identity != self._identity:
            resp = self.controller.communicate(commands.object_commands(self.library.models[identity],
                                                                        previous=self._identity is not None))
            self._color = read_segmentation_color(resp, commands.OBJECT_ID)
            self._identity = identity
        else:
            self.controller.communicate(commands.sampling_commands())

    def render(self, scene: Scene) -> Rendered:
        """Render ``scene``'s model the authors' way; latents from what the build reports."""
        scene_name, scene_cycle = scene_of(scene)
        self._prepare(scene_name, scene.identity)
        centered = scene.x == 0.0 and scene.y == 0.0  # how the sampler's centred variant marks its scenes
        for attempt in range(MAX_ATTEMPTS):
            config = sample_configuration(attempt_rng(scene, attempt), self._boxes, centered)
            sample = read_sample(self.controller.communicate(commands.configuration_commands(config)),
                                 commands.OBJECT_ID, commands.AVATAR_ID)
            if sample.accepted:
                break
        else:
            raise RuntimeError(f"no pose of {self.library.identities[scene.identity]} in {scene_name} passed the "
                               f"occlusion test in {MAX_ATTEMPTS} attempts (image {scene.index})")
        self.controller.communicate(commands.capture_mode_commands(self.settings.size))
        skybox = self.skybox(scene_cycle)
        capture = read_capture(self.controller.communicate(commands.capture_commands(
            config.camera_position, sample.camera_rotation, sample.object_position, sample.object_rotation,
            None if skybox == self._skybox else skybox)))
        self._skybox = skybox
        mask = np.all(capture.id_pass == self._color, axis=-1)
        latents = camera_frame_latents(config.object_center, config.camera_position, sample.camera_rotation,
                                       sample.object_rotation)
        extras = {k: latents.pop(k) for k in ("qx", "qy", "qz", "qw")}
        latents.update(category=scene.category, identity=scene.identity)
        extras.update({"scene": scene_name, "skybox": skybox, "model": self.library.identities[scene.identity],
                       "region": config.region, "attempts": attempt + 1, "resamples": config.resamples,
                       "occlusion": sample.occluded_fraction, "visible_fraction": float(mask.mean()),
                       **_named("camera", config.camera_position, sample.camera_rotation),
                       **_named("object", config.object_center, sample.object_rotation)})
        return Rendered(rgb=capture.rgb, mask=mask, latents=latents, extras=extras, jpeg=capture.jpeg)

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


def _named(prefix: str, position, rotation) -> dict:
    """World position and quaternion as flat ``{prefix}_x ... {prefix}_qw`` columns."""
    return {**{f"{prefix}_{k}": float(v) for k, v in zip("xyz", position)},
            **{f"{prefix}_q{k}": float(v) for k, v in zip("xyzw", rotation)}}
