"""Training-speed benchmark on a Mistral-7B-shaped random model with domain.jsonl's real token lengths.

    python scripts/benchmark.py lengths                 # here: token lengths of domain.jsonl -> .gpu-assets/
    python scripts/benchmark.py run --out DIR [--layers 32] [--quick | --plan final|lean|profile] [--deadline S]
                                                        # on the GPU machine (gpu_check.sh bench / bench-final ...)

`run` measures a bf16 matrix-product peak, writes a random-initialised Mistral 7B (hidden 4096, MLP 14336,
32 layers, 32 heads / 8 KV heads, vocab 32768; bf16 safetensors) to local disk, then trains each recipe in
its own process (`worker`), one process per way of loading the model:

  unsloth-4bit   (a) seed recipe, (b) Unsloth notebook defaults, ours on a 4-bit base
  peft-4bit      (c) transformers + PEFT + bitsandbytes QLoRA; this process never imports unsloth
  unsloth-16bit  (d) ours: padding-free packing, 16-bit LoRA, token budgets per step, optimizers
  unsloth-16bit-nogc   the same without gradient checkpointing
(--plan final: only the chosen 80 GB recipe and its neighbours; lean: low-VRAM packed rows beside the baselines;
profile: torch.profiler over two steps, with BENCH_PROFILE_DIR set.) Results: docs/benchmark.md.

Training items are synthetic token ids with exactly the lengths (and answer/prompt split) of domain.jsonl's
450 training items, tokenised here by our data code with the embedded SmolLM2 tokenizer and its ChatML
template (see `lengths`). Each recipe runs WARMUP (2) optimizer steps, then MEASURE (6) timed steps (CUDA
synchronised at each step end); tokens are counted in the data collator (non-padding tokens only).

  tokens/s          non-padding tokens in the timed steps / their wall time
  epoch time        (tokens of the 450 training items) / tokens/s: an extrapolation, not a timed epoch
  MFU               model FLOPs / time / measured bf16 peak, with model FLOPs per non-padding token =
                    4 * N_linear (forward + input gradient through every frozen linear, lm_head included)
                    + 6 * N_lora (forward, input and weight gradient of the adapters)
                    + attention 3 * 4 * layers * hidden * (L+1)/2 per token of an item of length L
                    (recompute by gradient checkpointing and padding are not useful work and not counted)
  peak VRAM         torch.cuda.max_memory_allocated / max_memory_reserved over the timed run, weights included
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # the package, and benchmark_recipes beside this script

ASSETS = ROOT / ".gpu-assets"
MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=32768, max_position_embeddings=32768,
                  rope_theta=1e6, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None)
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "UNSLOTH_DISABLE_STATISTICS": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


# ----------------------------------------------------------------------------------------------------------
# lengths (runs here, on the CPU)
# ----------------------------------------------------------------------------------------------------------

def cmd_lengths(args):
    from unslothify.config import load_config
    from unslothify.data.tokens import length_stats, tokenize_item
    from unslothify.data.items import read_jsonl_items, split_items
    from unslothify.model.load import load_tokenizer

    cfg = load_config(None, model="embedded")
    tok = load_tokenizer(cfg)
    items, _ = read_jsonl_items(args.data)
    train, val = split_items(items, cfg.validation_split, cfg.seed)

    def rows(part):
        out = []
        for it in part:
            r = tokenize_item(tok, it, cfg.system_prompt)
            mask = r["completion_mask"]
            first = mask.index(1)
            assert all(mask[first:]), "single-turn items: the answer is the tail"
            out.append([len(mask), len(mask) - first])
        return out

    data = {"source": args.data, "tokenizer": "embedded SmolLM2-135M-Instruct (BPE, vocab 49152), ChatML "
            "template with its default system prompt, via unslothify.data.tokens.tokenize_item",
            "format": "[tokens, answer tokens] per item", "train": rows(train), "validation": rows(val)}
    data["train_stats"] = length_stats([r[0] for r in data["train"]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data))
    print(f"{out}: {len(data['train'])} train items, {data['train_stats']}")


# ----------------------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------------------

def linear_params(c: dict) -> int:
    h, i, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
    return L * per_layer + h * c["vocab_size"]  # + lm_head


def lora_params(c: dict, r: int) -> int:
    h, i, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
    return L * sum(r * (a + b) for a, b in shapes)


def flops_per_token(c: dict, lengths: list[int], r: int = 16) -> dict:
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    width = c["num_attention_heads"] * hd
    attn = sum(3 * 4 * c["num_hidden_layers"] * width * n * (n + 1) / 2 for n in lengths) / sum(lengths)
    n_lin, n_lora = linear_params(c), lora_params(c, r)
    return {"linear_params": n_lin, "lora_params": n_lora, "attention_per_token": attn,
            "per_token": 4 * n_lin + 6 * n_lora + attn}


# ----------------------------------------------------------------------------------------------------------
# the run (on the GPU machine)
# ----------------------------------------------------------------------------------------------------------

def matmul_peak(n: int = 8192, reps: int = 30) -> float:
    import torch

    torch.manual_seed(0)
    sets = [(torch.randn(n, n, device="cuda", dtype=torch.bfloat16),
             torch.randn(n, n, device="cuda", dtype=torch.bfloat16)) for _ in range(3)]
    out = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for a, b in sets:
        torch.matmul(a, b, out=out)
    torch.cuda.synchronize()
    times = []
    for k in range(reps):
        a, b = sets[k % 3]
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        torch.matmul(a, b, out=out)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    del sets, out
    torch.cuda.empty_cache()
    return 2 * n ** 3 / statistics.median(times)


def build_model(target: Path, tok_dir: Path, layers: int):
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = MistralConfig(**{**MISTRAL_7B, "num_hidden_layers": layers}, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    t = time.perf_counter()
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = MistralForCausalLM(cfg)
    torch.set_default_dtype(prev)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(target, max_shard_size="4GB")
    tok.save_pretrained(target)
    del model
    torch.cuda.empty_cache()
    print(f"model: {n / 1e9:.3f} B parameters written to {target} in {time.perf_counter() - t:.0f} s", flush=True)
    return n


def plan(name: str | bool) -> list[dict]:
    """Workers in priority order, and their recipes. kind: seed | notebook | plain | ours."""
    ours = lambda name, rows, row=2048, **kw: {"name": name, "kind": "ours", "rows": rows, "row": row, **kw}  # noqa
    w4 = {"worker": "unsloth-4bit", "load_in_4bit": True, "gc": True, "cap": 240, "recipes": [
        {"name": "(a) seed: pad 512, 2x4, 4-bit", "kind": "seed"},
        {"name": "(b) Unsloth notebook: 2x4, 4-bit", "kind": "notebook"},
        ours("ours 4-bit, packed 4x2048", 4),
    ]}
    wp = {"worker": "peft-4bit", "load_in_4bit": True, "gc": True, "cap": 120, "recipes": [
        {"name": "(c) transformers+PEFT QLoRA: 2x4", "kind": "plain"}]}
    w16 = {"worker": "unsloth-16bit", "load_in_4bit": False, "gc": True, "cap": 160, "recipes": [
        ours("ours 16-bit, packed 4x2048", 4),
        ours("ours 16-bit, packed 2x2048", 2),
        ours("ours 16-bit, packed 8x2048", 8),
        ours("ours 16-bit, packed 1x2048", 1),
        ours("ours 16-bit, packed 4x2048, fused AdamW", 4, optim="adamw_torch_fused"),
    ]}
    w16n = {"worker": "unsloth-16bit-nogc", "load_in_4bit": False, "gc": False, "cap": 140, "recipes": [
        ours("ours 16-bit no-GC, packed 4x2048", 4),
        ours("ours 16-bit no-GC, packed 2x2048", 2),
        ours("ours 16-bit no-GC, packed 8x2048", 8),
    ]}
    if name == "lean":
        # Two questions in one run: can a packed 4-bit recipe stay within the VRAM of Unsloth's notebook defaults
        # (measured beside it) and still be >= 1.3x faster; and does a larger step (8192 tokens, fused AdamW,
        # no checkpointing) lift MFU towards 50 %, where host-side work per step is spread over more tokens.
        return [{"worker": "unsloth-4bit", "load_in_4bit": True, "gc": True, "cap": 380, "recipes": [
                    {"name": "(a) seed: pad 512, 2x4, 4-bit", "kind": "seed"},
                    {"name": "(b) Unsloth notebook: 2x4, 4-bit", "kind": "notebook"},
                    ours("ours 4-bit, packed 4x2048", 4),
                    ours("ours 4-bit, packed 1x2048", 1),
                    # Rows of 1000 and 512 tokens, not 1024: Unsloth's SFTTrainer treats max_length equal to TRL's
                    # default (1024) as unset and packs to the model's max_seq_length (2048 here) instead.
                    ours("ours 4-bit, packed 2x2048", 2),
                    ours("ours 4-bit, packed 1x1000", 1, row=1000),
                    ours("ours 4-bit, packed 1x512", 1, row=512),
                    ours("ours 4-bit, packed 2x512", 2, row=512),
                ]},
                {"worker": "unsloth-16bit-nogc", "load_in_4bit": False, "gc": False, "cap": 200, "recipes": [
                    ours("ours 16-bit no-GC, packed 2x2048, fused AdamW", 2, optim="adamw_torch_fused"),
                    ours("ours 16-bit no-GC, packed 4x2048, fused AdamW", 4, optim="adamw_torch_fused"),
                    ours("ours 16-bit no-GC, packed 3x2048, fused AdamW", 3, optim="adamw_torch_fused"),
                ]}]
    if name == "profile":  # where a step's time goes (BENCH_PROFILE_DIR set by gpu_check.sh bench-profile)
        return [{"worker": "unsloth-16bit-nogc", "load_in_4bit": False, "gc": False, "cap": 200, "recipes": [
                    ours("ours 16-bit no-GC, packed 4x2048, fused AdamW", 4, optim="adamw_torch_fused")]},
                {"worker": "unsloth-4bit", "load_in_4bit": True, "gc": True, "cap": 200, "recipes": [
                    ours("ours 4-bit, packed 4x2048", 4)]}]
    if name == "final":  # the 80 GB recipe (recipes/mistral-7b-lora-16bit.yaml) and the config default's row shape
        return [{"worker": "unsloth-16bit-nogc", "load_in_4bit": False, "gc": False, "cap": 170, "recipes": [
            ours("ours default (80 GB): 16-bit no-GC, packed 2x2048", 2),
            ours("ours 16-bit no-GC, packed 8x512", 8, row=512),
            ours("ours 16-bit no-GC, packed 2x2048, fused AdamW", 2, optim="adamw_torch_fused"),
        ]}]
    if name:
        for w in (w4, w16, w16n):
            w["recipes"] = w["recipes"][:2]
    return [w4, wp, w16, w16n]


def cmd_run(args):
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "benchmark.log"
    results_path = out / "benchmark.json"
    lengths = json.loads(Path(args.lengths).read_text())
    tok_dir = Path(args.tokenizer)
    started = time.time()
    props = torch.cuda.get_device_properties(0)
    peak = matmul_peak()
    print(f"device: {props.name}, {props.total_memory / 2**30:.1f} GiB; measured bf16 matmul peak "
          f"{peak / 1e12:.0f} TFLOP/s (8192^3, median of 30)", flush=True)
    shm = Path("/dev/shm")
    base = shm if shm.exists() and shutil.disk_usage(shm).free > 20 * 2**30 else Path(tempfile.gettempdir())
    model_dir = base / f"mistral7b-random-{args.layers}l"
    n_params = build_model(model_dir, tok_dir, args.layers)
    cfgd = {**MISTRAL_7B, "num_hidden_layers": args.layers}
    train_lengths = [n for n, _ in lengths["train"]]
    fl = flops_per_token(cfgd, train_lengths)
    meta = {"device": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "peak_flops": peak,
            "params": n_params, "flops": fl, "epoch_tokens": sum(train_lengths), "items": len(train_lengths),
            "layers": args.layers, "warmup": args.warmup, "measure": args.measure,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "lengths_source": lengths["tokenizer"],
            "packages": _versions()}
    results = []
    shared_cwd = Path(tempfile.gettempdir()) / "unslothify-bench-cwd"  # Unsloth's compiled cache, reused
    shared_cwd.mkdir(exist_ok=True)
    for w in plan(args.plan or args.quick):
        if args.only and w["worker"] not in args.only.split(","):
            continue
        spec = {**w, "model_dir": str(model_dir), "lengths": str(args.lengths), "warmup": args.warmup,
                "measure": args.measure}
        left = args.deadline - (time.time() - started) - 15
        if left < 60:
            print(f"worker {w['worker']}: skipped, {left:.0f} s left before the deadline", flush=True)
            results += [{"name": r["name"], "kind": r["kind"], "worker": w["worker"], "error": "not run (time)"}
                        for r in w["recipes"]]
            continue
        with tempfile.TemporaryDirectory() as td:
            res_file = Path(td) / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--spec", json.dumps(spec),
                   "--result", str(res_file)]
            t = time.perf_counter()
            with open(log, "a") as lf:
                lf.write(f"\n===== worker {w['worker']} =====\n")
                lf.flush()
                try:
                    proc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE},
                                          timeout=min(w["cap"] * args.cap_scale, left), cwd=shared_cwd)
                    rc = proc.returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
            got = json.loads(res_file.read_text()) if res_file.exists() else []
            done = {r["name"] for r in got}
            got += [{"name": r["name"], "kind": r["kind"], "worker": w["worker"], "error": f"not run (worker {rc})"}
                    for r in w["recipes"] if r["name"] not in done]
            print(f"worker {w['worker']}: rc {rc}, {len(got)} results, {time.perf_counter() - t:.0f} s", flush=True)
            for r in got:
                results.append(finish(r, meta))
                print(row_text(results[-1]), flush=True)
        results_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    meta["seconds"] = round(time.time() - started)
    results_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(report(meta, results))


def finish(r: dict, meta: dict) -> dict:
    if r.get("error"):
        return r
    tps = r["tokens"] / r["seconds"]
    r["tokens_per_s"] = tps
    r["epoch_s"] = meta["epoch_tokens"] / tps
    r["mfu"] = tps * meta["flops"]["per_token"] / meta["peak_flops"]
    r["updates_per_epoch"] = math.ceil(meta["items"] / r["items_per_update"]) if r.get("items_per_update") else None
    return r


def row_text(r: dict) -> str:
    if r.get("error"):
        return f"{r['name']}: FAILED {r['error'][:200]}"
    return (f"{r['name']}: {r['tokens_per_s']:.0f} tok/s, epoch {r['epoch_s']:.1f} s, MFU {r['mfu']:.1%}, "
            f"peak {r['max_allocated_gib']:.1f}/{r['max_reserved_gib']:.1f} GiB, pad {r['pad_share']:.0%}, "
            f"{r['items_per_update']:.0f} items/update, step {r['step_s']:.3f} s")


def report(meta: dict, results: list[dict]) -> str:
    ok = [r for r in results if not r.get("error")]
    lines = [f"\n{meta['device']} ({meta['memory_gib']} GiB), {meta['date']}; bf16 matmul peak "
             f"{meta['peak_flops'] / 1e12:.0f} TFLOP/s; model {meta['params'] / 1e9:.2f} B params "
             f"({meta['layers']} layers); epoch = {meta['items']} items, {meta['epoch_tokens']} tokens; "
             f"FLOPs/token {meta['flops']['per_token'] / 1e9:.2f} G",
             "| recipe | epoch (s) | tok/s | MFU | peak alloc / reserved GiB | padding | items/update | step (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in ok:
        lines.append(f"| {r['name']} | {r['epoch_s']:.1f} | {r['tokens_per_s']:.0f} | {r['mfu']:.1%} | "
                     f"{r['max_allocated_gib']:.1f} / {r['max_reserved_gib']:.1f} | {r['pad_share']:.0%} | "
                     f"{r['items_per_update']:.0f} | {r['step_s']:.3f} |")
    for r in results:
        if r.get("error"):
            lines.append(f"| {r['name']} | failed: {r['error'][:120]} | | | | | | |")
    ours = [r for r in ok if r["kind"] == "ours"]
    if ours:
        best = min(ours, key=lambda r: r["epoch_s"])
        lines.append(f"\nFastest of ours: {best['name']}. Ratios (epoch time of the recipe / ours; VRAM ours / recipe):")
        for r in ok:
            if r["kind"] != "ours":
                lines.append(f"  {r['name']}: {r['epoch_s'] / best['epoch_s']:.2f}x slower per epoch; "
                             f"ours uses {best['max_reserved_gib'] / r['max_reserved_gib']:.2f}x its reserved VRAM")
    return "\n".join(lines)


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "unsloth", "unsloth_zoo", "bitsandbytes", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------------------------------------
# worker: one way of loading the model, several recipes on it
# ----------------------------------------------------------------------------------------------------------

def synthetic_dataset(lengths: list[list[int]], vocab: int, seed: int = 0):
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for n, answer in lengths:
        ids = [rng.randrange(100, vocab - 100) for _ in range(n)]
        rows.append({"input_ids": ids, "completion_mask": [0] * (n - answer) + [1] * answer})
    return Dataset.from_list(rows)


class Counter:
    """Wraps the collator: non-padding and total tokens, items per micro-batch, in call order."""

    def __init__(self, collator):
        self.collator = collator
        self.batches: list[tuple[int, int, int]] = []

    def __call__(self, features):

        batch = self.collator(features)
        ids = batch["input_ids"]
        total = ids.numel()
        if batch.get("attention_mask") is not None:
            real = int(batch["attention_mask"].sum())
        else:
            real = total
        if batch.get("position_ids") is not None and batch.get("attention_mask") is None:
            items = int((batch["position_ids"] == 0).sum())
        else:
            items = ids.shape[0]
        self.batches.append((real, total, items))
        return batch


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _mem(kind: str) -> float:
    import torch

    if not torch.cuda.is_available():
        return 0.0
    return (torch.cuda.max_memory_allocated() if kind == "allocated" else torch.cuda.max_memory_reserved()) / 2**30


def step_timer():
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.ends = []
            self.losses = []

        def on_train_begin(self, args, state, control, **kw):
            _sync()
            self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            _sync()
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return Timer()


def step_profiler(name: str, first_step: int, steps: int = 2):
    """torch.profiler over `steps` optimizer steps from first_step; writes the top operators by device and by
    host time, and device-busy time per step against wall time per step, to $BENCH_PROFILE_DIR."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    out = Path(os.environ["BENCH_PROFILE_DIR"])
    out.mkdir(parents=True, exist_ok=True)

    class Profiler(TrainerCallback):
        prof = None
        t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == first_step and self.prof is None:
                _sync()
                self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.prof is not None and state.global_step == first_step + steps:
                _sync()
                wall = time.perf_counter() - self.t0
                self.prof.__exit__(None, None, None)
                ev = self.prof.key_averages()
                # Kernels only: an operator's own device time repeats that of the kernels it launched.
                device_us = sum(e.self_device_time_total for e in ev if e.device_type == DeviceType.CUDA)
                slug = "".join(c if c.isalnum() else "_" for c in name)[:60]
                text = [f"{name}: {steps} steps, wall {wall / steps:.3f} s per step, device busy "
                        f"{device_us / 1e6 / steps:.3f} s per step ({device_us / 1e6 / wall:.0%})",
                        ev.table(sort_by="self_device_time_total", row_limit=25),
                        ev.table(sort_by="self_cpu_time_total", row_limit=25)]
                (out / f"profile_{slug}.txt").write_text("\n\n".join(text))
                print(text[0], flush=True)
                self.prof = False

    return Profiler()


