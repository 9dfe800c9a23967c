"""Checking an export against the adapter it came from, each side loaded in its own process.

The reference is the adapter on its base exactly as trained, computed in float32 by plain transformers +
PEFT (no Unsloth): the same 4-bit weights where the base was 4-bit (dequantised in float32 rather than
bfloat16), the same LoRA weights. The export is loaded by plain transformers alone (no Unsloth, no PEFT).
So the check measures the merge and its 16-bit storage, not the difference between Unsloth's bfloat16
kernels and float32 arithmetic, which on a real 30-layer model is larger than the merge error itself
(docs/benchmark.md, "The merge check on a real model").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ExportError
from ..fsutil import PROJECT_DIR

SAMPLE_PROMPTS = ["What are Swedish meatballs called in Swedish?", "Give me one tip for juicy meatballs.",
                  "What is the capital of France?"]
# Above this many parameters both sides run in bfloat16 (a float32 7B needs 28 GB).
FLOAT32_LIMIT = 2e9


@dataclass
class MergeCheck:
    max_abs_diff: float
    max_abs_logit: float
    relative: float
    top1_agreement: float
    tolerance: float
    greedy_equal: int
    n_prompts: int
    # the exported model's own outputs, kept for the GGUF check (which then need not load it again)
    outputs: dict | None = field(default=None, repr=False, compare=False)
    # the checks' wall ("both") and each side's seconds in its fresh process (imports, load, answers)
    seconds: dict | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.relative <= self.tolerance and self.top1_agreement >= 0.98

    def as_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "outputs"}, "ok": self.ok}

    def summary(self) -> str:
        return (f"max |logit difference| {self.max_abs_diff:.4g} (largest logit {self.max_abs_logit:.3g}, "
                f"relative {self.relative:.2e} <= tolerance {self.tolerance:.0e}: {'ok' if self.ok else 'FAILED'}); "
                f"top-1 token agreement {self.top1_agreement:.1%}; greedy continuations identical for "
                f"{self.greedy_equal}/{self.n_prompts} prompts")


def is_4bit(model) -> bool:
    base = getattr(model, "get_base_model", lambda: model)()
    return any(hasattr(p, "quant_state") for p in base.parameters())


def merge_tolerance(model) -> float:
    """Relative tolerance on logits. Storing a float32 merge once in bfloat16 moved logits by up to 1.5 % of
    the largest logit on the embedded model; a 4-bit base's merge stores dequantised weights the same way."""
    return 5e-2 if is_4bit(model) else 3e-2


def sample_prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    return [list(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                               add_generation_prompt=True, return_dict=True)["input_ids"])
            for p in prompts]


def _child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR), os.environ.get("PYTHONPATH", "")])}


def _side(args: list[str]) -> str:
    return "reference" if "--adapter" in args else "export"


class ChecksAhead:
    """The merge check's two fresh processes, started before the export needs them: each imports what its side
    needs (the reference PEFT too) and waits for its job on stdin. Their imports were 15 of the 23 s the two
    checks took side by side on an H200 (2026-12-07, docs/measurements.md); `run` starts them when training
    begins on a GPU, where training leaves the host's cores idle (on a CPU they would take their seconds from
    training). One not used ends at close(), or when this process ends (its stdin closes).

        with ChecksAhead() as ahead:
            ...                                                       # training
            export_merged(model, tokenizer, out, checks_ahead=ahead)
    """

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="unslothify-checks-"))
        self.waiting: dict[str, tuple[subprocess.Popen, Path]] = {}
        try:
            for side in ("reference", "export"):
                log = self.folder / f"{side}.stderr"
                with open(log, "w") as err:
                    proc = subprocess.Popen([sys.executable, "-m", "unslothify.export.plain_check", "--wait", side],
                                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                            env=_child_env(), text=True)
                self.waiting[side] = (proc, log)
        except BaseException:
            self.close()
            raise

    def take(self, side: str) -> tuple[subprocess.Popen, Path] | None:
        """The process waiting for `side`'s job (once), or None where there is none or it has ended (killed while
        training ran, say): the check then starts a fresh one, which fails with its own log if it must."""
        waiting = self.waiting.pop(side, None)
        if waiting is not None and waiting[0].poll() is not None:
            _end(waiting[0])
            return None
        return waiting

    def close(self):
        for proc, _ in self.waiting.values():
            _end(proc)
        self.waiting.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _run_plain_check(args: list[str], what: str) -> dict:
    return _run_plain_checks([(args, what)])[0]


