"""Importing this module registers every zoo id in ``brainscore_vision.model_registry`` and the
spatial-latent benchmarks (``latentzoo.Distance-IT``, ...) in ``brainscore_vision.benchmark_registry``.

    import latentzoo.brainscore
    from brainscore_vision import model_registry
    model = model_registry["tdw-distance-r50"]()   # a ModelCommitment with the registry's layer map

``brainscore_vision.load_model(id)`` only searches Brain-Score's own plugin folders; use the
``brainscore score`` command (or :func:`latentzoo.models.brainscore.score`) to score zoo ids.
"""

from brainscore_vision import benchmark_registry

from latentzoo.models.brainscore import register
from latentzoo.spatial import benchmark_factories

REGISTERED = register()
benchmark_registry.update(benchmark_factories())
