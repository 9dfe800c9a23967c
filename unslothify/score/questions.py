"""The eval contract, relied on by other issues and outside checks.

An eval file is JSONL with {"question": str, "expected": [str, ...]} per line (an optional "kind", e.g.
"reverse", groups the scores). An answer counts as recalled when it contains any expected string as a
whole word or number, case-insensitively. Answers come from greedy decoding.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.items import DataError, read_jsonl
from ..fsutil import atomic_write_json
from ..runs import Run


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
             batch_size: int | None = None, progress=None, desc: str | None = None) -> tuple[dict, list[str]]:
    from ..model.generate import answer_batch

    answers = answer_batch(model, tokenizer, [q.question for q in questions], max_new_tokens=max_new_tokens,
                           system_prompt=system_prompt, batch_size=batch_size, progress=progress, desc=desc)
    return score(questions, answers), answers


def score_file(model, tokenizer, cfg, path: str | Path, label: str, progress=print) -> tuple[dict, list[dict]]:
    """(score, one row per question with the answer) for an eval file, greedy answers with cfg's cap."""
    questions = load_questions(path)
    started = time.perf_counter()
    result, answers = evaluate(model, tokenizer, questions, max_new_tokens=cfg.max_new_tokens,
                               system_prompt=cfg.system_prompt, desc=f"{label}: {Path(path).name}")
    progress(f"{label}: recall {result['recall']:.3f} on {result['n']} questions from {path} "
             f"({time.perf_counter() - started:.0f} s).")
    rows = [{"question": q.question, "expected": q.expected, "kind": q.kind, "answer": a, "recalled": h}
            for q, a, h in zip(questions, answers, result["hits"])]
    return result, rows


def base_vs_tuned(model, tokenizer, cfg, progress=print, version_name: str = "", model_name: str | None = None,
                  trained_lines: list[int] | None = None) -> tuple[dict, dict]:
    """Score the adapter on and off (same weights) on the held-out and general sets. The base model's answers
    are asked once per model and kept (model/base_answers.py, shipped for the embedded model); model_name (the
    base model's name or path) names them, else they are asked here with the adapter off.

    Returns (summary, details): the summary's base_/tuned_ recall (per kind where the file has kinds) and
    general retention, and per set the questions with both answers. With trained_lines (a run that trained a
    slice of the facts, the source lines of those it trained) the summary adds the recall on the held-out
    questions about them (questions_about). Both are also kept in the run folder (eval/<version>.json)."""
    summary: dict = {}
    details: dict = {}
    sets = [("recall", cfg.eval_questions)]
    if cfg.general_questions and Path(cfg.general_questions).exists():
        sets.append(("general", cfg.general_questions))
    for key, path in sets:
        questions = load_questions(path)
        tuned, tuned_rows = score_file(model, tokenizer, cfg, path, f"tuned {version_name}".strip(), progress)
        base, base_rows = _base_scores(model, tokenizer, cfg, questions, path, model_name, progress)
        summary[f"base_{key}"] = base["recall"]
        summary[f"tuned_{key}"] = tuned["recall"]
        if key == "recall":
            summary["n"] = tuned["n"]
            for k, v in tuned.items():
                if k.endswith("_recall") and k != "recall":
                    summary[f"tuned_{k}"] = v
                    summary[f"base_{k}"] = base[k]
            if trained_lines is not None:
                summary.update(trained_facts_recall(cfg, questions, tuned["hits"], trained_lines))
        else:
            summary["n_general"] = tuned["n"]
            # Retention question by question: of the general questions the base answers, the share the tuned
            # model still answers. The ratio of the two recalls nets new answers against lost ones.
            known = [t for t, b in zip(tuned["hits"], base["hits"]) if b]
            summary["retention"] = round(sum(known) / len(known), 4) if known else None
        details[key] = [{**t, "base_answer": b["answer"], "base_recalled": b["recalled"]}
                        for t, b in zip(tuned_rows, base_rows)]
    atomic_write_json(Run(cfg.output_dir).root / "eval" / f"{version_name or 'latest'}.json",
                      {"summary": summary, "details": details})
    return summary, details


def score_version(model, tokenizer, cfg, version, progress=print) -> tuple[dict, dict]:
    """base_vs_tuned for a saved version (model: its adapter on its base): the base model's kept answers by the
    base the version names, and the facts it trained where it trained a slice of them."""
    m = version.manifest
    return base_vs_tuned(model, tokenizer, cfg, progress, version.name, m.get("base_model_path"),
                         m.get("trained_facts"))


def _base_scores(model, tokenizer, cfg, questions: list[Question], path, model_name: str | None, progress):
    """(score, rows) of the base model on an eval file: its kept answers, or asked now with the adapter off."""
    from ..model.base_answers import base_answers
    from ..model.generate import answer_batch

    def ask(texts: list[str]) -> list[str]:
        with model.disable_adapter():
            return answer_batch(model, tokenizer, texts, max_new_tokens=cfg.max_new_tokens,
                                system_prompt=cfg.system_prompt, desc=f"base: {Path(path).name}")

    texts = [q.question for q in questions]
    answers = base_answers(texts, cfg, tokenizer, model_name, ask, progress=progress) if model_name else ask(texts)
    result = score(questions, answers)
    progress(f"base: recall {result['recall']:.3f} on {result['n']} questions from {path}.")
    rows = [{"question": q.question, "expected": q.expected, "kind": q.kind, "answer": a, "recalled": h}
            for q, a, h in zip(questions, answers, result["hits"])]
    return result, rows


def trained_facts_recall(cfg, questions: list[Question], hits: list[bool], trained_lines: list[int]) -> dict:
    """Recall on the held-out questions about the facts a run trained (a slice of them: a time plan of
    `facts`), with how many there are."""
    from ..data.items import items_from_records

    split = Run(cfg.output_dir).prepared / "train.jsonl"  # the prepared training split, with its source lines
    about = questions_about(questions, items_from_records([r for _, r in read_jsonl(split)], str(split)))
    trained = set(trained_lines)
    mine = [h for q, h in zip(questions, hits) if about.get(id(q), set()) & trained]
    return {"trained_facts": len(trained), "trained_facts_n": len(mine),
            "trained_facts_recall": round(sum(mine) / len(mine), 4) if mine else None}


def questions_about(questions: list[Question], items) -> dict[int, set[int]]:
    """{id(question): source lines of the items it asks about}: the items whose answer holds one of its
    expected strings and shares the most content words with it (at least two). Eval files name no items; this
    is how a run that trained some of the facts finds the questions about them."""
    from ..data.augment.checks import FUNCTION_WORDS, WORD, answer_text, user_text

    def words(text: str) -> set[str]:
        return {w.lower() for w in WORD.findall(text or "") if w.lower() not in FUNCTION_WORDS and len(w) > 3}

    facts = [(i.source_line or i.line, words(user_text(i)) | words(answer_text(i)), answer_text(i) or "")
             for i in items]
    out = {}
    for q in questions:
        asked = words(q.question)
        overlap = [(len(asked & w), line) for line, w, answer in facts if is_recalled(answer, q.expected)]
        best = max((n for n, _ in overlap), default=0)
        out[id(q)] = {line for n, line in overlap if n == best and n >= 2}
    return out
