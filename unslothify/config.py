"""One config for notebooks, sliders and CLI.

Every knob is a dataclass field declared once with its default, its allowed range and a help line
(which way it moves overfitting, where that applies). YAML files, CLI flags and the slider panel all
read and write the same fields.

A knob that goes to a library defaults to that library's own default (Unsloth's from_pretrained and
get_peft_model for the model and LoRA knobs, TRL's SFTConfig for the training knobs), so that a value chosen
for a model and a device lives in its recipe (recipes/*.yaml) alone; the project's own knobs (data, probes,
augmentation, evaluation) have their defaults here. What a config holds is what SFTConfig gets
(train/args.py maps the knobs one to one).

Usage:
    cfg = load_config("config.yaml", num_train_epochs=5)   # file < flags; unknown keys are errors
    save_config(cfg, "runs/meatballs/config.yaml")
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.augment.kinds import AugmentConfig
from .fsutil import atomic_write_text
from .knobs import ConfigError, coerce, knob
from . import recipes
from .model.choice import AUTO

# Schedules that need no extra arguments (those that do, e.g. warmup_stable_decay, are left out).
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")
TRACKERS = ("none", "tensorboard", "wandb", "trackio")
OBJECTIVES = ("auto", "knowledge", "skill")  # what training is for (unslothify/data/probes.py decides auto)
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class Config:
    # --- model ---
    model: str = knob(AUTO, "'auto' (Mistral 7B 4-bit on a CUDA GPU, else the embedded SmolLM2-135M), "
                      "'embedded', a hub id or a local directory.", group="model")
    recipe: str = knob("auto", "The recipe the knobs start from (recipes/*.yaml, each knob with why): 'auto' picks "
                       "by model and device (said when loading), or a recipe's name or YAML path, or 'none'. "
                       "config.yaml and flags override it.", group="model")
    load_in_4bit: bool = knob(True, "Load the base in 4-bit (QLoRA). Ignored on CPU. (Unsloth's default)",
                              group="model")
    gpu_memory_gib: float = knob(0.0, "GPU memory a run may take, in GiB, in every process it starts (0: the whole "
                                 "card). For a shared card, or to rehearse a smaller one: 15 is a free Colab T4.",
                                 0.0, 4096, step=0.5, group="model")
    max_seq_length: int = knob(2048, "Longest tokenised item; longer items are skipped or rejected (Unsloth's "
                               "default 2048).", 32, 32768,
                               overfit="no direct effect; lower saves memory", step=32, group="model", panel=True)
    # --- data ---
    data: str = knob("domain.jsonl", "Training data: a JSONL, JSON (array), CSV, TSV or Parquet file, a folder "
                     "saved by datasets' save_to_disk, or a Hub dataset id, each with an optional ':split'.",
                     group="data")
    columns: dict = knob({}, "Map your columns to the format fields, {your_column: field} (e.g. {q: question, "
                         "a: answer}); only mapped columns are read. Empty: columns are matched by name.",
                         group="data")
    eval_questions: str = knob("eval/questions.jsonl", "Held-out questions for recall ({question, expected}).",
                               group="data")
    general_questions: str = knob("eval/general.jsonl", "General questions scored for retention.", group="data")
    objective: str = knob("auto", "What training is for: 'knowledge' (facts asked and answered: every item is "
                          "trained; knowledge probes made from the items steer), 'skill' (style, instructions, code: "
                          "validation_split of the items is held out and its loss steers), or 'auto' (knowledge when "
                          "most items are single-turn questions; said at each run).", choices=OBJECTIVES, group="data")
    probes: int = knob(40, "Knowledge probes (objective knowledge): training items asked again from the answer's "
                       "side, a sentence shape training never uses (a fifth, where augmenting wrote reverse rows, "
                       "from the name's end: 'What do you know about X?'), scored at every evaluation. 40 put recall "
                       "within +-0.08 and share one batched generation per evaluation with the retention probes.", 0, 500, step=1, group="data")
    validation_split: float = knob(0.1, "Share of items held out for validation loss (objective skill; knowledge "
                                   "trains every item).", 0.0, 0.5, step=0.01,
                                   overfit="more validation data makes overfitting visible sooner", group="data")
    skip_duplicates: bool = knob(True, "Drop exact duplicate items with a warning instead of failing.",
                                 group="data")
    skip_overlong: bool = knob(True, "Drop items longer than max_seq_length with a warning instead of failing.",
                               group="data")
    system_prompt: str = knob("", "System message added to chat items that have none ('' keeps the template's "
                              "own default).", group="data")
    chat_template: str = knob("auto", "'auto' uses the model's own chat template, or picks one of Unsloth's named "
                              "templates where the tokenizer has none; or a name of one (chatml, mistral, alpaca, "
                              "llama-3, ...: unsloth.chat_templates.CHAT_TEMPLATES). Saved with every version.",
                              group="model")
    # --- LoRA ---
    lora_r: int = knob(16, "LoRA rank (Unsloth's default 16).", 1, 256, overfit="higher rank can memorise more: raises overfitting",
                       step=1, group="lora", panel=True)
    lora_alpha: int = knob(16, "LoRA scale numerator (effective scale alpha/r; Unsloth's default 16).", 1, 512,
                           overfit="higher alpha means larger updates: raises overfitting", step=1, group="lora", panel=True)
    lora_dropout: float = knob(0.0, "Dropout on the LoRA path.", 0.0, 0.5,
                               overfit="higher dropout lowers overfitting", step=0.01, group="lora", panel=True)
    adapter_scale: float = knob(0.8, "The adapter's weight when a version is used (the probes, scores, chat, exports): "
                                "below 1 moves the model back towards the base (WiSE-FT), keeping more of what it "
                                "knew. 0.8 kept the held-out recall of 1.0 with 0.07 more retention (H100, "
                                "docs/augmentation.md); on 2 CPU cores, training the top 15 layers, it cost "
                                "0.04-0.07 recall (the CPU recipe uses 1.0). Training is not changed.", 0.0, 1.0,
                                step=0.05,
                                overfit="lower undoes some of what training did, the memorised wording first",
                                group="lora")
    target_modules: list = knob(ALL_LINEAR, "Modules that get LoRA adapters.", group="lora")
    lora_layers: int = knob(0, "Adapt only the top N transformer layers (0: all). The backward pass stops below "
                            "them: faster steps, and the layers below keep what they knew.", 0, 1000, step=1,
                            overfit="fewer layers can memorise less: lowers overfitting", group="lora")
    # --- optimisation ---
    learning_rate: float = knob(2e-5, "Peak learning rate, as SFTConfig gets it (TRL's default 2e-5; each "
                                "recipe sets its own).", 1e-6, 1e-2, log=True,
                                overfit="higher learns faster and overfits sooner", panel=True)
    weight_decay: float = knob(0.0, "AdamW weight decay (TRL's default 0).", 0.0, 0.5, step=0.005,
                               overfit="higher weight decay lowers overfitting", panel=True)
    warmup: float = knob(0.0, "Learning-rate warm-up: below 1 a share of the steps, 1 or more a number of steps "
                         "(TRL's default 0).",
                         0.0, 10000, step=0.01, overfit="little effect on overfitting; steadies early training", panel=True)
    per_device_train_batch_size: int = knob(8, "Items per forward pass.", 1, 256, step=1,
                                            overfit="larger batches mean fewer, smoother updates per epoch", panel=True)
    gradient_accumulation_steps: int = knob(1, "Forward passes per optimizer step (effective batch = batch x "
                                            "accumulation).", 1, 256, step=1,
                                            overfit="larger effective batch: fewer updates, less overfitting", panel=True)
    retention_weight: float = knob(4.0, "Weight of the retention term: on the replay rows' answers, the divergence "
                                   "of the tuned model's next-token distribution from the base model's, added to "
                                   "the loss (1: a replay token weighs as much as an answer token; 0: off). Needs "
                                   "augment.replay. 4 kept 0.80 of the general questions against 0.70 at 0 on 2 CPU "
                                   "cores, held-out recall 0.83 against 0.85 (docs/augmentation.md).", 0.0, 100.0,
                                   step=0.5,
                                   overfit="higher keeps the base model's answers elsewhere: less forgetting, "
                                   "and the facts can come slower", panel=True)
    lr_scheduler_type: str = knob("linear", "Learning-rate schedule.", choices=SCHEDULERS,
                                  overfit="decaying schedules settle; constant keeps pushing", panel=True)
    num_train_epochs: float = knob(3.0, "Passes over the training data per training call.", 0.1, 1000, step=0.5,
                                   overfit="more epochs raise overfitting: watch validation loss", panel=True)
    max_train_minutes: float = knob(0.0, "Cap on a training call's time (0: no cap): each call times this machine "
                                    "first, plans the epochs that fit, and stops at the cap if it runs long. The "
                                    "notebooks set none unless you do.", 0.0, 10000, step=1, panel=True)
    cap_shortens: str = knob("epochs", "What max_train_minutes shortens when the epochs asked do not fit: 'epochs' "
                             "trains every item fewer times; 'facts' (objective knowledge) trains as many facts as fit "
                             "all the epochs asked, so that what it trains is learnt, and says how long the rest "
                             "would take on this machine.", choices=("epochs", "facts"))
    seed: int = knob(3407, "Seed for the split, LoRA init and data order.", 0, 2**31 - 1, step=1)
    packing: bool = knob(False, "Padding-free packing of whole items into rows of max_seq_length tokens, "
                         "per_device_train_batch_size rows per step (GPU only; ~15x faster per epoch than padding "
                         "short items to 512 tokens, docs/benchmark.md; TRL's default off). A packed step holds "
                         "many items: set learning_rate for it (the 7B recipes do).", group="speed")
    gradient_checkpointing: bool = knob(True, "Recompute activations to save memory (Unsloth's offloaded variant "
                                        "on GPU).", group="speed")
    compile_blocks: bool = knob(True, "On a GPU, let Unsloth compile each transformer block for training "
                                "(torch.compile; Unsloth's default). A small model spends more on the compiling "
                                "(20-30 s in a fresh process, and again at new shapes) than it saves.",
                                group="speed")
    optim: str = knob("adamw_torch_fused", "Optimizer (transformers' default fused AdamW; 8-bit AdamW needs a GPU, "
                      "a CPU falls back to fused AdamW).",
                      choices=("adamw_8bit", "adamw_torch_fused", "adamw_torch", "paged_adamw_8bit", "sgd"),
                      group="speed")
    evals_per_epoch: float = knob(1.0, "Evaluations per epoch (validation loss, and the probes under objective "
                                  "knowledge); below 1, one every 1/x epochs (0.5: every second epoch), and always "
                                  "one at the end of a call.", 0.1, 20, step=0.5,
                                  overfit="more points show the turn from learning to memorising sooner", panel=True)
    early_stopping_patience: int = knob(0, "Stop after this many evaluations without a better probe recall "
                                        "(objective knowledge) or validation loss (skill); 0 = off.", 0, 100, step=1,
                                        overfit="stops training once it stops improving", panel=True)
    report_to: list = knob(["none"], "Experiment trackers TRL logs to, beside the notebook's live plot (wandb "
                           "and trackio read their own login; tensorboard writes to <run>/logs).",
                           choices=TRACKERS, group="run")
    # --- run ---
    output_dir: str = knob("runs/meatballs", "Run folder: prepared data, adapter versions, exports.", group="run")
    max_new_tokens: int = knob(64, "Answer length cap for eval and chat.", 1, 4096, step=1, group="run")
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata={"group": "augment", "help": ""})


def panel_keys() -> list[str]:
    """The knobs on the notebook's slider panel, in order: every knob declared with panel=True, the
    augmentation ones as 'augment.<name>'."""
    return ([f.name for f in knob_fields() if f.metadata.get("panel")]
            + [f"augment.{f.name}" for f in dataclasses.fields(AugmentConfig) if f.metadata.get("panel")])


def knob_fields(cls=None) -> list[dataclasses.Field]:
    """Config's knobs (the augment mapping aside; its fields are AugmentConfig's)."""
    return [f for f in dataclasses.fields(cls or Config) if f.name != "augment"]


def _build(cls, values: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}. Known keys: {known}.")
    kwargs = {}
    for name, value in values.items():
        if name == "augment":
            if isinstance(value, AugmentConfig):
                value = dataclasses.asdict(value)
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: augment must be a mapping of augmentation knobs.")
            kwargs[name] = _build(AugmentConfig, value, f"{where} (augment)")
        else:
            kwargs[name] = coerce(fields[name], value, where)
    return cls(**kwargs)


def load_config(path: str | os.PathLike | None = None, **overrides) -> Config:
    """Defaults < the recipe for the model and device (recipes.choose) < YAML file < overrides.

    Overrides whose value is None are ignored, so CLI flags that were not given leave the file alone.
    """
    values: dict[str, Any] = {}
    where = "config"
    if path is not None:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found.") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of knob: value at the top level.")
        values.update(loaded)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "augment" in given and isinstance(values.get("augment"), dict) and isinstance(given["augment"], dict):
        given["augment"] = {**values["augment"], **given["augment"]}
    values.update(given)
    name, _ = recipe_of(values, where)
    if name is not None:
        values = {**recipes.read(name), **values}
    return _build(Config, values, where if not given else f"{where} + overrides")


def recipe_of(values: dict | Config, where: str = "config") -> tuple[str | None, str]:
    """(recipe name or None, why) for a config or the values it is made from."""
    from .machine.device import has_cuda

    if isinstance(values, Config):
        values = config_dict(values)
    model, recipe = values.get("model", AUTO), values.get("recipe", "auto")
    for key, value in (("model", model), ("recipe", recipe)):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} = {value!r} is not valid; allowed: text.")
    return recipes.choose(recipe, model, has_cuda())


def from_dict(values: dict, where: str = "config") -> Config:
    """A Config from a dict of every knob (a saved config.yaml, a manifest), validated."""
    return _build(Config, values, where)


def config_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write every knob (not only the changed ones), so the file reproduces the run alone."""
    return atomic_write_text(Path(path), yaml.safe_dump(config_dict(cfg), sort_keys=False))


def replace(cfg: Config, **changes) -> Config:
    """A validated copy with some knobs changed (what the sliders and flags do)."""
    values = config_dict(cfg)
    if "augment" in changes and isinstance(changes["augment"], dict):
        changes["augment"] = {**values["augment"], **changes["augment"]}
    values.update(changes)
    return _build(Config, values, "config")
