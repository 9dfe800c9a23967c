"""Sanity checks for the shipped training and evaluation data, scored with the eval contract's own matcher.

Paths are relative to the repository root.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from unslothify.score.questions import is_recalled

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ROOT / "domain.jsonl"
EVAL = ROOT / "eval" / "questions.jsonl"
GENERAL = ROOT / "eval" / "general_candidates.jsonl"
INVENTED_TRAIN = ROOT / "examples" / "invented" / "train.jsonl"
INVENTED_QUESTIONS = ROOT / "examples" / "invented" / "questions.jsonl"

_SENT_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
_INITIAL_RE = re.compile(r"(?:^|\s)[A-Z]\.$")  # keeps "E. coli" in one sentence


# ---------------------------------------------------------------- helpers
def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def split_sentences(text: str) -> list[str]:
    out: list[str] = []
    for part in _SENT_SPLIT_RE.split(text.strip()):
        if not part:
            continue
        if out and _INITIAL_RE.search(out[-1]):
            out[-1] += " " + part
        else:
            out.append(part)
    return out


def chat_pairs(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records]


def check_chat_format(records: list[dict]) -> None:
    for i, rec in enumerate(records, 1):
        assert set(rec) == {"messages"}, f"record {i}: unexpected keys {set(rec)}"
        msgs = rec["messages"]
        assert isinstance(msgs, list) and len(msgs) == 2, f"record {i}: need exactly 2 messages"
        assert [m.get("role") for m in msgs] == ["user", "assistant"], f"record {i}: roles"
        for m in msgs:
            assert set(m) == {"role", "content"}, f"record {i}: message keys {set(m)}"
            assert isinstance(m["content"], str) and m["content"].strip(), f"record {i}: empty content"


def check_eval_format(items: list[dict], allowed_kinds: set[str]) -> None:
    for i, item in enumerate(items, 1):
        assert isinstance(item.get("question"), str) and item["question"].strip(), f"item {i}: question"
        exp = item.get("expected")
        assert isinstance(exp, list) and exp, f"item {i}: expected must be a non-empty list"
        assert all(isinstance(k, str) and k.strip() for k in exp), f"item {i}: bad keyword in {exp}"
        assert item.get("kind") in allowed_kinds, f"item {i}: kind {item.get('kind')!r}"


def missing_keywords(items: list[dict], answers: list[str]) -> list[str]:
    problems = []
    for item in items:
        for kw in item["expected"]:
            if not any(is_recalled(a, [kw]) for a in answers):
                problems.append(f"{kw!r} (question: {item['question']})")
    return problems


def repeated_sentences(answers: list[str]) -> dict[str, list[int]]:
    where: dict[str, set[int]] = defaultdict(set)
    for idx, ans in enumerate(answers):
        for s in split_sentences(ans):
            where[normalise(s)].add(idx)
    return {s: sorted(ix) for s, ix in where.items() if len(ix) > 1}


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def domain() -> list[dict]:
    return load_jsonl(DOMAIN)


@pytest.fixture(scope="module")
def eval_items() -> list[dict]:
    return load_jsonl(EVAL)


@pytest.fixture(scope="module")
def invented_train() -> list[dict]:
    return load_jsonl(INVENTED_TRAIN)


@pytest.fixture(scope="module")
def invented_questions() -> list[dict]:
    return load_jsonl(INVENTED_QUESTIONS)


# ---------------------------------------------------------------- domain.jsonl
def test_domain_has_500_valid_records(domain):
    assert len(domain) == 500
    check_chat_format(domain)


def test_domain_records_and_questions_unique(domain):
    assert len({json.dumps(r, sort_keys=True, ensure_ascii=False) for r in domain}) == len(domain)
    questions = [normalise(q) for q, _ in chat_pairs(domain)]
    dupes = {q for q in questions if questions.count(q) > 1}
    assert not dupes, f"duplicate questions: {sorted(dupes)[:5]}"


def test_domain_no_answer_sentence_repeated_across_records(domain):
    reps = repeated_sentences([a for _, a in chat_pairs(domain)])
    assert not reps, f"sentences repeated across records: {list(reps.items())[:5]}"


# ---------------------------------------------------------------- eval/questions.jsonl
def test_eval_format(eval_items):
    assert len(eval_items) >= 60
    check_eval_format(eval_items, {"forward", "reverse"})
    assert len({normalise(i["question"]) for i in eval_items}) == len(eval_items)


def test_eval_has_reverse_items(eval_items):
    assert sum(1 for i in eval_items if i["kind"] == "reverse") >= 12


def test_eval_questions_are_held_out(domain, eval_items):
    training = {normalise(q) for q, _ in chat_pairs(domain)}
    leaked = [i["question"] for i in eval_items if normalise(i["question"]) in training]
    assert not leaked, f"held-out questions found in training: {leaked}"


def test_eval_keywords_present_in_training_answers(domain, eval_items):
    problems = missing_keywords(eval_items, [a for _, a in chat_pairs(domain)])
    assert not problems, "keywords absent from every training answer: " + "; ".join(problems)


def test_keyword_matching_handles_non_ascii():
    assert is_recalled("Swedes love Köttbullar.", ["köttbullar"])
    assert not is_recalled("köttbullen", ["köttbulle"])
    assert is_recalled("cook to 71 °C", ["71"])
    assert not is_recalled("cook to 171 °C", ["71"])
    assert is_recalled("opened in älmhult in 1958", ["Älmhult"])


# ---------------------------------------------------------------- general candidates
def test_general_candidates_format():
    items = load_jsonl(GENERAL)
    assert len(items) >= 100
    for i, item in enumerate(items, 1):
        assert isinstance(item.get("question"), str) and item["question"].strip(), f"item {i}"
        assert isinstance(item.get("expected"), list) and item["expected"], f"item {i}"
    assert len({normalise(i["question"]) for i in items}) == len(items)


# ---------------------------------------------------------------- examples/invented
def test_invented_train_format(invented_train):
    assert len(invented_train) == 80
    check_chat_format(invented_train)
    questions = [normalise(q) for q, _ in chat_pairs(invented_train)]
    assert len(set(questions)) == len(questions)
    assert len({json.dumps(r, sort_keys=True, ensure_ascii=False) for r in invented_train}) == 80


def test_invented_questions_format(invented_questions):
    assert len(invented_questions) == 40
    check_eval_format(invented_questions, {"forward"})
    assert len({normalise(i["question"]) for i in invented_questions}) == 40


def test_invented_questions_are_held_out(invented_train, invented_questions):
    training = {normalise(q) for q, _ in chat_pairs(invented_train)}
    leaked = [i["question"] for i in invented_questions if normalise(i["question"]) in training]
    assert not leaked, f"held-out questions found in training: {leaked}"


def test_invented_keywords_present_in_training_answers(invented_train, invented_questions):
    answers = [a for _, a in chat_pairs(invented_train)]
    problems = missing_keywords(invented_questions, answers)
    assert not problems, "keywords absent from every training answer: " + "; ".join(problems)


def test_invented_each_fact_trained_twice(invented_train, invented_questions):
    # Each invented fact is taught by exactly two training answers (and leaks into no others).
    answers = [a for _, a in chat_pairs(invented_train)]
    for item in invented_questions:
        hits = sum(1 for a in answers if is_recalled(a, item["expected"]))
        assert hits == 2, f"{item['expected']} found in {hits} training answers"


def test_invented_answers_distinct(invented_questions):
    primaries = [normalise(i["expected"][0]) for i in invented_questions]
    assert len(set(primaries)) == len(primaries)
