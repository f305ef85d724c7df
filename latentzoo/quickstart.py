"""``latentzoo quickstart``: the main job on embedded defaults (no network, no GPU needed).

v1 renders a small labelled dataset with the embedded renderer and writes a contact sheet PNG of
its test split; rerunning resumes (finished shards are kept).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from latentzoo.rendering import render_dataset
from latentzoo.rendering.contact import contact_sheet


@dataclass(frozen=True)
class QuickstartResult:
    """Where the quickstart wrote its outputs."""

    dataset: Path
    contact_sheet: Path


def run_quickstart(out: str | os.PathLike = "quickstart", images: int = 2000, size: int = 64,
                   seed: int = 0, workers: int = 1, progress: bool = True) -> QuickstartResult:
    """Render ``images`` images of ``size`` px into ``out/dataset`` and a contact sheet into ``out``."""
    out = Path(out)
    ds = render_dataset(out / "dataset", images=images, size=size, seed=seed, workers=workers,
                        shard_size=500, progress=progress)
    sheet = contact_sheet(ds, out / "contact_sheet.png", n=48)
    return QuickstartResult(ds.root, sheet)