def cmd_worker(args):
    spec = json.loads(args.spec)
    results = []
    res_path = Path(args.result)

    def save():
        res_path.write_text(json.dumps(results))

    lengths = json.loads(Path(spec["lengths"]).read_text())["train"]
    import torch

    if spec["worker"] == "peft-4bit":
        model, tok = load_plain(spec)
        assert "unsloth" not in sys.modules, "the plain worker must not import unsloth"
    else:
        model, tok, cfg = load_unsloth(spec)
    print(f"[{spec['worker']}] loaded; allocated {_mem('allocated'):.2f} GiB", flush=True)
    vocab = model.config.vocab_size if hasattr(model, "config") else 32768
    ds = synthetic_dataset(lengths, min(vocab, 32768))
    for recipe in spec["recipes"]:
        print(f"\n[{spec['worker']}] --- {recipe['name']} ---", flush=True)
        try:
            if spec["worker"] == "peft-4bit":
                r = run_plain(model, tok, ds, recipe, spec)
            else:
                r = run_unsloth(model, tok, cfg, ds, recipe, spec)
        except Exception as e:
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            if "out of memory" in str(e).lower():
                r["error"] = "CUDA out of memory"
        r.update(name=recipe["name"], kind=recipe["kind"], worker=spec["worker"])
        results.append(r)
        save()
        print(f"[{spec['worker']}] result: {json.dumps(r)}", flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_unsloth(spec):
    from unslothify.config import load_config
    from unslothify.model.load import add_lora, load_base
    from benchmark_recipes import COMMON

    t = time.perf_counter()
    cfg = load_config(None, model=spec["model_dir"], load_in_4bit=spec["load_in_4bit"], max_seq_length=2048,
                      gradient_checkpointing=spec["gc"], output_dir=tempfile.mkdtemp(), **COMMON)
    model, tok, _ = load_base(cfg)
    model = add_lora(model, cfg)
    print(f"load + LoRA {time.perf_counter() - t:.0f} s", flush=True)
    return model, tok, cfg


def load_plain(spec):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    t = time.perf_counter()
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], quantization_config=q, dtype=torch.bfloat16,
                                                 attn_implementation="sdpa", device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=ALL_LINEAR,
                                             bias="none", task_type="CAUSAL_LM"))
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    print(f"load + LoRA {time.perf_counter() - t:.0f} s", flush=True)
    return model, tok


