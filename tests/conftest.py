"""Shared pytest fixtures: a tiny rendered dataset every area's tests can use."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

# Brain-Score must never pip-install or query EC2 metadata from inside the tests.
os.environ.setdefault("BS_INSTALL_DEPENDENCIES", "no")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# result_caching fixes its folder when Brain-Score is imported (before any fixture runs): a per-session
# folder, so no test reads activations another run cached for stimuli at since-deleted paths.
_BRAINSCORE_HOME = tempfile.mkdtemp(prefix="latentzoo-tests-brainscore-")
for _var in ("RESULTCACHING_HOME", "BRAINSCORE_HOME", "BRAINIO_HOME"):
    os.environ.setdefault(_var, os.path.join(_BRAINSCORE_HOME, _var.lower()))


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's Brain-Score folder and the probe image Brain-Score leaves in the temp dir."""
    shutil.rmtree(_BRAINSCORE_HOME, ignore_errors=True)
    core = sys.modules.get("brainscore_vision.model_helpers.activations.core")
    probe = getattr(core, "_probe_image_path", None)
    if probe:
        shutil.rmtree(os.path.dirname(probe), ignore_errors=True)

#: Categories of :func:`tiny_dataset` (visually distinct procedural families).
TINY_CATEGORIES = ("mug", "chair", "car", "torus", "star", "tree", "bottle", "house")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 320-image, 64 px embedded-renderer dataset (8 categories, 256 train / 64 test images,
    shards of 64) as a :class:`latentzoo.datasets.RenderedDataset`; rendered once per session
    (~2 s). Read-only: copy it before modifying."""
    from latentzoo.rendering import render_dataset

    root = tmp_path_factory.mktemp("tiny_dataset")
    return render_dataset(root / "tiny", images=320, size=64, seed=0, categories=TINY_CATEGORIES,
                          shard_size=64, test_fraction=0.2, progress=False)
