"""Networks (``network``), Brain-Score commitments (``brainscore``) and leaderboard submissions (``submission``)."""


def register(registry=None) -> list[str]:
    """Add every registry id to ``brainscore_vision.model_registry`` (see :mod:`latentzoo.models.brainscore`)."""
    from latentzoo.models.brainscore import register as _register

    return _register(registry)