def _measure(trainer, counter, timer, spec, items_per_update, extra=None) -> dict:
    import torch

    warm, meas = spec["warmup"], spec["measure"]
    _sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t
    ends = timer.ends
    assert len(ends) >= warm + meas + 1, f"only {len(ends) - 1} steps ran"
    seconds = ends[warm + meas] - ends[warm]
    ga = trainer.args.gradient_accumulation_steps
    timed = counter.batches[warm * ga:(warm + meas) * ga]
    real = sum(b[0] for b in timed)
    total = sum(b[1] for b in timed)
    step_times = [ends[i + 1] - ends[i] for i in range(warm, warm + meas)]
    return {"tokens": real, "seconds": seconds, "step_s": seconds / meas,
            "step_s_min": min(step_times), "step_s_max": max(step_times),
            "first_steps_s": [round(ends[i + 1] - ends[i], 3) for i in range(warm)],
            "pad_share": 1 - real / total, "tokens_per_micro_batch": total / len(timed),
            "items_per_micro_batch": sum(b[2] for b in timed) / len(timed),
            "items_per_update": items_per_update,
            "max_allocated_gib": _mem("allocated"), "max_reserved_gib": _mem("reserved"),
            "losses": timer.losses[-3:], "train_wall_s": round(wall, 1),
            "padding_free": bool(getattr(trainer.args, "padding_free", None)),
            "micro_batches_seen": len(counter.batches), **(extra or {})}


