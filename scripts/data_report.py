#!/usr/bin/env python3
"""Quality report for the training and evaluation data (standard library only).

Usage:
    python -m scripts.data_report [--root REPO_ROOT] [--top N]

For domain.jsonl it prints:
  * record count and number of unique user questions,
  * the highest word overlap (Jaccard over lowercase word sets) between any
    two training questions, and which pair,
  * the highest overlap between any held-out question (eval/questions.jsonl)
    and any training question,
  * how many answer sentences are repeated verbatim across records (target 0),
  * answer length statistics.
It prints the same overlap figures for examples/invented when present.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_WORD_RE = re.compile(r"\w+")
_SENT_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
_INITIAL_RE = re.compile(r"(?:^|\s)[A-Z]\.$")  # e.g. the "E." in "E. coli"


def load_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines file, skipping blank lines."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def words(text: str) -> set[str]:
    """Lowercase word set (Unicode-aware, so 'köttbullar' is one word)."""
    return set(_WORD_RE.findall(text.lower()))


def jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the lowercase word sets of two strings."""
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def normalise(text: str) -> str:
    """Lowercase and collapse whitespace, for duplicate detection."""
    return " ".join(text.lower().split())


def split_sentences(text: str) -> list[str]:
    """Split an answer into sentences; keeps 'E. coli' style initials together."""
    parts = [p for p in _SENT_SPLIT_RE.split(text.strip()) if p]
    out: list[str] = []
    for part in parts:
        if out and _INITIAL_RE.search(out[-1]):
            out[-1] = out[-1] + " " + part
        else:
            out.append(part)
    return out


def qa_pairs(records: list[dict]) -> list[tuple[str, str]]:
    """(question, answer) from records in chat 'messages' format."""
    pairs = []
    for rec in records:
        msgs = rec["messages"]
        user = next(m["content"] for m in msgs if m["role"] == "user")
        assistant = next(m["content"] for m in msgs if m["role"] == "assistant")
        pairs.append((user, assistant))
    return pairs


def max_pairwise(questions: list[str]) -> tuple[float, int, int]:
    """Highest Jaccard between any two distinct questions, with their indices."""
    sets = [words(q) for q in questions]
    best = (-1.0, -1, -1)
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            union = sets[i] | sets[j]
            score = len(sets[i] & sets[j]) / len(union) if union else 1.0
            if score > best[0]:
                best = (score, i, j)
    return best


def top_pairwise(questions: list[str], n: int) -> list[tuple[float, int, int]]:
    sets = [words(q) for q in questions]
    scores = []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            union = sets[i] | sets[j]
            scores.append((len(sets[i] & sets[j]) / len(union) if union else 1.0, i, j))
    scores.sort(reverse=True)
    return scores[:n]


def max_cross(held_out: list[str], training: list[str]) -> tuple[float, int, int]:
    """Highest Jaccard between any held-out question and any training question."""
    tsets = [words(q) for q in training]
    best = (-1.0, -1, -1)
    for i, q in enumerate(held_out):
        hs = words(q)
        for j, ts in enumerate(tsets):
            union = hs | ts
            score = len(hs & ts) / len(union) if union else 1.0
            if score > best[0]:
                best = (score, i, j)
    return best


def repeated_sentences(answers: list[str]) -> dict[str, list[int]]:
    """Sentences (normalised) that occur in more than one record's answer."""
    where: dict[str, set[int]] = defaultdict(set)
    for idx, ans in enumerate(answers):
        for sent in split_sentences(ans):
            where[normalise(sent)].add(idx)
    return {s: sorted(ix) for s, ix in where.items() if len(ix) > 1}


def report_set(name: str, train_path: Path, heldout_path: Path | None, top: int) -> None:
    records = load_jsonl(train_path)
    pairs = qa_pairs(records)
    questions = [q for q, _ in pairs]
    answers = [a for _, a in pairs]
    print(f"== {name}: {train_path.relative_to(ROOT) if train_path.is_relative_to(ROOT) else train_path}")
    print(f"records:                      {len(records)}")
    print(f"unique questions:             {len({normalise(q) for q in questions})}")
    print(f"unique records:               {len({json.dumps(r, sort_keys=True) for r in records})}")

    score, i, j = max_pairwise(questions)
    print(f"max question-question Jaccard: {score:.3f}")
    print(f"    [{i + 1}] {questions[i]}")
    print(f"    [{j + 1}] {questions[j]}")
    if top > 1:
        for s, a, b in top_pairwise(questions, top)[1:]:
            print(f"    {s:.3f}  {questions[a]}  |  {questions[b]}")

    if heldout_path is not None and heldout_path.exists():
        held = [r["question"] for r in load_jsonl(heldout_path)]
        score, i, j = max_cross(held, questions)
        print(f"held-out questions:           {len(held)} ({heldout_path.name})")
        print(f"max held-out-training Jaccard: {score:.3f}")
        print(f"    held-out: {held[i]}")
        print(f"    training: {questions[j]}")

    reps = repeated_sentences(answers)
    print(f"answer sentences repeated verbatim across records: {len(reps)}")
    for sent, idxs in list(reps.items())[:20]:
        print(f"    records {[k + 1 for k in idxs]}: {sent}")

    wlens = [len(a.split()) for a in answers]
    slens = [len(split_sentences(a)) for a in answers]
    print(
        "answer length (words):        "
        f"min {min(wlens)}, median {statistics.median(wlens):g}, "
        f"mean {statistics.mean(wlens):.1f}, max {max(wlens)}"
    )
    print(f"answer length (sentences):    min {min(slens)}, max {max(slens)}")
    print()


def main(argv: list[str] | None = None) -> int:
    global ROOT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--top", type=int, default=1, help="also list the N most similar question pairs")
    args = parser.parse_args(argv)
    ROOT = args.root.resolve()

    report_set("domain", ROOT / "domain.jsonl", ROOT / "eval" / "questions.jsonl", args.top)
    invented = ROOT / "examples" / "invented" / "train.jsonl"
    if invented.exists():
        report_set("invented", invented, ROOT / "examples" / "invented" / "questions.jsonl", args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
