"""Stimulus images of any mode and size -> RGB: the one loader behind every model input path.

``LatentNet.preprocess``/``predict``, the training decoder, the Brain-Score wrapper of zoo models
(:func:`latentzoo.models.brainscore.wrap`) and the analysis loaders
(:class:`latentzoo.analysis.activations.Stimuli`) all go through :func:`to_rgb` (and
:func:`load_image` for files), so a stimulus gives the same tensor everywhere. Conventions:

* gray (``1``, ``L``, ``I``, ``F``): three equal channels equal to the gray value;
* 16-bit (``I;16``, ``I;16B``, ``I;16L``, and ``I``/``F`` holding values above 255): divided by 257
  (65535 -> 255) and rounded, instead of PIL's clipping at 255;
* alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency): composited on **white**;
* palette (``P``): expanded; ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: PIL's conversion to RGB;
* any size: resizing to the model's input is the model's preprocessing (8 x 8 and 4000 x 3000 alike).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from latentzoo.errors import UserError

#: File suffixes a stimulus folder may hold; any other file is refused by name.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_WIDE = ("I;16", "I;16B", "I;16L", "I", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB with the conventions of the module docstring."""
    if image.mode in _WIDE:
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.rint(np.clip(arr / top * 255, 0, 255)).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """The image file at ``path`` as RGB (:func:`to_rgb`); UserError naming the file when unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder`` (recursive, sorted); UserError naming the first one that is not an
    image (by suffix, hidden files such as ``.DS_Store`` included, or by an unreadable header)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"stimulus folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise UserError(f"{bad[0]} is not an image ({len(bad)} non-image file(s) in {folder}; "
                        f"allowed: {', '.join(IMAGE_SUFFIXES)})")
    if not files:
        raise UserError(f"no images in {folder}")
    for path in files:
        try:
            with Image.open(path):
                pass  # reads the header only
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"{path} is not an image ({e})") from None
    return files
