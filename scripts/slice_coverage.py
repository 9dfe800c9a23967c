#!/usr/bin/env python3
"""Why a CPU's slice of the facts is taken topic by topic (train/plan.fact_order): the figures docs/augmentation.md
("Topic by topic") and fact_order's docstring quote.

A held-out question is about a fact that several items may state (every item whose answer holds one of its
expected strings). A slice covers the question fully when it trains all of those items, partly when only some.

    python -m scripts.slice_coverage structure     # questions a slice covers fully: topic order against a shuffle
    python -m scripts.slice_coverage answers       # recall on fully and partly covered questions, from the answers
                                                   # of shuffled-slice runs kept in docs/bench-runs/slice-evals/
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVALS = ROOT / "docs" / "bench-runs" / "slice-evals"
SLICE_SIZES = {"domain": 54, "outside": 47, "invented": 40}  # a capped CPU run's slice of each set (that day's)


def shuffled(lines: list[int], seed: int) -> list[int]:
    """The order the time plan took facts in before 2026-12-07: a seeded shuffle of single items."""
    order = list(lines)
    random.Random(f"{seed}:facts").shuffle(order)
    return order


def coverage(items, questions, chosen: set[int]) -> list[tuple[int, bool]]:
    """(index, fully covered) of each question about the slice (score/questions.questions_about, the rule a run
    scores a slice by)."""
    from unslothify.data.augment.checks import answer_text
    from unslothify.score.questions import is_recalled, questions_about

    about = questions_about(questions, items)
    out = []
    for k, q in enumerate(questions):
        if about.get(id(q), set()) & chosen:
            stating = {i.line for i in items if is_recalled(answer_text(i) or "", q.expected)}
            out.append((k, stating <= chosen))
    return out


def load(name: str):
    from unslothify.data.items import read_jsonl_items
    from unslothify.score.questions import load_questions

    from scripts.measure_run import SETS

    data, questions, _ = SETS[name]
    return read_jsonl_items(data)[0], load_questions(questions), SLICE_SIZES[name]


def structure():
    from unslothify.train.plan import fact_order

    for name in SLICE_SIZES:
        items, questions, size = load(name)
        for label, order in (("topic", lambda s: fact_order(items, s)),
                             ("shuffle", lambda s: shuffled([i.line for i in items], s))):
            covered = [full for seed in (1, 2, 3) for _, full in coverage(items, questions, set(order(seed)[:size]))]
            print(f"{name}, slices of {size} (seeds 1-3), {label}: {sum(covered)} of {len(covered)} questions about "
                  f"the slice fully covered")


def answers():
    for name in ("outside", "domain"):
        items, questions, _ = load(name)
        totals = {True: [0, 0], False: [0, 0]}
        for path in sorted(EVALS.glob(f"{name}-seed*.eval.json.gz")):
            run = json.loads(gzip.decompress(path.read_bytes()))
            seed = int(re.search(r"seed(\d+)", path.name).group(1))
            chosen = set(shuffled([i.line for i in items], seed)[:run["summary"]["trained_facts"]])
            recalled = [row["recalled"] for row in run["details"]["recall"]]
            for k, full in coverage(items, questions, chosen):
                totals[full][0] += recalled[k]
                totals[full][1] += 1
            print(f"{path.name}: {run['summary']['trained_facts']} items trained")
        print(f"{name}: answered {totals[True][0]} of {totals[True][1]} fully covered questions, "
              f"{totals[False][0]} of {totals[False][1]} partly covered")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["structure", "answers"])
    {"structure": structure, "answers": answers}[p.parse_args().what]()


if __name__ == "__main__":
    main()
