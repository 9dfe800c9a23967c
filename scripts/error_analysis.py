#!/usr/bin/env python3
"""What the tuned model gets wrong: each held-out question it misses, put in one class.

Reads the eval file a run writes (runs/<name>/eval/vNNN.json: every question with the tuned and the base
model's answers) and the training data, finds the training item each question was written from (the one
whose answer holds an expected keyword and whose question shares the most words), and sorts the misses:

  base answer      the tuned answer is (nearly) the base model's: the adapter did not reach this question
  wrong number     a number was expected and the answer gives another one
  other item       the answer repeats another training item's answer: the right kind of fact, the wrong one
  right item       the answer uses the source item's words but not the expected keyword (phrasing, partial)
  invented         none of the above: a confident answer with facts from nowhere in the data

    python -m scripts.error_analysis runs/meatballs/eval/v001.json --data domain.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W_]+", text.lower()) if len(w) > 2}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def source_item(question: dict, items: list[tuple[str, str]]):
    from unslothify.score.questions import is_recalled

    with_key = [it for it in items if is_recalled(it[1], question["expected"])] or items
    return max(with_key, key=lambda it: jaccard(words(question["question"]), words(it[0])))


def classify(row: dict, items: list[tuple[str, str]]) -> tuple[str, dict]:
    answer, base = row["answer"], row.get("base_answer", "")
    src = source_item(row, items)
    a = words(answer)
    if base and jaccard(a, words(base)) >= 0.6:
        return "base answer", {"source": src[0]}
    expected_numbers = [e for e in row["expected"] if NUMBER.fullmatch(e.strip())]
    if expected_numbers and NUMBER.search(answer):
        return "wrong number", {"source": src[0]}
    overlap_src = jaccard(a, words(src[1]))
    best_other = max((it for it in items if it is not src), key=lambda it: jaccard(a, words(it[1])))
    overlap_other = jaccard(a, words(best_other[1]))
    if overlap_other > max(0.25, overlap_src):
        return "other item", {"source": src[0], "other": best_other[0]}
    if overlap_src >= 0.2:
        return "right item", {"source": src[0]}
    return "invented", {"source": src[0]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("eval_file")
    p.add_argument("--data", default=str(ROOT / "domain.jsonl"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    from unslothify.data.items import read_jsonl_items

    items = [(i.messages[-2]["content"], i.messages[-1]["content"]) for i in read_jsonl_items(args.data)[0] if i.messages]
    details = json.loads(Path(args.eval_file).read_text())["details"]["recall"]
    misses = [r for r in details if not r["recalled"]]
    classes = []
    for row in misses:
        name, info = classify(row, items)
        classes.append({"class": name, "kind": row.get("kind", "forward"), "question": row["question"],
                        "expected": row["expected"], "answer": row["answer"], **info})
    counts = Counter(c["class"] for c in classes)
    by_kind = Counter((c["kind"], c["class"]) for c in classes)
    if args.json:
        print(json.dumps({"n": len(details), "misses": len(misses), "counts": counts, "rows": classes}, indent=1))
        return
    print(f"{len(misses)} of {len(details)} held-out questions missed:")
    print("| class | misses | forward | reverse | example (question -> answer) |\n|---|---:|---:|---:|---|")
    for name, n in counts.most_common():
        ex = next(c for c in classes if c["class"] == name)
        print(f"| {name} | {n} | {by_kind[('forward', name)]} | {by_kind[('reverse', name)]} | "
              f"*{ex['question']}* (expected {'/'.join(ex['expected'])}) -> *{ex['answer'][:110]}* |")


if __name__ == "__main__":
    main()
