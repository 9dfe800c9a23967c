"""Scoring the knowledge and retention probes while a model trains: the general questions the base model answers steadily (filtered once per model), then both kinds asked in one batch of greedy answers at every evaluation."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

from .questions import Question, is_recalled, load_questions
from ..fsutil import atomic_write_text, sha256_file
from ..runs import Run
from ..data.probes import read_probes, write_probes
from ..fsutil import PROJECT_DIR
from ..model.base_answers import model_key


RETENTION_CANDIDATES = PROJECT_DIR / "eval" / "retention_candidates.jsonl"


# General questions kept per model, at most: about every candidate the base model answers steadily (47 of 104 for
# the embedded model on a CPU). More questions are less noise: at a retention of 0.7, 32 give +-0.08, 48 +-0.066.
RETENTION_PROBES = 48


# Probe answers are cut at this many tokens: the key terms stand in the first sentence of an answer, and the
# cost of an evaluation is proportional to it. On adapters saved while training the invented set (2 CPU cores,
# 2026-12-04), 42 of the 45 general answers a 64-token answer got right held the expected word by token 24 (41 of
# 41 late in training), and the retention filter keeps only what the base answers within it.
PROBE_MAX_NEW_TOKENS = 24


# Knowledge and retention probes go into one generate call: decoding costs per step, whatever the rows (the
# GPU), or per row-token (the CPU), so one call of 80-100 rows costs no more than two, and on a GPU half as much.
PROBE_BATCH = 128


# The retention filter's cache name changes when the way it filters does.
FILTER_VERSION = 2


SHIPPED_FILTERS = PROJECT_DIR / "eval" / "retention-kept"


def probe_batch_size() -> int:
    """Probes asked per generate call: every probe of an evaluation in one."""
    return PROBE_BATCH


def _answer(model, tokenizer, questions: list[Question], cfg, desc: str | None = None,
            max_new_tokens: int = PROBE_MAX_NEW_TOKENS, batch_size: int = PROBE_BATCH) -> list[str]:
    from ..model.generate import answer_batch

    return answer_batch(model, tokenizer, [q.question for q in questions],
                        max_new_tokens=min(cfg.max_new_tokens, max_new_tokens), system_prompt=cfg.system_prompt,
                        batch_size=batch_size, desc=desc)


def filter_key(cfg, tokenizer, model_name: str) -> str:
    """What the retention filter depends on: the model, the candidates, the prompt, how answers are asked for
    (probe and eval lengths) and the arithmetic (CPU and GPU differ in the last bits, a 4-bit base in answers)."""
    from ..machine.device import arithmetic

    return hashlib.sha256(json.dumps([FILTER_VERSION, model_key(model_name), sha256_file(RETENTION_CANDIDATES),
                                      cfg.system_prompt, min(cfg.max_new_tokens, PROBE_MAX_NEW_TOKENS),
                                      cfg.max_new_tokens, arithmetic(cfg),
                                      tokenizer.chat_template or ""], sort_keys=True).encode()).hexdigest()[:16]


def steady_answers(model, tokenizer, candidates: list[Question], cfg) -> list[Question]:
    """The candidates the model answers every way it is asked: all in one batch at the probes' length (as an
    evaluation asks them), in `eval`'s batches at max_new_tokens (as it scores: 16 on a CPU, 64 on a GPU), and
    in batches of half that in reverse order. A greedy answer at a near tie flips with the padding and batch
    shape around it (on an H200 the base answered 44 of the 61 questions of eval/general.jsonl that it answers
    on a CPU); such a question says nothing about what training kept, and counted as forgetting whenever it
    flipped. On a GPU a decoding step costs about the same for 8 rows as for 64, so the GPU's batches (64 and
    32, where they were 16 and 8 on both) take 2 and 4 calls instead of 7 and 13: on an H100 the filter took
    11 s of a run of the invented set, where it had taken 23-33 s."""
    from ..model.generate import generation_batch

    batch = generation_batch()
    ways = [dict(), dict(max_new_tokens=cfg.max_new_tokens, batch_size=batch), dict(batch_size=batch // 2)]
    right = [True] * len(candidates)
    for i, way in enumerate(ways):
        order = list(range(len(candidates)))[::-1] if i == 2 else list(range(len(candidates)))
        answers = _answer(model, tokenizer, [candidates[j] for j in order], cfg, desc="Retention probes", **way)
        for j, a in zip(order, answers):
            right[j] = right[j] and is_recalled(a, candidates[j].expected)
    return [q for q, ok in zip(candidates, right) if ok]


def retention_probes(model, tokenizer, cfg, model_name: str, progress=print) -> list[Question]:
    """Up to RETENTION_PROBES general questions the base model answers steadily (steady_answers), so that the
    base scores 1.0 on them and a miss after training is something training took. Filtered once per model and
    settings (filter_key): shipped for the embedded model in eval/retention-kept/, else cached beside the
    converted models; a copy goes to <run>/probes/retention.jsonl."""
    from ..fsutil import cache_dir

    key = filter_key(cfg, tokenizer, model_name)
    shipped = SHIPPED_FILTERS / f"retention-{key}.jsonl"
    path = shipped if shipped.exists() else cache_dir() / "probes" / f"retention-{key}.jsonl"
    copy = Run(cfg.output_dir).root / "probes" / "retention.jsonl"  # the run's record of what it was scored on
    if path.exists():
        kept = read_probes(path)
        write_probes(copy, kept)
        return kept
    started = time.perf_counter()
    candidates = load_questions(RETENTION_CANDIDATES)
    progress(f"Finding the general questions {Path(model_name).name} answers steadily, for the retention probes "
             f"({len(candidates)} candidates, asked three ways) ...")
    base = getattr(model, "disable_adapter", contextlib.nullcontext)  # a trained adapter is switched off
    with generating(model), base():
        kept = steady_answers(model, tokenizer, candidates, cfg)[:RETENTION_PROBES]
    write_probes(path, kept)
    write_probes(copy, kept)
    progress(f"Retention probes: {len(kept)} general questions the base model answers every way it is asked "
             f"({time.perf_counter() - started:.0f} s, kept in {copy}).")
    return kept


@contextlib.contextmanager
def generating(model):
    """Unsloth's generation mode for the probes, then back to training mode: probes run inside training
    sessions (at evaluations, and once before the first call), never on a model left for inference."""
    from ..model.load import for_inference, for_training

    for_inference(model)
    try:
        yield
    finally:
        for_training(model)


def measure(model, tokenizer, knowledge: list[Question], retention: list[Question], cfg,
            at_base: bool = False, base_key: str | None = None) -> dict:
    """{'probe_recall', 'probe_retention', 'probe_n', 'retention_n', 'probe_seconds'}: the share of knowledge
    probes answered with a key term, and the share of retention probes still answered, asked in one generate
    call, with the adapter weighed by adapter_scale as a version is used. The base model answers every
    retention probe by construction (retention_probes), so at_base (the
    evaluation before the first step) does not ask them, and its knowledge answers are cached under base_key
    (the model's name): the base answers the same probes the same way every run."""
    started = time.perf_counter()
    if at_base:
        recall = _base_recall(model, tokenizer, knowledge, cfg, base_key)
        out = {"probe_recall": recall} if recall is not None else {}
        if retention:
            out["probe_retention"] = 1.0
    else:
        from ..model.load import adapter_scaled

        with generating(model), adapter_scaled(model, cfg.adapter_scale):  # the model as a version is used
            answers = _answer(model, tokenizer, knowledge + retention, cfg)
        out = {}
        if knowledge:
            out["probe_recall"] = _share(knowledge, answers[:len(knowledge)])
        if retention:
            out["probe_retention"] = _share(retention, answers[len(knowledge):])
    out.update(probe_n=len(knowledge), retention_n=len(retention) if retention else 0,
               probe_seconds=round(time.perf_counter() - started, 2))
    return out


def _share(questions: list[Question], answers: list[str]) -> float:
    return round(sum(is_recalled(a, q.expected) for q, a in zip(questions, answers)) / len(questions), 4)


def _base_recall(model, tokenizer, knowledge: list[Question], cfg, base_key: str | None) -> float | None:
    if not knowledge:
        return None
    from ..fsutil import cache_dir

    path = None
    if base_key:
        digest = hashlib.sha256(json.dumps([model_key(base_key), [(q.question, q.expected) for q in knowledge],
                                            cfg.system_prompt, min(cfg.max_new_tokens, PROBE_MAX_NEW_TOKENS),
                                            tokenizer.chat_template or ""], sort_keys=True).encode()).hexdigest()[:16]
        path = cache_dir() / "probes" / f"base-recall-{digest}.json"
        if path.exists():
            return json.loads(path.read_text())["probe_recall"]
    with generating(model):
        recall = _share(knowledge, _answer(model, tokenizer, knowledge, cfg))
    if path is not None:
        atomic_write_text(path, json.dumps({"probe_recall": recall}))
    return recall


def standard_error(share: float, n: int) -> float:
    """The binomial standard error of a share measured on n questions (40 probes at 0.5: 0.08)."""
    return (share * (1 - share) / n) ** 0.5 if n else 0.0