def run_unsloth(model, tok, cfg, ds, recipe, spec):
    from trl import SFTConfig, SFTTrainer

    import benchmark_recipes as recipes
    from unslothify.config import replace
    from unslothify.model.load import for_training
    from unslothify.train.args import Call, sft_args

    total_steps = spec["warmup"] + spec["measure"]
    kind = recipe["kind"]
    out = tempfile.mkdtemp()
    if kind == "seed":
        c = replace(cfg, **{k: v for k, v in recipes.SEED.items() if k != "load_in_4bit"}, output_dir=out)
        args = sft_args(c, Call.of(c, 100.0, has_eval=False))
        for k, v in recipes.SEED_SFT.items():
            setattr(args, k, v)
    elif kind == "notebook":
        n = recipes.UNSLOTH_NOTEBOOK
        args = SFTConfig(output_dir=out, per_device_train_batch_size=n["per_device_train_batch_size"],
                         gradient_accumulation_steps=n["gradient_accumulation_steps"], learning_rate=n["learning_rate"],
                         optim=n["optim"], lr_scheduler_type=n["lr_scheduler_type"], logging_steps=1,
                         max_length=n["max_seq_length"], report_to="none", **recipes.UNSLOTH_NOTEBOOK_SFT)
    else:
        knobs = {**recipes.OURS, "per_device_train_batch_size": recipe["rows"], "max_seq_length": recipe["row"],
                 "output_dir": out}
        if recipe.get("optim"):
            knobs["optim"] = recipe["optim"]
        c = replace(cfg, **knobs)
        args = sft_args(c, Call.of(c, 100.0, has_eval=False))
    args.max_steps = total_steps
    args.disable_tqdm = True
    args.save_strategy = "no"
    for_training(model)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    counter = Counter(trainer.data_collator)
    trainer.data_collator = counter
    timer = step_timer()
    trainer.add_callback(timer)
    if os.environ.get("BENCH_PROFILE_DIR"):
        trainer.add_callback(step_profiler(recipe["name"], spec["warmup"] + 2))
    steps_per_epoch = _steps_per_epoch(trainer)
    res = _measure(trainer, counter, timer, spec, len(ds) / steps_per_epoch,
                   {"packed_rows": len(trainer.train_dataset), "optim": str(args.optim),
                    "gradient_checkpointing": spec["gc"], "load_in_4bit": spec["load_in_4bit"],
                    "per_device_train_batch_size": args.per_device_train_batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps, "max_length": args.max_length,
                    "steps_per_epoch": steps_per_epoch})
    del trainer
    return res


