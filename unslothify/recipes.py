"""Recipes: one YAML file per model family and device in recipes/, each knob with a one-line comment saying
why it has that value. Loading picks the recipe for the model and the device (knob `recipe: auto`) and says
which one; config.yaml and flags override it. Imports nothing heavy.

    name, path, why = choose(cfg_values)          # which recipe applies, and why
    knobs = read(path)                            # {knob: value}
    notes = reasons(path)                         # {knob: why}, for notebook 00 and the docs
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .fsutil import PROJECT_DIR

RECIPES_DIR = PROJECT_DIR / "recipes"
# model: auto on a GPU and any model that is not the embedded one on a GPU train by the 7B QLoRA recipe.
GPU_RECIPE = "mistral-7b-qlora"
EMBEDDED_RECIPES = {"cpu": "smollm2-cpu", "cuda": "smollm2-gpu"}
BASE_KEY = "base"  # a recipe's first line may name the recipe it builds on
_LINE = re.compile(r"^(?P<key>[a-z_0-9]+):\s*(?P<value>[^#]*?)\s*(?:#\s*(?P<why>.*))?$")


def experiment(name: str) -> dict:
    """recipes/experiments/<name>.yaml: the named recipes a measurement script compares (benchmark,
    time-to-quality, levers), each a mapping the script reads."""
    return yaml.safe_load((RECIPES_DIR / "experiments" / f"{name}.yaml").read_text(encoding="utf-8")) or {}


def path_of(name: str) -> Path:
    """recipes/<name>.yaml, or a YAML file's own path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    return RECIPES_DIR / f"{name}.yaml"


def available() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def choose(recipe: str, model: str, cuda: bool) -> tuple[str | None, str]:
    """(recipe name or None, why) for the `recipe` knob's value and the model asked for."""
    from .model.embedded import EMBEDDED
    from .model.choice import resolve_model_name

    if recipe == "none":
        return None, "recipe: none was asked for: the defaults of config.py alone"
    if recipe != "auto":
        return recipe, f"recipe: {recipe} was asked for"
    name = resolve_model_name(trained_from(model))[0]
    device = "cuda" if cuda else "cpu"
    if name == EMBEDDED:
        return EMBEDDED_RECIPES[device], f"the embedded model on a {'GPU' if cuda else 'CPU'}"
    if cuda:
        return GPU_RECIPE, ("the GPU default model" if model == "auto" else
                            f"{name} on a GPU: the 7B QLoRA recipe is the GPU recipe for any model")
    return None, f"{name} on a CPU: no recipe, the defaults of config.py"


def trained_from(model: str) -> str:
    """The model a saved version (or a run folder's versions) was trained from, `embedded` for the embedded one;
    any other name as it is. A version is used with its base model's recipe, as `run` used it: `eval`, `chat`
    and `export --model runs/x/v001` then weigh it by the adapter_scale it was scored at."""
    from .model.embedded import EMBEDDED, is_embedded
    from .runs import Run, adapter_base

    base = adapter_base(model)
    if base is None:  # a run folder: its versions share the base they were trained from, so any of them names it
        base = next(filter(None, (adapter_base(v.path) for v in Run(model).versions())), None)
    if base is None:
        return model
    return EMBEDDED if is_embedded(base) else base


def read(name: str) -> dict:
    """The recipe's knobs, with those of the recipe it names as its `base` (its own win). A missing recipe
    names the ones there are."""
    from .knobs import ConfigError

    path = path_of(name)
    if not path.exists():
        raise ConfigError(f"recipe = {name!r}: no such recipe; there are {', '.join(available())} (recipes/), or "
                          f"give a YAML file's path, or 'auto' or 'none'.")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of knob: value.")
    base = values.pop(BASE_KEY, None)
    return {**read(base), **values} if base else values


def reasons(name: str) -> dict[str, str]:
    """{knob: the comment on its line} of a recipe file and of its base."""
    out = {}
    for line in path_of(name).read_text(encoding="utf-8").splitlines():
        m = _LINE.match(line)
        if m and m.group("why"):
            out[m.group("key")] = m.group("why").strip()
    base = (yaml.safe_load(path_of(name).read_text(encoding="utf-8")) or {}).get(BASE_KEY)
    return {**reasons(base), **out} if base else out


def describe_recipe(name: str | None, why: str) -> str:
    """Notebook 00 and `run`: which recipe, why, and what it sets and why."""
    if name is None:
        return f"Recipe: none ({why})."
    notes = reasons(name)
    lines = [f"Recipe: {name} ({why}; {path_of(name).relative_to(RECIPES_DIR.parent) if path_of(name).is_relative_to(RECIPES_DIR.parent) else path_of(name)}):"]
    for key, value in read(name).items():
        lines.append(f"  {key}: {value}" + (f"  # {notes[key]}" if key in notes else ""))
    lines.append("  (every other knob: its library's default, config.py)")
    return "\n".join(lines)
