#!/usr/bin/env python3
"""What a training step of the embedded model costs on this CPU, and what changes it.

Times forward + backward + an AdamW step of LoRA training on rows of domain.jsonl (tokenised as training
does), interleaving the variants so that load from other processes hits them alike:

  random        8 rows drawn at random, padded to the longest (Trainer's default order)
  grouped       8 rows of similar length (Trainer's group_by_length)
  threads=1     the same random rows on one thread instead of torch's default

Run once per dtype (Unsloth's CPU backend picks bfloat16 where the CPU has AVX512-BF16 or AMX):

    python -m scripts.cpu_speed                       # the default dtype
    UNSLOTH_CPU_BF16=0 python -m scripts.cpu_speed    # float32

Prints one JSON line: seconds per step and per 1000 padded tokens for each variant (median of the repeats).

    python -m scripts.cpu_speed generate              # greedy answers to the retention questions: batch sizes
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(repeats: int = 4, batch: int = 8, lora_r: int = 32, targets: str = "all"):
    import torch

    from unslothify.config import load_config
    from unslothify.data.items import read_jsonl_items
    from unslothify.data.tokens import tokenize_items
    from unslothify.model.load import add_lora, load_base

    cfg = load_config(None, model="embedded", lora_r=lora_r, lora_alpha=lora_r)
    if targets == "mlp":
        from unslothify.config import replace

        cfg = replace(cfg, target_modules=["gate_proj", "up_proj", "down_proj"])
    model, tokenizer, _ = load_base(cfg, progress=lambda *_: None)
    if targets.startswith("top"):  # LoRA on the top N layers only: backward stops below them
        from unsloth import FastLanguageModel

        n = int(targets[3:])
        layers = model.config.num_hidden_layers
        model = FastLanguageModel.get_peft_model(model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                 target_modules=list(cfg.target_modules), bias="none",
                                                 use_gradient_checkpointing=False, random_state=cfg.seed,
                                                 layers_to_transform=list(range(layers - n, layers)))
    else:
        model = add_lora(model, cfg)
    items, _ = read_jsonl_items(ROOT / "domain.jsonl")
    rows = [r["input_ids"] for r in tokenize_items(tokenizer, items, 256)[0]]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rng = random.Random(0)
    by_length = sorted(rows, key=len)

    def step(sample):
        width = max(map(len, sample))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in sample])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in sample])
        labels = ids.masked_fill(mask == 0, -100)
        started = time.perf_counter()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - started, ids.numel()

    model.train()
    step(rows[:batch])  # warm-up
    default_threads = torch.get_num_threads()
    results: dict[str, list[tuple[float, int]]] = {"random": [], "grouped": [], "threads=1": []}
    for _ in range(repeats):
        sample = rng.sample(rows, batch)
        start = rng.randrange(0, len(by_length) - batch)
        results["random"].append(step(sample))
        results["grouped"].append(step(by_length[start:start + batch]))
        torch.set_num_threads(1)
        results["threads=1"].append(step(sample))
        torch.set_num_threads(default_threads)
    out = {"dtype": str(next(p for p in model.parameters() if p.is_floating_point()).dtype),
           "threads": default_threads, "cores": os.cpu_count(), "batch": batch, "lora_r": lora_r, "targets": targets,
           "load": os.getloadavg()[0]}
    for name, rs in results.items():
        out[name] = {"step_s": round(statistics.median(t for t, _ in rs), 3),
                     "s_per_1k_tokens": round(statistics.median(1000 * t / n for t, n in rs), 3),
                     "tokens": round(statistics.mean(n for _, n in rs))}
    print(json.dumps(out))


def generate(batches=(16, 32, 61)):
    """Seconds to answer eval/general.jsonl's 61 questions greedily (max_new_tokens 64) in batches of each size."""
    from unslothify.model.generate import answer_batch
    from unslothify.config import load_config
    from unslothify.score.questions import load_questions
    from unslothify.model.load import for_inference, load_base

    cfg = load_config(None, model="embedded")
    model, tokenizer, _ = load_base(cfg, progress=lambda *_: None)
    for_inference(model)
    questions = [q.question for q in load_questions(ROOT / "eval" / "general.jsonl")]
    answer_batch(model, tokenizer, questions[:4], max_new_tokens=8)
    out = {"load": os.getloadavg()[0]}
    for b in batches:
        started = time.perf_counter()
        answers = answer_batch(model, tokenizer, questions, max_new_tokens=64, batch_size=b)
        out[f"batch {b}"] = round(time.perf_counter() - started, 1)
        out[f"batch {b} same as 16"] = answers == out.setdefault("answers16", answers)
    out.pop("answers16")
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1:2] == ["generate"]:
        generate()
    else:
        main(*[int(a) if a.isdigit() else a for a in sys.argv[1:]])
