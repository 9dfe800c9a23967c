"""What this machine has, and the settings that suit it (notebook 00)."""

from __future__ import annotations

import platform
import shutil
import subprocess

from .device import CUDA_CONTEXT_GIB, has_cuda, precision
from .runtime import installed_version as _version


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() or None


# Peak GPU memory of Mistral 7B LoRA training (torch's reserved memory) as floor + slope x tokens per step,
# fitted to the H100 benchmark in docs/benchmark.md (random Mistral-7B-shaped model, vocab 32768, LoRA r16 on
# all linear layers; sections 2 and 2b): 4-bit with Unsloth's checkpointing 4.9 GiB + 0.17 GiB per 1000
# tokens; 16-bit with checkpointing 14.3 + 0.24; 16-bit without 14.0 + 4.4 per 1000 tokens. 4-bit without
# checkpointing was not measured: its slope is taken from 16-bit (activations do not depend on the weights'
# storage). A whole run needs more than its training steps: the T4 simulation of the 7B recipe (docs/t4.md:
# replay generation, the probes' batched generation at each evaluation, fp16) reserved 9.07 GiB at 4096 tokens
# a step where this model's training alone predicts 5.6, so RUN_EXTRA_GIB is added. CUDA's own context
# (outside torch's count) is added too.
MEMORY_MODEL = {  # (load_in_4bit, gradient_checkpointing): (GiB floor, GiB per 1000 tokens per step)
    (True, True): (4.9, 0.17),
    (False, True): (14.3, 0.24),
    (False, False): (14.0, 4.4),
    (True, False): (4.9, 4.4),
}
RUN_EXTRA_GIB = 3.4  # 9.07 - (4.9 + 0.17 x 4.096), measured on the T4 simulation (docs/t4.md)
# The retention term (retention_weight, with replay rows) computes the whole vocabulary's logits, in float32 with
# their gradient, for a batch that holds replay rows: the T4 simulation's training stage held 12.73 GiB with it
# and 9.71 without, at 4096 tokens a step: 0.74 GiB per 1000 tokens.
RETENTION_GIB_PER_1K_TOKENS = 0.74
# Memory as torch reports it (nvidia-smi MiB / 1024).
CARDS = [("T4", 15.0), ("L4", 22.5), ("A100 40GB", 40.0), ("A100 80GB", 80.0), ("H100 80GB", 79.6)]


def tokens_per_step(cfg) -> int:
    """Tokens in one micro-batch: packed rows are full; unpacked ones are padded to the longest item,
    at most max_seq_length (the worst case is what has to fit)."""
    return cfg.per_device_train_batch_size * cfg.max_seq_length


def memory_needed_gib(cfg) -> float:
    floor, slope = MEMORY_MODEL[(bool(cfg.load_in_4bit), bool(cfg.gradient_checkpointing))]
    if cfg.retention_weight and cfg.augment.enabled and cfg.augment.replay:
        slope += RETENTION_GIB_PER_1K_TOKENS
    return round(floor + slope * tokens_per_step(cfg) / 1000 + RUN_EXTRA_GIB + CUDA_CONTEXT_GIB, 1)


def fit_table(cfg, found: tuple[str, float] | None = None) -> list[dict]:
    """Whether the recipe in cfg fits Mistral 7B on each card class (and the one found), and what to lower."""
    need = memory_needed_gib(cfg)
    rows = []
    for name, total in ([found] if found else []) + CARDS:
        row = {"GPU": name, "memory GiB": total, "needs GiB": need, "fits": "yes" if need <= total * 0.95 else "no"}
        if row["fits"] == "no":
            row["lower"] = lower_memory_advice(cfg, total)
        rows.append(row)
    return rows