def run_plain(model, tok, ds, recipe, spec):
    from trl import SFTConfig, SFTTrainer

    import benchmark_recipes as recipes

    n = recipes.PLAIN_PEFT
    args = SFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=n["per_device_train_batch_size"],
                     gradient_accumulation_steps=n["gradient_accumulation_steps"], learning_rate=n["learning_rate"],
                     optim=n["optim"], lr_scheduler_type=n["lr_scheduler_type"], logging_steps=1,
                     max_length=n["max_seq_length"], report_to="none", bf16=True, gradient_checkpointing=True,
                     gradient_checkpointing_kwargs={"use_reentrant": False}, disable_tqdm=True,
                     max_steps=spec["warmup"] + spec["measure"], save_strategy="no", **recipes.UNSLOTH_NOTEBOOK_SFT)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    counter = Counter(trainer.data_collator)
    trainer.data_collator = counter
    timer = step_timer()
    trainer.add_callback(timer)
    steps_per_epoch = _steps_per_epoch(trainer)
    res = _measure(trainer, counter, timer, spec, len(ds) / steps_per_epoch,
                   {"optim": str(args.optim), "gradient_checkpointing": True, "load_in_4bit": True,
                    "per_device_train_batch_size": args.per_device_train_batch_size,
                    "gradient_accumulation_steps": args.gradient_accumulation_steps, "steps_per_epoch": steps_per_epoch})
    del trainer
    return res


