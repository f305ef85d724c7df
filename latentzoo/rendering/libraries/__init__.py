"""Object libraries by name: ``get_library("procedural")``, ``get_library("0ad")``.

Each entry of :data:`LIBRARIES` is ``"module:factory"``; the factory takes no required arguments
and returns an :class:`~latentzoo.rendering.library.ObjectLibrary` (raising
:class:`~latentzoo.errors.UserError` with the fix when its data is missing). Libraries are cached
per process, so meshes are built or loaded once.
"""

from __future__ import annotations

import functools
import importlib

from latentzoo.errors import UserError, unknown
from latentzoo.rendering.library import ObjectLibrary

LIBRARIES: dict[str, str] = {
    "procedural": "latentzoo.rendering.libraries.procedural:ProceduralLibrary",
    "0ad": "latentzoo.rendering.libraries.zeroad:ZeroADLibrary",
    "tdw117": "latentzoo.rendering.tdw.library:tdw117",  # TDW-N: "tdw<N>", see get_library
}


@functools.lru_cache(maxsize=None)
def get_library(name: str) -> ObjectLibrary:
    """The object library called ``name`` (see :data:`LIBRARIES`)."""
    if name not in LIBRARIES and name.startswith("tdw"):
        from latentzoo.rendering.tdw.library import library_from_name

        return library_from_name(name)
    if name not in LIBRARIES:
        raise unknown("library", name, [*LIBRARIES, "tdw<N>"]) from None
    module, _, factory = LIBRARIES[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise UserError(f"library {name!r} is not available in this installation ({module} is missing)") from e
    return getattr(mod, factory)()
