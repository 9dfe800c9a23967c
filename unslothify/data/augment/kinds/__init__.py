"""The augmentation kinds, registered here: every module in this folder that defines `KIND` is one.

A kind declares its knobs (they become fields of `cfg.augment`, CLI flags, README rows and, with
`panel=True`, sliders), when it is active, and a `run(ctx)` that adds records through the Context
(unslothify/data/augment/context.py). Adding a kind is one new module here plus its test; `order` says when it
runs (rephrasings are made before reverse questions, which must not repeat them).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, make_dataclass
from typing import Any, Callable

from ....knobs import knob


@dataclass(frozen=True)
class Kind:
    name: str
    order: int
    knobs: tuple  # ((field name, type, dataclasses.field made by knob()), ...)
    active: Callable[[Any], bool]  # given cfg.augment
    run: Callable[[Any], None]  # given the Context
    summary: str  # one line: what a record of this kind is
    # What its records depend on besides the training split and its knobs (a model, a file), given the
    # config; a change makes the augmented file stale.
    inputs: Callable[[Any], dict] = lambda cfg: {}


def _discover() -> list[Kind]:
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted((m.KIND for m in modules if hasattr(m, "KIND")), key=lambda k: k.order)


KINDS: list[Kind] = _discover()
NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)

AugmentConfig = make_dataclass(
    "AugmentConfig",
    [("enabled", bool, knob(True, "Write and train on an augmented copy of the training split "
                                  "(docs/augmentation.md).", group="augment", panel=True))]
    + [spec for kind in KINDS for spec in kind.knobs],
)
AugmentConfig.__module__ = __name__
AugmentConfig.__doc__ = ("Augmentation between prepare and train: `enabled` and each kind's knobs "
                         "(unslothify/data/augment/kinds/). Counts are per training item.")
