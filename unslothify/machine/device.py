"""Facts about the machine: whether there is a CUDA GPU, the precision it trains in, its name, and its memory
high-water mark. One place, so loading, training, the merge and the estimates agree."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path


# The GPU memory every process of a run may take, in GiB (a knob, gpu_memory_gib, sets it for the processes a
# run starts; set it yourself on a shared card). Applied with torch's per-process fraction before anything is
# allocated, so a 40 GB card can rehearse a 15 GB one.
MEMORY_CAP_ENV = "UNSLOTHIFY_GPU_MEMORY_GIB"
CUDA_CONTEXT_GIB = 0.6  # what a process's CUDA context takes on the card, beyond torch's allocations


def memory_cap_gib() -> float | None:
    value = os.environ.get(MEMORY_CAP_ENV, "").strip()
    return float(value) if value and float(value) > 0 else None


def apply_memory_cap(gib: float | None = None) -> float | None:
    """Cap this process's GPU memory at `gib` (default: $UNSLOTHIFY_GPU_MEMORY_GIB); returns the cap, or None.
    Child processes inherit the variable: a run's checks honour the cap too (each takes what is left)."""
    gib = gib if gib is not None else memory_cap_gib()
    if not gib or not has_cuda():
        return None
    import torch

    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib / total))
    return gib


def gpu_memory_left_gib() -> float | None:
    """What another process may still take on this GPU: the driver's free memory, and under a cap, the cap less
    what this process holds. None without a GPU."""
    if not has_cuda():
        return None
    import torch

    free = torch.cuda.mem_get_info()[0] / 2**30
    cap = memory_cap_gib()
    # under a cap, each process's CUDA context (~0.6 GiB, outside torch's count) is paid out of it too: this
    # one's and the next one's
    return min(free, cap - torch.cuda.memory_reserved() / 2**30 - 2 * CUDA_CONTEXT_GIB) if cap else free


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


def loads_in_4bit(cfg) -> bool:
    """Whether the base is loaded in 4-bit: load_in_4bit, on a GPU only (a CPU trains in 16 bits)."""
    return bool(cfg.load_in_4bit and has_cuda())


def arithmetic(cfg) -> str:
    """Which arithmetic the model answers in, for the keys of what is cached per model (the base model's answers,
    the retention filter): 'cpu', 'cuda', or 'cuda-4bit' where the base is loaded in 4-bit. A 4-bit base answers
    differently from a 16-bit one (the embedded model on an H100: 44 of eval/general.jsonl's 61 against 60), so
    answers cached for one must not stand in for the other."""
    if not has_cuda():
        return "cpu"
    return "cuda-4bit" if loads_in_4bit(cfg) else "cuda"


def machine() -> str:
    """'NVIDIA H200' or 'CPU AMD EPYC ..., 2 cores'."""
    if has_cuda():
        import torch

        return torch.cuda.get_device_name(0)
    name = platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {name}, {os.cpu_count()} cores"


def device_name() -> str:
    """The device a version was trained on, for its manifest."""
    import torch

    if has_cuda():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def is_out_of_memory(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def free_cuda_memory():
    import gc

    gc.collect()
    if has_cuda():
        import torch

        torch.cuda.empty_cache()


def reset_peak_memory():
    if has_cuda():
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> tuple[float, str]:
    if has_cuda():
        import torch

        return torch.cuda.max_memory_reserved() / 2**30, "GPU memory reserved (peak)"
    # ru_maxrss is KiB on Linux: the process's resident high-water mark, not reset between calls.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process RSS (peak)"
