"""Which model a config asks for: 'auto' picks Mistral 7B 4-bit on a CUDA GPU, else the embedded SmolLM2-135M."""

from __future__ import annotations

from ..machine.device import has_cuda
from .embedded import EMBEDDED, embedded_checkpoint


AUTO = "auto"


# The default when a CUDA GPU is present: Unsloth's pre-quantized 4-bit Mistral 7B Instruct v0.3.
GPU_DEFAULT_MODEL = "unsloth/mistral-7b-instruct-v0.3-bnb-4bit"


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


def resolve_model(cfg, progress=print) -> tuple[str, str]:
    """(name or path to load, reason). Prints nothing; callers show the reason."""
    name, reason = resolve_model_name(cfg.model)
    if name == EMBEDDED:
        return str(embedded_checkpoint(progress)), reason
    return name, reason