def _run_plain_checks(jobs: list[tuple[list[str], str]], need_gib: float | None = None,
                      ahead: ChecksAhead | None = None) -> list[dict]:
    """Run plain_check in fresh processes, one per (args, what), on what GPU memory this process leaves (the
    card's free memory, and under a cap, the cap less what this process holds): a model that does not fit there
    is spread to RAM. Where `need_gib` (what all of them take together) fits in what is left of the GPU, or of
    the RAM on a CPU, they run side by side, each on its share: each process spends most of its seconds
    importing torch and transformers. Otherwise one after the other, each on all that is left. A side whose
    process was started `ahead` (imports done) gets its job sent there."""
    from ..machine.device import CUDA_CONTEXT_GIB, MEMORY_CAP_ENV, free_cuda_memory, gpu_memory_left_gib, memory_cap_gib
    from .plain_check import ram_left_gib
    import torch

    free_cuda_memory()  # cached blocks this process no longer uses go back first
    room = gpu_memory_left_gib()
    at_once = need_gib is not None and len(jobs) > 1 and need_gib + len(jobs) * CUDA_CONTEXT_GIB <= (
        room if room is not None else ram_left_gib())
    results: dict[int, dict] = {}
    running: dict[int, tuple] = {}
    with tempfile.TemporaryDirectory() as td:
        try:
            for i, (args, what) in enumerate(jobs):
                left = room / len(jobs) if at_once and room is not None else gpu_memory_left_gib()
                out, log = Path(td) / f"out{i}.pt", Path(td) / f"stderr{i}.txt"
                argv = [*args, "--out", str(out)]
                if left is not None:
                    argv += ["--max-gpu-gib", f"{max(0.5, left - 0.5):.2f}"]  # room for activations
                env = {}
                if left is not None and memory_cap_gib():
                    env[MEMORY_CAP_ENV] = f"{max(0.5, left):.2f}"
                if at_once:  # each its share of the cores: two checks of 2 threads on 2 cores took 23-29 s, of 1 14 s
                    env["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // len(jobs)))
                waiting = ahead.take(_side(args)) if ahead is not None else None
                if waiting is not None:
                    running[i] = (waiting[0], out, waiting[1], what)
                    try:
                        waiting[0].stdin.write(json.dumps({"argv": argv, "env": env}) + "\n")
                    except OSError:  # it ended since it was taken: its log and exit code say why, below
                        pass
                    finally:
                        _close_quietly(waiting[0].stdin)
                else:
                    # stderr to a file: a pipe nobody reads while another process is awaited could fill and stall it
                    with open(log, "w") as err:
                        running[i] = (subprocess.Popen([sys.executable, "-m", "unslothify.export.plain_check", *argv],
                                                       stdout=subprocess.DEVNULL, stderr=err,
                                                       env={**_child_env(), **env}), out, log, what)
                if not at_once:
                    running[i][0].wait()
                    results[i] = _finished(*running.pop(i))
            while running:  # side by side: the first to end is read first, and a failure ends the others
                for j, job in list(running.items()):
                    if job[0].poll() is not None:
                        results[j] = _finished(*running.pop(j))
                time.sleep(0.1 if running else 0)
        finally:
            for proc, *_ in running.values():  # a check that failed, or an interrupt: the others end with it
                proc.kill()
                proc.wait()
    return [results[i] for i in range(len(jobs))]


def _finished(proc, out: Path, log: Path, what: str) -> dict:
    import torch

    if proc.returncode != 0:
        raise ExportError(f"Plain transformers could not load {what} (its process ended with exit code "
                          f"{proc.returncode}):\n{log.read_text()[-3000:]}")
    return torch.load(out)


def _end(proc: subprocess.Popen):
    proc.kill()
    proc.wait()
    _close_quietly(proc.stdin)


def _close_quietly(stream):
    try:
        if stream is not None:
            stream.close()
    except OSError:  # a pipe whose reader has gone: nothing left to flush
        pass


def _prompts_file(prompt_ids: list[list[int]], folder: Path) -> Path:
    path = folder / "prompts.json"
    path.write_text(json.dumps(prompt_ids))
    return path


def plain_transformers_outputs(model_dir: Path, prompt_ids: list[list[int]], gguf_file: str | None = None,
                               dtype: str | None = None) -> dict:
    """Logits and greedy continuations of an exported model, from a fresh process with plain transformers (in
    float32 up to FLOAT32_LIMIT parameters, else in the precision the card has)."""
    dtype = dtype or dtype_for(exported_params(Path(model_dir)))
    with tempfile.TemporaryDirectory() as td:
        return _run_plain_check(*_export_job(model_dir, _prompts_file(prompt_ids, Path(td)), dtype, gguf_file))


def _export_job(model_dir: Path, prompts: Path, dtype: str, gguf_file: str | None = None) -> tuple[list[str], str]:
    """plain_check's arguments for an exported model (a GGUF file in its folder where given)."""
    args = [str(model_dir), str(prompts), "--dtype", dtype] + (["--gguf", gguf_file] if gguf_file else [])
    return args, f"{model_dir}{' / ' + gguf_file if gguf_file else ''}"


def reference_outputs(model, prompt_ids: list[list[int]], dtype: str = "float32") -> dict:
    """Logits and greedy continuations of the adapter on its base, as trained: the adapter is saved from
    memory and loaded with its base by plain transformers + PEFT in another process."""
    with tempfile.TemporaryDirectory() as td:
        return _run_plain_check(*_reference_job(model, _prompts_file(prompt_ids, Path(td)), dtype, Path(td)))


def _reference_job(model, prompts: Path, dtype: str, folder: Path) -> tuple[list[str], str]:
    """plain_check's arguments for the adapter on its base (the adapter saved into folder)."""
    base = model.get_base_model()
    quantization = getattr(base.config, "quantization_config", None)
    if quantization is not None and not isinstance(quantization, dict):
        quantization = quantization.to_dict()
    base_path = model.peft_config["default"].base_model_name_or_path
    adapter = folder / "adapter"
    model.save_pretrained(str(adapter))
    trained_dtype = next(p for p in base.parameters() if p.is_floating_point() and not hasattr(p, "quant_state"))
    args = [base_path, str(prompts), "--adapter", str(adapter), "--dtype", dtype,
            "--load-dtype", str(trained_dtype.dtype)]
    if quantization and is_4bit(model):
        args += ["--quantization", json.dumps(quantization, default=lambda o: str(o).removeprefix("torch."))]
    return args, f"{base_path} with its adapter"


def compare(ref: dict, other: dict, tolerance: float) -> MergeCheck:
    max_diff = max_logit = 0.0
    agree = total = 0
    for a, b in zip(ref["logits"], other["logits"]):
        a, b = a.float(), b.float()
        max_diff = max(max_diff, (a - b).abs().max().item())
        max_logit = max(max_logit, a.abs().max().item())
        ta, tb = a.argmax(-1), b.argmax(-1)
        # A flip between two tokens the reference itself scores within 1 % of its largest logit of each other
        # (a near-tie, e.g. margin 0.006 of 40.9 in a chat-template position) is rounding, not a wrong merge.
        margin = a.gather(-1, ta[:, None])[:, 0] - a.gather(-1, tb[:, None])[:, 0]
        agree += ((ta == tb) | (margin <= 1e-2 * a.abs().max())).sum().item()
        total += a.shape[0]
    greedy_equal = sum(same_until_eos(x, y) for x, y in zip(ref["greedy"], other["greedy"]))
    return MergeCheck(max_diff, max_logit, max_diff / max(max_logit, 1e-9), agree / max(total, 1), tolerance,
                      greedy_equal, len(ref["logits"]))


def same_until_eos(a: list[int], b: list[int]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def model_params(model) -> int:
    """Parameters of the model (4-bit packed weights counted unpacked)."""
    base = getattr(model, "get_base_model", lambda: model)()
    return sum(p.numel() * (2 if hasattr(p, "quant_state") else 1) for p in base.parameters())


def exported_params(model_dir: Path) -> int:
    """Parameters of an exported 16-bit model, from its safetensors' size (2 bytes each)."""
    return sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors")) // 2


def dtype_for(params: int) -> str:
    """float32 where a model that size fits (the check then measures the merge, not rounding); above
    FLOAT32_LIMIT the precision the card computes in: bfloat16, or float16 on a card without it (a T4)."""
    from ..machine.device import precision

    if params <= FLOAT32_LIMIT:
        return "float32"
    return "float16" if precision() == "fp16" else "bfloat16"


def verify_merged(model, tokenizer, merged_dir: Path, prompt_ids: list[list[int]],
                  ahead: ChecksAhead | None = None) -> MergeCheck:
    """The export in merged_dir against the adapter on its base (each in a fresh process, or in those started
    `ahead`)."""
    params = model_params(model)
    dtype = dtype_for(params)
    # side by side where both fit: the reference at 4 bytes a parameter (its base loads as it was trained, then
    # computes in dtype), the export at dtype's size, and a quarter more for activations
    need_gib = params * (4 + (4 if dtype == "float32" else 2)) * 1.25 / 2**30
    with tempfile.TemporaryDirectory() as td:
        prompts = _prompts_file(prompt_ids, Path(td))
        jobs = [_reference_job(model, prompts, dtype, Path(td)), _export_job(merged_dir, prompts, dtype)]
        started = time.perf_counter()
        ref, plain = _run_plain_checks(jobs, need_gib=need_gib, ahead=ahead)
        wall = time.perf_counter() - started
    check = compare(ref, plain, merge_tolerance(model))
    check.outputs = plain
    check.seconds = {"both": round(wall, 1), "reference": ref.get("seconds"), "export": plain.get("seconds")}
    return check
