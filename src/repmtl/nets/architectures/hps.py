"""Hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 28, 1997): one shared
encoder, one head per task, ``y_t = h_t(E(x))``. It is :class:`repmtl.model.MultiTaskModel`
itself, with one shared representation ``Z`` (not a mapping), so every method and level applies."""

from __future__ import annotations

from repmtl.model import MultiTaskModel


def build_hps(model: MultiTaskModel) -> MultiTaskModel:
    """The benchmark's network as it is."""
    return model
