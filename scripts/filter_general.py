#!/usr/bin/env python3
"""Build the retention set eval/general.jsonl: the general questions the base model really answers.

Runs the base model (default: the embedded SmolLM2-135M-Instruct) greedily on every candidate in
eval/general_candidates.jsonl, scores each answer with the eval contract (evaluation.is_recalled: an
expected string as a whole word, case-insensitively) and keeps the correct ones. Greedy decoding in
left-padded batches can flip a borderline answer when the batch around it changes, so the kept set is
re-scored as it will be scored later (same file order, same batches) until every kept question is
answered correctly; the file written is one the base model scores 1.0 on.

Replay prompts (eval/general_prompts.jsonl, used by `augment`) must not overlap the retention set; the
script checks that too and fails if a replay prompt repeats a retention question.

Usage:
    python -m scripts.filter_general [--model embedded] [--candidates eval/general_candidates.jsonl]
                                     [--output eval/general.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def norm(text: str) -> str:
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in text).split())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded")
    p.add_argument("--candidates", default=str(ROOT / "eval" / "general_candidates.jsonl"))
    p.add_argument("--output", default=str(ROOT / "eval" / "general.jsonl"))
    p.add_argument("--replay", default=str(ROOT / "eval" / "general_prompts.jsonl"))
    args = p.parse_args(argv)

    from unslothify.config import load_config
    from unslothify.score.questions import evaluate, load_questions
    from unslothify.model.load import load_for_inference

    cfg = load_config(None, model=args.model)
    model, tokenizer, desc = load_for_inference(args.model, cfg)
    questions = load_questions(args.candidates)
    started = time.perf_counter()
    kept = list(questions)
    rounds = []
    while True:
        result, answers = evaluate(model, tokenizer, kept, max_new_tokens=cfg.max_new_tokens,
                                   system_prompt=cfg.system_prompt)
        if not rounds:
            first_answers = answers
        rounds.append((len(kept), result["recall"]))
        if all(result["hits"]):
            break
        kept = [q for q, hit in zip(kept, result["hits"]) if hit]
    print(f"{desc}: {len(kept)} of {len(questions)} candidates answered correctly "
          f"(rounds: {', '.join(f'{n} at {r:.3f}' for n, r in rounds)}; {time.perf_counter() - started:.0f} s).")
    for q, a in zip(questions, first_answers):
        if q not in kept:
            print(f"  dropped: {q.question!r} expected {q.expected} got {a[:80]!r}")

    replay_path = Path(args.replay)
    if replay_path.exists():
        replay = {norm(json.loads(line)["prompt"]) for line in replay_path.read_text().splitlines() if line.strip()}
        leaks = [q.question for q in kept if norm(q.question) in replay]
        if leaks:
            print(f"Error: {len(leaks)} retention question(s) are also replay prompts: {leaks[:5]}", file=sys.stderr)
            return 1

    out = Path(args.output)
    out.write_text("".join(json.dumps({"question": q.question, "expected": q.expected, "kind": q.kind},
                                      ensure_ascii=False) + "\n" for q in kept), encoding="utf-8")
    print(f"Wrote {out} ({len(kept)} questions).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
