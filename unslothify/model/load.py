"""Choosing, loading and adapting the base model.

All loading goes through Unsloth's FastLanguageModel (its CPU fallback on a machine without a GPU). The
embedded model (embedded.py) is what runs without a GPU; chat templates are chosen in templates.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..machine.device import MEMORY_CAP_ENV, apply_memory_cap, loads_in_4bit, precision
from .embedded import EMBEDDED, fix_smollm2_tokenizer, is_embedded
from ..runs import Run, adapter_base
from .templates import TEMPLATE_NOTE, use_chat_template
from .choice import AUTO, resolve_model

if TYPE_CHECKING:
    from ..config import Config


def load_tokenizer(cfg: "Config", progress=print):
    """The tokenizer alone (prepare needs token lengths, not weights)."""
    import_unsloth()
    from transformers import AutoTokenizer

    path, _ = resolve_model(cfg, progress)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if is_embedded(path):
        fix_smollm2_tokenizer(tokenizer)
    tokenizer = use_chat_template(tokenizer, cfg.chat_template, progress)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def import_unsloth():
    """Unsloth patches transformers, TRL and PEFT on import, so it must come before them. Two warnings its
    import raises tell a user nothing, and are silenced here, where they start: torch's pytree deprecation
    notices about Enum registrations made inside torchao, and bitsandbytes' note that its optional CPU 4-bit
    kernels package is missing (4-bit runs on GPUs only here; the CPU trains in 16 bits)."""
    import logging

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    import unsloth  # noqa: F401


# Unsloth reads UNSLOTH_BLOCK_COMPILE when it patches a model and at every training forward, so the choice holds
# for the process; this module's own "0" is taken back when a later load asks for compiling, a user's is kept.
BLOCK_COMPILE_ENV = "UNSLOTH_BLOCK_COMPILE"
_block_compile_set_here = False


def compile_blocks(on: bool):
    """Whether Unsloth compiles each decoder block for training on a GPU (config knob compile_blocks). On an H100
    the embedded model's run of examples/invented took 228 s with it off against 307 s on (2026-12-07, 16-bit,
    one run each): the retention term's base answers 1 s against 26 s, the timing steps 12 s against 32 s, the
    training call 103 s against 119 s."""
    global _block_compile_set_here
    if not on:
        os.environ[BLOCK_COMPILE_ENV] = "0"
        _block_compile_set_here = True
    elif _block_compile_set_here:
        os.environ.pop(BLOCK_COMPILE_ENV, None)
        _block_compile_set_here = False


def load_base(cfg: "Config", progress=print, model_path: str | None = None, chat_template: str | None = "config"):
    """(model, tokenizer, model_path) through Unsloth's FastLanguageModel, with the config's chat template
    (chat_template=None keeps the tokenizer's as saved: an adapter version's, which it was trained with)."""
    if chat_template == "config":
        chat_template = cfg.chat_template
    if model_path is None:
        model_path, reason = resolve_model(cfg, progress)
        shown = model_path if cfg.model in (model_path, AUTO, EMBEDDED) else f"{cfg.model} -> {model_path}"
        progress(f"Model: {shown} ({reason}).")
    import_unsloth()
    from unsloth import FastLanguageModel

    import torch

    if cfg.gpu_memory_gib:  # the processes this run starts (the export checks) inherit the cap
        os.environ[MEMORY_CAP_ENV] = f"{cfg.gpu_memory_gib:g}"
    apply_memory_cap()  # before the first allocation
    compile_blocks(cfg.compile_blocks)
    four_bit = loads_in_4bit(cfg)
    # On a GPU without bf16 the model is loaded in fp16 here, so that the Trainer's fp16 autocast matches it.
    dtype = torch.float16 if precision() == "fp16" else None
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path,
        max_seq_length=cfg.max_seq_length,
        load_in_4bit=four_bit,
        dtype=dtype,
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
    )
    if is_embedded(model_path):
        fix_smollm2_tokenizer(tokenizer)
    if chat_template is not None:
        tokenizer = use_chat_template(tokenizer, chat_template, progress)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, model_path


def add_lora(model, cfg: "Config"):
    from unsloth import FastLanguageModel

    layers = model.config.num_hidden_layers
    top = range(max(0, layers - cfg.lora_layers), layers) if 0 < cfg.lora_layers < layers else None
    return FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        layers_to_transform=list(top) if top is not None else None,
        bias="none",
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
        random_state=cfg.seed,
    )


def load_version(cfg: "Config", adapter_dir: str | Path, progress=print):
    """(model, tokenizer, base path) for a saved adapter: Unsloth loads the base the adapter names and the
    adapter on top, trainable, with its saving methods attached (the way Unsloth reloads "lora_model")."""
    adapter_dir = Path(adapter_dir)
    base = adapter_base(adapter_dir)
    # The version's own tokenizer (Unsloth reads it from the adapter folder), with the template it trained with.
    model, tokenizer, _ = load_base(cfg, progress, model_path=str(adapter_dir), chat_template=None)
    if is_embedded(base):
        fix_smollm2_tokenizer(tokenizer)
    manifest = adapter_dir / "manifest.json"
    note = json.loads(manifest.read_text()).get("chat_template") if manifest.exists() else None
    setattr(tokenizer, TEMPLATE_NOTE, note or {"asked": "auto", "used": "own", "why": "saved with the adapter"})
    return model, tokenizer, base


def load_for_inference(spec: str, cfg: "Config", progress=print):
    """(model, tokenizer, description) for 'embedded', 'auto', a hub id, a merged/model folder, an adapter
    version folder (runs/x/v003: weighed by adapter_scale), or a run folder (its best version)."""
    path = Path(spec)
    if path.is_dir() and not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        if Run(path).versions():
            return load_for_inference(str(Run(path).version("best").path), cfg, progress)
    if (path / "adapter_config.json").exists():
        model, tokenizer, base = load_version(cfg, path, progress)
        scaled = f" at scale {cfg.adapter_scale:g}" if cfg.adapter_scale != 1.0 else ""
        return for_inference(use_adapter_scale(model, cfg.adapter_scale)), tokenizer, f"{base} + adapter {path}{scaled}"
    if spec in (EMBEDDED, AUTO):
        model, tokenizer, name = load_base(dataclasses.replace(cfg, model=spec), progress)
        return for_inference(model), tokenizer, name
    model, tokenizer, name = load_base(cfg, progress, model_path=spec)
    return for_inference(model), tokenizer, name


def for_inference(model):
    from unsloth import FastLanguageModel

    FastLanguageModel.for_inference(model)
    return model


def for_training(model):
    from unsloth import FastLanguageModel

    FastLanguageModel.for_training(model)
    return model


def adapter_scaled(model, scale: float):
    """While it lasts, the adapter weighs `scale` (peft's rescale_adapter_scale: WiSE-FT for LoRA), as a version
    will be used: the probes measure the model a user gets."""
    import contextlib

    if scale == 1.0 or not hasattr(model, "peft_config"):
        return contextlib.nullcontext()
    from peft.helpers import rescale_adapter_scale

    return rescale_adapter_scale(model, scale)


def use_adapter_scale(model, scale: float):
    """Weigh the adapter by `scale` from now on, in place (W + scale x B A: WiSE-FT for LoRA): a version made
    ready for use, never a model that trains on. 1 leaves it as trained."""
    import torch

    if scale == 1.0:
        return model
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(scale)
    return model
