"""latentzoo: CNNs trained on 3D-rendered images to estimate spatial latents (Xie et al., ICLR 2025)."""

from importlib.metadata import version as _version

__version__ = _version("latentzoo")

#: Public face, imported lazily so ``import latentzoo`` stays fast (no torch until needed).
_PUBLIC = {"from_pretrained": "latentzoo.weights", "load_registry": "latentzoo.registry",
           "save_pretrained": "latentzoo.hub", "load_pretrained": "latentzoo.hub",
           "push_to_hub": "latentzoo.hub", "list_models": "latentzoo.registry"}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'latentzoo' has no attribute {name!r}")
