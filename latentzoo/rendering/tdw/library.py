"""TDW-117 and its TDW-N subsets: the object library of the paper's datasets, from TDW's librarian.

The pinned list ``latentzoo/data/tdw117_models.tsv`` (548 models, 117 WordNet ids; columns
``object_label, model_name, category_label, wnid, wcategory, max_extent_m``) fixes *which* models
are in TDW-117: the paper's January-2024 ``models_core.json`` with the authors' filter; today's
tdw 1.13 librarian would give 118 wnids. Everything else comes from the ``tdw`` package's own model
librarian (``models_core.json``, shipped with the package, read offline): asset-bundle URL, scale
factor, canonical rotation and bounds of each model.

Order (stable, written into dataset.json):

* categories: the distinct wnids of the pinned models' librarian records, sorted by wnid (this
  reproduces the authors' ``category_label``); a category is named by the ``wcategory`` of its
  first model (by model name), e.g. ``n02942699 -> "camera"`` (plus the wnid where two wnids share
  a name);
* identities: model names sorted alphabetically (the authors' ``object_label``).

TDW-N (``tdw<N>``, e.g. ``tdw10``) keeps the first N categories of that order and their models.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from importlib import resources

from latentzoo.errors import UserError
from latentzoo.rendering.library import Mesh

MODEL_LIBRARY = "models_core.json"
#: Models the authors' generator leaves out (several objects in one model; wrong pivot points).
EXCLUDED_MODELS = ("b02_bag", "lantern_2010", "b04_bottle_max", "heart", "shark")
N_TDW117_CATEGORIES = 117
ATTRIBUTION = ("ThreeDWorld (TDW) model library models_core.json (https://github.com/threedworld-mit/tdw), "
               "TDW-117 selection of Xie et al., ICLR 2025")


@dataclass(frozen=True)
class TDWModel:
    """What the backend needs to add and place one TDW model.

    ``max_extent`` is the longest side of the record's bounds in metres (the pinned list's value);
    ``unit_scale`` what scales the model to 1 m (``TDWUtils.get_unit_scale``: 1 / the longest side
    of the record's bounds); ``bounds_center`` is the bounds centre in the model's local frame
    (metres, Unity axes); ``canonical_rotation`` the record's Unity Euler angles (degrees), the
    rotation the model is added with (the generator then turns it to face the camera).
    """

    name: str
    wnid: str
    wcategory: str
    url: str
    scale_factor: float
    max_extent: float
    unit_scale: float
    bounds_center: tuple[float, float, float]
    canonical_rotation: tuple[float, float, float]


def read_pinned_models() -> list[dict]:
    """Rows of the packaged ``tdw117_models.tsv`` (548 dicts, in object_label order)."""
    text = resources.files("latentzoo").joinpath("data/tdw117_models.tsv").read_text()
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    return sorted(rows, key=lambda r: int(r["object_label"]))


def model_librarian(library: str = MODEL_LIBRARY):
    """The ``tdw`` package's ModelLibrarian for ``library`` (offline; silences tdw's pkg_resources warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from tdw.librarian import ModelLibrarian
    return ModelLibrarian(library)


def librarian_categories(model_names: list[str], library: str = MODEL_LIBRARY) -> list[tuple[str, str]]:
    """``[(wnid, name)]`` of the given models' librarian records, sorted by wnid.

    ``name`` is the ``wcategory`` of the alphabetically first model of that wnid, followed by
    `` (wnid)`` where two wnids share a wcategory (TDW-117 has two "bowl"s).
    """
    records = {r.name: r for r in model_librarian(library).records}
    missing = [n for n in model_names if n not in records]
    if missing:
        raise UserError(f"{len(missing)} TDW-117 models are not in the tdw package's {library} "
                        f"(first: {missing[0]}); install tdw>=1.12")
    names: dict[str, str] = {}
    for name in sorted(model_names):
        names.setdefault(records[name].wnid, records[name].wcategory)
    shared = {c for c in names.values() if list(names.values()).count(c) > 1}
    return sorted((w, f"{c} ({w})" if c in shared else c) for w, c in names.items())


class TDWLibrary:
    """TDW-117 (``n_categories=None``) or TDW-N: ordered categories, identities and TDW records.

    Implements :class:`latentzoo.rendering.library.ObjectLibrary`, except that meshes live in TDW's
    asset bundles, which only a TDW build can draw.
    """

    def __init__(self, n_categories: int | None = None, library: str = MODEL_LIBRARY):
        rows = read_pinned_models()
        categories = librarian_categories([r["model_name"] for r in rows], library)
        pinned_order = sorted({(int(r["category_label"]), r["wnid"]) for r in rows})
        if [w for _, w in pinned_order] != [w for w, _ in categories]:
            raise UserError(f"the category order of {library} disagrees with the pinned TDW-117 list")
        n = len(categories) if n_categories is None else int(n_categories)
        if not 1 <= n <= len(categories):
            raise UserError(f"TDW-N needs 1 <= N <= {len(categories)}, got {n}")
        categories = categories[:n]
        index = {wnid: i for i, (wnid, _) in enumerate(categories)}
        rows = [r for r in rows if r["wnid"] in index]
        records = {r.name: r for r in model_librarian(library).records}

        self.name = "tdw117" if n == N_TDW117_CATEGORIES else f"tdw{n}"
        self.attribution = ATTRIBUTION
        self.wnids = [w for w, _ in categories]
        self.categories = [c for _, c in categories]
        self.identities = [r["model_name"] for r in rows]
        self.identity_category = [index[r["wnid"]] for r in rows]
        self.models = [_model(records[r["model_name"]], float(r["max_extent_m"])) for r in rows]

    def mesh(self, identity: int) -> Mesh:
        """TDW models are Unity asset bundles: only a TDW build can draw them."""
        raise UserError(f"{self.name} models are TDW asset bundles; render them with `--backend tdw`")


def _model(record, max_extent: float) -> TDWModel:
    b = record.bounds
    extents = [b[high][axis] - b[low][axis] for high, low, axis in (("top", "bottom", "y"), ("front", "back", "z"),
                                                                       ("right", "left", "x"))]
    return TDWModel(name=record.name, wnid=record.wnid, wcategory=record.wcategory, url=record.get_url(),
                    scale_factor=float(record.scale_factor), max_extent=max_extent,
                    unit_scale=1.0 / max(extents) if max(extents) else 1.0,
                    bounds_center=tuple(float(b["center"][k]) for k in "xyz"),
                    canonical_rotation=tuple(float(record.canonical_rotation[k]) for k in "xyz"))


def library_from_name(name: str) -> TDWLibrary:
    """``"tdw117"`` -> TDW-117, ``"tdw<N>"`` -> its first N categories; other names raise UserError."""
    match = re.fullmatch(r"tdw(\d+)", name)
    if match is None:
        raise UserError(f"unknown TDW library {name!r}; use tdw117 or tdw<N> (N categories)")
    return TDWLibrary(int(match.group(1)))


def tdw117() -> TDWLibrary:
    """The full TDW-117 library (548 models, 117 categories)."""
    return TDWLibrary()
