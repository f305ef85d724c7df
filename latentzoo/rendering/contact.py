"""Contact sheets: a grid of a dataset's images with their labels, for looking at a render.

Each cell shows one image (upscaled), a cross at the projection of its (x, y, z) label through the
dataset's camera (it should sit on the object's centre), and below it the category/identity,
position in metres and Euler angles in degrees.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from latentzoo.datasets import RenderedDataset
from latentzoo.errors import UserError
from latentzoo.fileio import atomic_path
from latentzoo.latents import ANGLE_LATENTS, project

LABEL_LINES = 3
LINE_HEIGHT = 12


def _label(row, ds: RenderedDataset) -> list[str]:
    identity = ds.identities[int(row["identity"])]
    deg = [np.degrees(row[n]) for n in ANGLE_LATENTS]
    return [f"{ds.categories[int(row['category'])]} / {identity}",
            f"x{row['x']:+.2f} y{row['y']:+.2f} z{row['z']:.2f}",
            "rot {:+.0f} {:+.0f} {:+.0f} deg".format(*deg)]


def contact_sheet(dataset: str | os.PathLike | RenderedDataset, out: str | os.PathLike, n: int = 32,
                  split: str = "test", columns: int = 8, cell: int = 160) -> Path:
    """Write a PNG contact sheet of the first ``n`` images of ``split`` (falls back to train)."""
    ds = dataset if isinstance(dataset, RenderedDataset) else RenderedDataset(dataset)
    df = ds.latents(split)
    if df.empty:
        df = ds.latents()
    if df.empty:
        raise UserError(f"dataset {ds.root} has no images")
    df = df.head(n)
    images = ds.images(list(df["key"]))
    cam = ds.camera
    rows = -(-len(df) // columns)
    text_h = LABEL_LINES * LINE_HEIGHT + 4
    sheet = Image.new("RGB", (columns * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, ((_, row), image) in enumerate(zip(df.iterrows(), images)):
        x0, y0 = (i % columns) * cell, (i // columns) * (cell + text_h)
        sheet.paste(image.resize((cell, cell), Image.BILINEAR), (x0, y0))
        u, v = project(row["x"], row["y"], row["z"], cam["fov_deg"], cam["width"], cam["height"])
        cu, cv = x0 + u * cell / cam["width"], y0 + v * cell / cam["height"]
        for dx, dy in ((1, 0), (0, 1)):
            draw.line([(cu - 6 * dx, cv - 6 * dy), (cu + 6 * dx, cv + 6 * dy)], fill=(255, 0, 0), width=2)
        for k, line in enumerate(_label(row, ds)):
            while len(line) > 1 and draw.textlength(line, font=font) > cell - 6:  # keep labels inside the cell
                line = line[:-2] + "…"
            draw.text((x0 + 3, y0 + cell + 2 + k * LINE_HEIGHT), line, fill="black", font=font)
    out = Path(out)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
