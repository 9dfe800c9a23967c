"""The base model's greedy answers, asked once per model and kept: the replay rows' answers (augment kind
`replay`) and the base model's answers to an eval file (the `base` column of every score). They depend on the
model, how it is asked (system prompt, chat template, answer length, batch size) and the arithmetic (CPU and
GPU differ in the last bits; a 4-bit base answers differently from a 16-bit one), and on nothing a run trains:
a key of those names a file in the user cache, and for the embedded model on a CPU a file shipped in
eval/base-answers/ (so a first `make run` asks none of them). A question not in the file is asked and added to
the user cache.

    answers = base_answers(questions, cfg, tokenizer, model_name, ask=lambda qs: answer_batch(model, ...))
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from ..fsutil import PROJECT_DIR, atomic_write_text, cache_dir

SHIPPED = PROJECT_DIR / "eval" / "base-answers"
CACHE_VERSION = 1  # the key changes when the way answers are asked does


def model_key(model_name: str) -> str:
    """The model's name in a cache key: the embedded model's folder name, not its path on this machine."""
    from .embedded import is_embedded

    return Path(model_name).name if is_embedded(model_name) else model_name


def answers_key(cfg, tokenizer, model_name: str, max_new_tokens: int, batch_size: int | None = None) -> str:
    from ..machine.device import arithmetic
    from .generate import generation_batch

    batch_size = batch_size or generation_batch()

    return hashlib.sha256(json.dumps([CACHE_VERSION, model_key(model_name), cfg.system_prompt, max_new_tokens,
                                      batch_size, arithmetic(cfg), tokenizer.chat_template or ""],
                                     sort_keys=True).encode()).hexdigest()[:16]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["answers"]
    except (OSError, ValueError, KeyError):
        return {}


def base_answers(questions: list[str], cfg, tokenizer, model_name: str, ask: Callable[[list[str]], list[str]],
                 max_new_tokens: int | None = None, batch_size: int | None = None, progress=print) -> list[str]:
    """The base model's answers to `questions`, from the shipped file and the user cache; `ask(missing)` answers
    the others (the base model, or the model in use with its adapter off), which are then kept."""
    max_new_tokens = max_new_tokens or cfg.max_new_tokens
    key = answers_key(cfg, tokenizer, model_name, max_new_tokens, batch_size)
    cached = cache_dir() / "base-answers" / f"{key}.json"
    known = {**_read(SHIPPED / f"{key}.json"), **_read(cached)}
    missing = list(dict.fromkeys(q for q in questions if q not in known))
    if missing:
        got = ask(missing)
        known.update(zip(missing, got))
        own = {**_read(cached), **dict(zip(missing, got))}
        atomic_write_text(cached, json.dumps({"model": model_key(model_name), "max_new_tokens": max_new_tokens,
                                              "answers": own}, ensure_ascii=False, indent=0))
    elif questions:
        progress(f"The base model's answers to {len(questions)} questions: kept from an earlier run ({key}).")
    return [known[q] for q in questions]


def missing_base_answers(questions: list[str], cfg, tokenizer, model_name: str, max_new_tokens: int | None = None,
                         batch_size: int | None = None) -> int:
    """How many of `questions` the base model would be asked (no kept answer for them): what a time estimate
    counts."""
    key = answers_key(cfg, tokenizer, model_name, max_new_tokens or cfg.max_new_tokens, batch_size)
    known = {**_read(SHIPPED / f"{key}.json"), **_read(cache_dir() / "base-answers" / f"{key}.json")}
    return len({q for q in questions if q not in known})
