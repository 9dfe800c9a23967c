"""Training-speed benchmark on a Mistral-7B-shaped random model with domain.jsonl's real token lengths.

    python -m scripts.benchmark lengths                 # here: token lengths of domain.jsonl -> .gpu-assets/
    python -m scripts.benchmark run --out DIR [--layers 32] [--quick | --plan final|lean|profile] [--deadline S]
                                                        # on the GPU machine (gpu_check.sh bench / bench-final ...)

`run` measures a bf16 matrix-product peak, writes a random-initialised Mistral 7B (hidden 4096, MLP 14336,
32 layers, 32 heads / 8 KV heads, vocab 32768; bf16 safetensors) to local disk, then trains each recipe in
its own process (scripts/benchmark_worker.py), one process per way of loading the model:

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
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from scripts.benchmark_model import MISTRAL_7B, build_model, flops_per_token, matmul_peak  # noqa: E402

ASSETS = ROOT / ".gpu-assets"
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


# ----------------------------------------------------------------------------------------------------------
# the run (on the GPU machine)
# ----------------------------------------------------------------------------------------------------------


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
            cmd = [sys.executable, "-m", "scripts.benchmark_worker", "--spec", json.dumps(spec), "--result",
                   str(res_file)]
            t = time.perf_counter()
            with open(log, "a") as lf:
                lf.write(f"\n===== worker {w['worker']} =====\n")
                lf.flush()
                try:
                    proc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)},
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
    args = p.parse_args()
    {"lengths": cmd_lengths, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