def _steps_per_epoch(trainer) -> int:
    rows = len(trainer.train_dataset)
    per_step = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    return max(1, math.ceil(rows / per_step))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("lengths")
    a.add_argument("--data", default=str(ROOT / "domain.jsonl"))
    a.add_argument("--out", default=str(ASSETS / "domain_lengths.json"))
    a = sub.add_parser("run")
    a.add_argument("--out", required=True)
    a.add_argument("--lengths", default=str(ASSETS / "domain_lengths.json"))
    a.add_argument("--tokenizer", default=str(ASSETS / "tokenizer"))
    a.add_argument("--layers", type=int, default=32)
    a.add_argument("--warmup", type=int, default=2)
    a.add_argument("--measure", type=int, default=6)
    a.add_argument("--quick", action="store_true", help="two recipes per worker")
    a.add_argument("--plan", default="", choices=["", "final", "lean", "profile"],
                   help="final: the chosen recipe and its neighbours; lean: low-VRAM rows; profile: where a step goes")
    a.add_argument("--only", default="", help="comma list of workers")
    a.add_argument("--deadline", type=float, default=1800, help="seconds for the whole run; workers get what is left")
    a.add_argument("--cap-scale", type=float, default=1.0, help="scale each worker's time cap")
    a = sub.add_parser("worker")
    a.add_argument("--spec", required=True)
    a.add_argument("--result", required=True)
    args = p.parse_args()
    {"lengths": cmd_lengths, "run": cmd_run, "worker": cmd_worker}[args.cmd](args)


if __name__ == "__main__":
    main()
