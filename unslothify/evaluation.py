"""The eval contract, relied on by other issues and outside checks.

An eval file is JSONL with {"question": str, "expected": [str, ...]} per line (an optional "kind", e.g.
"reverse", groups the scores). An answer counts as recalled when it contains any expected string as a
whole word or number, case-insensitively. Answers come from greedy decoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .data import DataError, read_jsonl


@dataclass
class Question:
    question: str
    expected: list[str]
    kind: str = "forward"
    line: int = 0


def load_questions(path: str | Path) -> list[Question]:
    questions = []
    for number, rec in read_jsonl(path):
        where = f"{path}, line {number}"
        extra = sorted(set(rec) - {"question", "expected", "kind", "id"})
        if extra:
            raise DataError(f"{where}: unknown field {extra[0]!r}; an eval item has 'question' and 'expected'.")
        q = rec.get("question")
        if not isinstance(q, str) or not q.strip():
            raise DataError(f"{where}: field 'question' must be a non-empty string.")
        exp = rec.get("expected")
        if isinstance(exp, str):
            exp = [exp]
        if not isinstance(exp, list) or not exp or not all(isinstance(e, str) and e.strip() for e in exp):
            raise DataError(f"{where}: field 'expected' must be a non-empty list of non-empty strings.")
        questions.append(Question(q, exp, rec.get("kind", "forward"), number))
    return questions


def _pattern(expected: str) -> re.Pattern:
    # Whole word / number: not glued to letters or digits on either side ("8" must not match "18",
    # "pork" must not match "porkchop"); works for non-ASCII words such as "köttbullar".
    return re.compile(r"(?<![\w])" + re.escape(expected.strip()) + r"(?![\w])", re.IGNORECASE)


def is_recalled(answer: str, expected: list[str]) -> bool:
    return any(_pattern(e).search(answer) for e in expected)


def score(questions: list[Question], answers: list[str]) -> dict:
    """{'recall', 'n', 'hits', and per-kind recall as '<kind>_recall'}."""
    hits = [is_recalled(a, q.expected) for q, a in zip(questions, answers, strict=True)]
    result = {"recall": round(sum(hits) / len(hits), 4) if hits else 0.0, "n": len(hits), "hits": hits}
    kinds = sorted({q.kind for q in questions})
    if len(kinds) > 1:
        for kind in kinds:
            ks = [h for h, q in zip(hits, questions) if q.kind == kind]
            result[f"{kind}_recall"] = round(sum(ks) / len(ks), 4)
            result[f"{kind}_n"] = len(ks)
    return result


def evaluate(model, tokenizer, questions: list[Question], max_new_tokens: int = 64, system_prompt: str = "",
             batch_size: int = 16, progress=None) -> tuple[dict, list[str]]:
    from .chat import answer_batch

    answers = answer_batch(model, tokenizer, [q.question for q in questions], max_new_tokens=max_new_tokens,
                           system_prompt=system_prompt, batch_size=batch_size, progress=progress)
    return score(questions, answers), answers
