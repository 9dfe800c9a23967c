#!/usr/bin/env python3
"""How much of "retention" a model loses to nothing at all: the base model scored against itself.

Retention (score/questions.py) is the share of the general questions the base answers right that the tuned model
still answers right. Greedy answers of a small model flip on near-ties, and a near-tie moves with the batch a
question is asked in (its padding, the kernels chosen for that shape). Here the untouched base model answers each
general file in batches of 1, 4 and 16 (and 64 on a GPU), and each batch size's right answers are held against
the run's own batch size's: the retention a model that learnt nothing would be given. A target above it cannot
be told from noise.

    python -m scripts.retention_floor                       # eval/general.jsonl and eval/outside_general.jsonl
    python -m scripts.retention_floor --out docs/measurements/retention-floor.jsonl
    python -m scripts.retention_floor --batches 1,4,16,64 --float32   # in float32 (Unsloth loads bfloat16)
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", default="eval/general.jsonl,eval/outside_general.jsonl")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--out", default=None, help="append one JSON line per file here")
    p.add_argument("--float32", action="store_true", help="cast the loaded model to float32 (Unsloth loads it in "
                   "bfloat16, on a CPU as on a card): whether the flips are the half precision's near-ties")
    args = p.parse_args()

    from unslothify.cli import build_parser, config_from_args
    from unslothify.machine.device import machine
    from unslothify.model.generate import generation_batch
    from unslothify.model.load import for_inference, load_base
    from unslothify.score.questions import evaluate, load_questions

    cfg = config_from_args(build_parser().parse_args(["run", "--model", "embedded"]))
    model, tokenizer, _ = load_base(cfg, lambda *_: None)
    if args.float32:
        model = model.float()
    for_inference(model)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    print(f"model dtype {dtype}", flush=True)
    run_batch = generation_batch()
    batches = sorted({int(b) for b in args.batches.split(",")} | {run_batch})
    for name in args.files.split(","):
        questions = load_questions(ROOT / name)
        hits = {}
        for b in batches:
            started = time.perf_counter()
            result, _ = evaluate(model, tokenizer, questions, cfg.max_new_tokens, batch_size=b)
            hits[b] = result["hits"]
            print(f"{name}: batch {b}: {sum(result['hits'])} of {len(questions)} right "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        ref = hits[run_batch]
        kept = {b: sum(h and r for h, r in zip(hits[b], ref)) / max(1, sum(ref)) for b in batches if b != run_batch}
        row = {"file": name, "machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
               "run_batch": run_batch, "dtype": dtype, "n": len(questions),
               "base_right": {str(b): sum(h) for b, h in hits.items()},
               "right_at_run_batch": [i for i, r in enumerate(ref) if r],
               "retention_against_run_batch": {str(b): round(v, 4) for b, v in kept.items()},
               "flipped": sorted({i for b in batches for i, (h, r) in enumerate(zip(hits[b], ref)) if h != r})}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
