"""What this machine has, and the settings that suit it (notebook 00)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() or None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def recommend(total_gib: float, bf16: bool) -> dict:
    """Settings for Mistral 7B by GPU memory, from the H100 benchmark in docs/benchmark.md: padding-free
    packing with 4096 tokens per step (per_device_train_batch_size rows of max_seq_length tokens) on every
    card; 16-bit LoRA where its ~15 GB of weights fit (as fast as 4-bit there, and merges exactly); gradient
    checkpointing off only where the activations fit (31 GiB peak measured at 4096 tokens per step)."""
    if total_gib >= 70:
        rec = {"load_in_4bit": False, "gradient_checkpointing": False, "per_device_train_batch_size": 2,
               "max_seq_length": 2048}
        why = "80 GB class: 16-bit LoRA without gradient checkpointing (about 31 GiB at 4096 tokens per step)."
    elif total_gib >= 38:
        rec = {"load_in_4bit": False, "gradient_checkpointing": True, "per_device_train_batch_size": 2,
               "max_seq_length": 2048}
        why = "40-48 GB class (A100 40GB, L40S, A6000): 16-bit LoRA with gradient checkpointing (about 15 GiB)."
    elif total_gib >= 22:
        rec = {"load_in_4bit": True, "gradient_checkpointing": True, "per_device_train_batch_size": 2,
               "max_seq_length": 2048}
        why = "24 GB class (L4, A10, RTX 3090/4090): 4-bit QLoRA with gradient checkpointing (about 6 GiB)."
    elif total_gib >= 14:
        rec = {"load_in_4bit": True, "gradient_checkpointing": True, "per_device_train_batch_size": 2,
               "max_seq_length": 1024}
        why = "16 GB class (T4, V100 16GB): 4-bit QLoRA, 2048 tokens per step, gradient checkpointing on."
    else:
        rec = {"load_in_4bit": True, "gradient_checkpointing": True, "per_device_train_batch_size": 1,
               "max_seq_length": 1024}
        why = "Under 14 GB: 4-bit QLoRA at 1024 tokens per step may just fit a 7B model; consider a smaller model."
    rec["packing"] = True
    # bitsandbytes' 8-bit AdamW cost 0.15-0.3 s per optimizer step on the H100 (0.53-0.62 vs 0.38 s at 4096 tokens);
    # for LoRA its memory saving is ~0.25 GB, so fused AdamW wins wherever the GPU runs it.
    rec["optim"] = "adamw_torch_fused"
    rec["precision"] = "bf16" if bf16 else "fp16 (no bf16 on this GPU)"
    return {"settings": rec, "why": why}


def check() -> dict:
    import torch

    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "unsloth": _version("unsloth"),
        "transformers": _version("transformers"),
        "trl": _version("trl"),
        "peft": _version("peft"),
        "bitsandbytes": _version("bitsandbytes"),
        "nvcc": _run(["nvcc", "--version"]),
        "nvidia_smi": _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        total = props.total_memory / 2**30
        bf16 = torch.cuda.is_bf16_supported()
        report.update(gpu=props.name, gpus=torch.cuda.device_count(), memory_gib=round(total, 1),
                      compute_capability=f"{props.major}.{props.minor}", bf16=bf16, recommendation=recommend(total, bf16))
    return report


def describe(report: dict) -> str:
    lines = [f"Python {report['python']}, torch {report['torch']} (CUDA build {report['torch_cuda'] or 'none'}), "
             f"Unsloth {report['unsloth'] or 'not installed'}, transformers {report['transformers']}, "
             f"TRL {report['trl']}, PEFT {report['peft']}, bitsandbytes {report['bitsandbytes']}."]
    lines.append("nvcc: " + (report["nvcc"].splitlines()[-1] if report["nvcc"] else "not found"))
    lines.append("nvidia-smi: " + (report["nvidia_smi"] or "not found"))
    if not report["cuda_available"]:
        lines.append("No CUDA GPU: the embedded SmolLM2-135M-Instruct will be used, on the CPU. Everything runs, "
                     "slowly and with a small model; for Mistral 7B switch to a GPU runtime "
                     "(Colab: Runtime > Change runtime type > T4/L4/A100 GPU).")
        return "\n".join(lines)
    rec = report["recommendation"]
    lines.append(f"GPU: {report['gpu']} x{report['gpus']}, {report['memory_gib']} GiB, compute capability "
                 f"{report['compute_capability']}, bf16 {'yes' if report['bf16'] else 'no'}.")
    lines.append(f"Recommended for Mistral 7B: {rec['why']}")
    lines.append("  " + ", ".join(f"{k}: {v}" for k, v in rec["settings"].items()))
    return "\n".join(lines)
