"""Model snapshots taken during training: ``OUT/snapshots/step-<N>/``, each a complete model folder.

A snapshot is the model folder of the weights after step ``N`` (``model.safetensors``,
``config.json`` with ``steps: N`` and the test metrics, ``README.md``), so it loads, registers and
scores like any other (``latentzoo.weights.from_pretrained(folder)``, a registry ``folder`` entry).
It is written into a temporary sibling folder that is renamed into place when complete, so a
``step-<N>`` folder is never partial; one that exists is never rewritten (a resumed run reaches
step ``N`` with the same weights, so it would write the same files). A run that starts from step 0
(no checkpoint in ``OUT/train/``) removes ``OUT/snapshots/`` first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from latentzoo.hub import read_config

SNAPSHOT_DIR = "snapshots"


def snapshot_folder(out: str | Path, step: int) -> Path:
    """``OUT/snapshots/step-<step>``."""
    return Path(out) / SNAPSHOT_DIR / f"step-{step}"


def write_once(folder: Path, write: Callable[[Path], object]) -> None:
    """Unless ``folder`` exists, ``write(tmp)`` a temporary sibling folder and rename it to ``folder``."""
    if folder.is_dir():
        return
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing it
    write(tmp)
    os.replace(tmp, folder)


def snapshot_metrics(folder: Path) -> dict[str, float]:
    """The test metrics recorded in a snapshot's ``config.json``."""
    return dict(read_config(folder).extra.get("metrics", {}))