def lower_memory_advice(cfg, total_gib: float) -> str:
    """The knobs to change, in the order that costs least speed, until the recipe fits total_gib."""
    from ..config import replace

    steps, c = [], cfg
    for change in ({"gradient_checkpointing": True}, {"load_in_4bit": True},
                   {"per_device_train_batch_size": max(1, c.per_device_train_batch_size // 2)},
                   {"max_seq_length": max(256, c.max_seq_length // 2)}):
        if memory_needed_gib(c) <= total_gib * 0.95:
            break
        key, value = next(iter(change.items()))
        if getattr(c, key) != value:
            c = replace(c, **change)
            steps.append(f"{key}: {value}")
    if memory_needed_gib(c) > total_gib * 0.95:
        steps.append("a smaller base model")
    return ", ".join(steps) + f" (then about {memory_needed_gib(c)} GiB)"


def mistral_config(cfg, config_path: str | None = None, overrides: dict | None = None):
    """The config notebook 00 sizes Mistral 7B by, so that a CPU runtime still answers for it: the knobs the
    user chose (config.yaml, the notebook's overrides) over the GPU recipe. cfg itself where it is not the
    embedded model's."""
    from pathlib import Path

    from ..config import load_config
    from ..model.choice import GPU_DEFAULT_MODEL, resolve_model_name
    from ..model.embedded import EMBEDDED
    from ..recipes import GPU_RECIPE

    if resolve_model_name(cfg.model)[0] != EMBEDDED:
        return cfg
    path = config_path if config_path and Path(config_path).exists() else None
    return load_config(path, **{**(overrides or {}), "model": GPU_DEFAULT_MODEL, "recipe": GPU_RECIPE})


# Cards with this much memory train the 16-bit recipe faster, and merge it exactly.
SIXTEEN_BIT_GIB = 38
SIXTEEN_BIT_RECIPE = "mistral-7b-lora-16bit"


def describe_recipe_for(cfg, report: dict) -> str:
    """Notebook 00: the recipe the knobs start from (each value with why), and on a large card the recipe
    that suits it better."""
    from ..config import recipe_of
    from ..recipes import describe_recipe

    text = describe_recipe(*recipe_of(cfg))
    if report.get("cuda_available") and report["memory_gib"] >= SIXTEEN_BIT_GIB and cfg.recipe == "auto":
        text += (f"\nThis card has {report['memory_gib']} GiB: recipe {SIXTEEN_BIT_RECIPE} (16-bit LoRA) fits, trains "
                 f"faster per step and merges exactly. Use it with overrides = {{\"recipe\": \"{SIXTEEN_BIT_RECIPE}\"}}.")
    return text


def describe_fit(cfg, report: dict, config_path: str | None = None, overrides: dict | None = None) -> str:
    """Whether Mistral 7B fits with the user's knobs (mistral_config), on the card found and the usual ones."""
    cfg = mistral_config(cfg, config_path, overrides)
    found = (report["gpu"], report["memory_gib"]) if report.get("cuda_available") else None
    rows = fit_table(cfg, found)
    lines = [f"Will it fit? Mistral 7B with this config (load_in_4bit {cfg.load_in_4bit}, gradient_checkpointing "
             f"{cfg.gradient_checkpointing}, {tokens_per_step(cfg)} tokens per step = "
             f"{cfg.per_device_train_batch_size} x {cfg.max_seq_length}) needs about {rows[0]['needs GiB']} GiB:"]
    for r in rows:
        lines.append(f"  {r['GPU']:<12} {r['memory GiB']:>5} GiB  {'fits' if r['fits'] == 'yes' else 'does not fit'}"
                     + (f"; lower: {r['lower']}" if r.get("lower") else ""))
    lines.append("  (peak reserved memory = floor + slope x tokens per step, fitted to the H100 measurements in "
                 "docs/benchmark.md, plus 0.5 GiB of CUDA context; 5 % of the card kept free)")
    return "\n".join(lines)


def attention_backend() -> tuple[str, str]:
    """(backend, why): the attention kernels Unsloth will use on this machine."""
    if not has_cuda():
        return "SDPA", ("no CUDA GPU: PyTorch's scaled_dot_product_attention on the CPU (xformers and "
                        "flash-attention are GPU-only)")
    from ..model.load import import_unsloth

    import_unsloth()
    import torch
    from unsloth.utils import attention_dispatch as dispatch

    if dispatch.HAS_FLASH_ATTENTION:
        return "flash-attention", f"flash_attn {_version('flash_attn')} is installed and runs here; Unsloth prefers it"
    if dispatch.HAS_XFORMERS:
        packed = getattr(dispatch, "_NATIVE_BEATS_XFORMERS", False) and getattr(dispatch, "_SDPA_PACKED_SEGMENTS", False)
        return "xformers", (f"xformers {_version('xformers')} is installed for torch {torch.__version__} and flash_attn "
                            f"is not" + ("; packed (padding-free) batches use PyTorch's variable-length SDPA, which "
                                         "Unsloth measured faster on this GPU" if packed else ""))
    why = ("xformers is not installed (no wheel for this torch, or a CPU runtime)" if _version("xformers") is None
           else "xformers is installed but its kernels do not run on this GPU")
    return "SDPA", f"{why}, and flash_attn is not installed: PyTorch's scaled_dot_product_attention"


def check() -> dict:
    import torch

    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": has_cuda(),
        "unsloth": _version("unsloth"),
        "transformers": _version("transformers"),
        "trl": _version("trl"),
        "peft": _version("peft"),
        "bitsandbytes": _version("bitsandbytes"),
        "xformers": _version("xformers"),
        "nvcc": _run(["nvcc", "--version"]),
        "nvidia_smi": _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]),
    }
    report["attention"], report["attention_why"] = attention_backend()
    if report["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        total = props.total_memory / 2**30
        bf16 = precision() == "bf16"
        report.update(gpu=props.name, gpus=torch.cuda.device_count(), memory_gib=round(total, 1),
                      compute_capability=f"{props.major}.{props.minor}", bf16=bf16)
    return report


def describe_report(report: dict) -> str:
    lines = [f"Python {report['python']}, torch {report['torch']} (CUDA build {report['torch_cuda'] or 'none'}), "
             f"Unsloth {report['unsloth'] or 'not installed'}, transformers {report['transformers']}, "
             f"TRL {report['trl']}, PEFT {report['peft']}, bitsandbytes {report['bitsandbytes']}."]
    lines.append("nvcc: " + (report["nvcc"].splitlines()[-1] if report["nvcc"] else "not found"))
    lines.append(f"Attention: {report['attention']} ({report['attention_why']}).")
    lines.append("nvidia-smi: " + (report["nvidia_smi"] or "not found"))
    if not report["cuda_available"]:
        lines.append("No CUDA GPU: the embedded SmolLM2-135M-Instruct will be used, on the CPU. Everything runs, "
                     "slowly and with a small model; for Mistral 7B switch to a GPU runtime "
                     "(Colab: Runtime > Change runtime type > T4/L4/A100 GPU).")
        return "\n".join(lines)
    lines.append(f"GPU: {report['gpu']} x{report['gpus']}, {report['memory_gib']} GiB, compute capability "
                 f"{report['compute_capability']}, bf16 {'yes' if report['bf16'] else 'no'}.")
    return "\n".join(lines)
