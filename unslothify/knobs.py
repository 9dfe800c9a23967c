"""A knob: a config field declared once with its default, allowed range and help line.

Validation, CLI flags and --help, the README's knob table and the slider panel all read this metadata.
It imports nothing of the package, so config.py and the augmentation kinds (which declare their own
knobs, unslothify/data/augment/kinds/) can both build on it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any


def knob(default, help: str, lo=None, hi=None, choices=None, overfit: str = "", log: bool = False,
         step=None, group: str = "training", panel: bool = False):
    """A config field with its range and help line. `panel=True` puts it on the notebook's slider panel;
    `overfit` says which way it moves overfitting."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "overfit": overfit, "log": log,
            "step": step, "group": group, "panel": panel}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(ValueError):
    """A knob is unknown, of the wrong type, or outside its range."""


def type_name(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else f.type.__name__


def describe_allowed(f: dataclasses.Field) -> str:
    """The allowed values of a knob, as error messages and --help show them."""
    m = f.metadata
    if m.get("choices") and type_name(f) == "list":
        return "one of " + ", ".join(map(str, m["choices"])) + ", or a list of them"
    if m.get("choices"):
        return "one of " + ", ".join(map(str, m["choices"]))
    if m.get("lo") is not None:
        return f"{_kind_words(f)} from {m['lo']:g} to {m['hi']:g}"
    return _kind_words(f)


def _kind_words(f) -> str:
    t = type_name(f)
    return {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
            "list": "a list of names",
            "dict": "a mapping of names to names"}.get(t, t)


class _Bad(ValueError):
    """A value a type reader cannot take (coerce turns it into the ConfigError that names the knob)."""


def _as_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise _Bad


def _as_int(value):
    if isinstance(value, bool):
        raise _Bad
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise _Bad from None
    if not isinstance(value, int):
        raise _Bad
    return value


def _as_float(value):
    if isinstance(value, bool):
        raise _Bad
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise _Bad from None
    if not math.isfinite(value):
        raise _Bad
    return value


def _as_str(value):
    if not isinstance(value, str):
        raise _Bad
    return value


def _as_list(value):
    if isinstance(value, str):  # a CLI flag: "q_proj,v_proj"
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _Bad
    return value


def _as_dict(value):
    if isinstance(value, str) and value.strip().startswith("{"):  # a CLI flag in YAML: "{q: question}"
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise _Bad from None
    if isinstance(value, str):  # a CLI flag: "q=question,a=answer"
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        if not all(sep for _, sep, _ in pairs):
            raise _Bad
        value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k and isinstance(v, str) and v
                                              for k, v in value.items()):
        raise _Bad
    return dict(value)


_READERS = {"bool": _as_bool, "int": _as_int, "float": _as_float, "str": _as_str, "list": _as_list,
            "dict": _as_dict}


def coerce(f: dataclasses.Field, value: Any, where: str) -> Any:
    """value as the knob's type, checked against its range and choices; ConfigError naming both otherwise."""
    t = type_name(f)
    bad = ConfigError(f"{where}: {f.name} = {value!r} is not valid; allowed: {describe_allowed(f)}.")
    try:
        value = _READERS[t](value) if t in _READERS else value
    except _Bad:
        raise bad from None
    m = f.metadata
    if t in ("bool", "dict"):
        return value
    if m.get("choices") and t == "list":
        if not all(v in m["choices"] for v in value):
            raise bad
    elif m.get("choices") and value not in m["choices"]:
        raise bad
    if m.get("lo") is not None and not (m["lo"] <= value <= m["hi"]):
        raise bad
    return value
