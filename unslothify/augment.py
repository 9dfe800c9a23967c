"""Augmentation between prepare and train (see issue: teach facts, not phrasings)."""

from __future__ import annotations


def training_items(cfg, prepared, progress=print):
    """The items a training call uses: the prepared training split, plus augmented records when enabled."""
    return list(prepared.train)


def augment(cfg, prepared, progress=print):
    raise NotImplementedError("augmentation is not built yet")
