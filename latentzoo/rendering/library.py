"""Object libraries: the one interface every source of 3D objects implements.

A library is an ordered list of identities (object models), each belonging to one category.
Meshes are returned in their canonical pose (+y up, front facing +z), centred on the bounding-box
centre and scaled so the longest bounding-box side is 1; the renderer scales them to the dataset's
object size, so every object's longest axis is equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh ready to draw: float32 positions/normals (V, 3), int32 faces (F, 3),
    optional uvs (V, 2) with an RGB uint8 texture (H, W, 3), and per-vertex colours (V, 3) in [0, 1]
    used when there is no texture."""

    positions: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    uvs: np.ndarray | None = None
    texture: np.ndarray | None = None


class ObjectLibrary(Protocol):
    """What the sampler and the renderers need from a library."""

    name: str
    categories: Sequence[str]          # ordered category names
    identities: Sequence[str]          # ordered identity (object model) names
    identity_category: Sequence[int]   # category index of each identity
    attribution: str                   # licence / credit line written into dataset.json

    def mesh(self, identity: int) -> Mesh:
        """Canonical-pose, unit-longest-axis mesh of identity ``identity``."""
        ...
