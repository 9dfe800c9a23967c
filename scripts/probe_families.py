#!/usr/bin/env python3
"""Where the knowledge probes part from the held-out questions (issue 30): one saved version asked its run's own
probes, the same facts in the question's words, and the held-out questions about the facts it trained, forward and
reverse apart. The figures docs/probes.md ("Which questions the probes miss") quotes.

    python -m unslothify run --data examples/outside/train.jsonl --eval-questions examples/outside/questions.jsonl \\
        --general-questions eval/outside_general.jsonl --output /tmp/outside-run --seed 1 --no-export
    python -m scripts.probe_families /tmp/outside-run/v001 --questions examples/outside/questions.jsonl

Families (each answered greedily at the probes' length, the held-out questions at the config's, as `eval` asks):
  answer_side     the answer-side probes of the trained items (the answer's sentence, key term asked): what a
                  training call asked before it asked a fifth from the name's end
  probes          the probes a training call asks (train/inputs.py): four fifths of answer_side, a fifth of
                  reverse_about, drawn by the seed
  question_side   each probed item's own question reworded (lexical_rewording, else a probe frame)
  held_out        the held-out file, whole; held_out_* its questions about the trained items
                  (score/questions.questions_about), by kind
  forward_alone   the same forward questions asked alone in one batch: what the batch around them moves
  reverse_about   the trained reverse rows (augment kind `reverse`) asked in a chat form their rule never writes,
                  "What do you know about Ilka Wynomoor?", right when the answer names the forward question's
                  rarest word (Duninven): all of them (data/probes.reverse_probes)

    python -m scripts.probe_families runs/meatballs/v001 --questions eval/questions.jsonl --float32
                                                  # the model cast to float32, where the batch moves no answer
Run it from the folder `run` ran in: the manifest and the augment report name the data relative to it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path


def families(version: Path, questions: Path, cfg) -> tuple[dict[str, list[tuple[str, list[str]]]], dict]:
    from unslothify.data.augment.checks import user_text
    from unslothify.data.augment.probe_family import framed, lexical_rewording
    from unslothify.data.items import read_jsonl_items
    from unslothify.data.augment.stage import load_augmented
    from unslothify.data.probes import build_probes, reverse_probes, with_reverse_probes
    from unslothify.score.questions import load_questions, questions_about

    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    items, _ = read_jsonl_items(Path(manifest["data_file"]))
    trained = set(manifest.get("trained_facts") or [i.line for i in items])
    by_line = {i.line: i for i in items}
    # the answer-side probes of the trained items, from the prepared split (train/inputs._of_facts)
    prepared, _ = read_jsonl_items(version.parent / "prepared" / "train.jsonl")
    probes = [q for q, _ in build_probes(prepared, cfg, among=trained)]
    out = {"answer_side": [(p.question, p.expected) for p in probes], "question_side": []}
    for p in probes:
        asked = user_text(by_line[p.line])
        out["question_side"].append((lexical_rewording(asked) or framed(asked, random.Random(p.line))[0], p.expected))
    held = load_questions(questions)
    about = questions_about(held, items)
    out["held_out"] = [(q.question, q.expected) for q in held]  # asked whole, in eval's batches (see main)
    kinds = {k: [j for j, q in enumerate(held) if about[id(q)] & trained and q.kind == k]
             for k in ("forward", "reverse")}
    out["forward_alone"] = [out["held_out"][j] for j in kinds["forward"]]
    # the trained reverse rows, from the augmented file the run's augment report names (relative to where `run` ran)
    report = json.loads((version.parent / "augment" / "report.json").read_text(encoding="utf-8"))
    if not Path(report["file"]).is_file():
        raise SystemExit(f"{report['file']} (the augmented file {version.parent}/augment/report.json names) is not "
                         f"here: run this script from the folder `run` ran in.")
    augmented = load_augmented(report["file"])
    out["reverse_about"] = [(q.question, q.expected) for q, _ in reverse_probes(prepared + augmented, prepared, trained)]
    mixed, _ = with_reverse_probes(probes, [None] * len(probes), prepared + augmented, prepared, cfg.seed, trained)
    out["probes"] = [(p.question, p.expected) for p in mixed]
    return out, kinds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("version", type=Path, help="a version folder of a run (runs/x/v001)")
    p.add_argument("--questions", type=Path, required=True, help="the held-out questions of the run's data")
    p.add_argument("--show", type=int, default=0, help="print this many answers of each family")
    p.add_argument("--only", default=None, help="ask these families alone, comma-separated (e.g. held_out,reverse_about)")
    p.add_argument("--float32", action="store_true", help="cast the loaded model to float32 (Unsloth loads it in "
                   "bfloat16), as scripts/retention_floor.py --float32 does for the base")
    args = p.parse_args()

    from unslothify.config import load_config
    from unslothify.machine.device import machine
    from unslothify.model.generate import answer_batch
    from unslothify.model.load import load_for_inference
    from unslothify.score.probes import PROBE_MAX_NEW_TOKENS
    from unslothify.score.questions import is_recalled

    cfg = load_config(args.version / "config.yaml")
    asked, kinds = families(args.version, args.questions, cfg)
    model, tokenizer, name = load_for_inference(str(args.version), cfg)
    if args.float32:
        model = model.float()
    print(f"{name}, adapter_scale {cfg.adapter_scale}, {'float32' if args.float32 else 'as loaded'}, {machine()}, "
          f"{datetime.now(timezone.utc).isoformat(timespec='minutes')}")
    for family, rows in asked.items():
        if args.only and family not in args.only.split(","):
            continue
        # the held-out file is asked whole and in order, as `eval` asks it: a greedy answer at a near tie
        # flips with the batch around it (bfloat16), and the run's own figure came from those batches
        length = cfg.max_new_tokens if family in ("held_out", "forward_alone") else PROBE_MAX_NEW_TOKENS
        started = time.perf_counter()
        answers = answer_batch(model, tokenizer, [q for q, _ in rows], max_new_tokens=length,
                               system_prompt=cfg.system_prompt)
        seconds = round(time.perf_counter() - started, 1)
        right = [is_recalled(a, expected) for a, (_, expected) in zip(answers, rows)]
        parts = {family: range(len(rows))}
        if family == "held_out":  # the whole file, then the trained items' questions by kind
            parts.update({f"held_out_{k}": js for k, js in kinds.items()})
        for part, js in parts.items():
            print(json.dumps({"family": part, "right": sum(right[j] for j in js), "n": len(js),
                              "recall": round(sum(right[j] for j in js) / len(js), 3) if js else None,
                              **({"seconds": seconds} if part == family else {})}))
            for j in list(js)[:args.show]:
                print(f"   {'+' if right[j] else '-'} {rows[j][0]} | {rows[j][1]} | {answers[j][:100]}")


if __name__ == "__main__":
    main()
