"""restate: the item's question with its answer worded another way, so the fact is not stored in one sentence
only: an answer naming an entity restated with the entity first ('Edda Lindqvist keeps the lighthouse on
Varnholm island.'), a multi-sentence answer with its sentences in another order (Allen-Zhu & Li, Physics of
LMs 3.1: shuffled, rewritten statements of each fact are what made knowledge extractable). English rules
for the restatement; reordering holds in any language."""

from __future__ import annotations

import random

from ....knobs import knob
from ..checks import answer_text, sentences, system_messages, user_text
from ..english import is_english
from . import Kind
from .reverse import subject_first, answer_entity


_LEANING = {"he", "she", "it", "they", "this", "these", "that", "those", "his", "her", "its", "their", "there",
            "then", "also", "but", "and", "so", "both", "such", "here", "instead", "otherwise", "however"}


def restated(question: str, answer: str, rng: random.Random) -> str | None:
    """Another wording of the answer, or None when the rules have none."""
    parts = sentences(answer)
    if len(parts) >= 2:
        # a sentence that leans on the one before ("He stayed there ...") cannot open the answer
        openers = [s for s in parts[1:] if s.split()[0].lower() not in _LEANING]
        if not openers:
            return None
        first = rng.choice(openers)
        rest = [s for s in parts if s is not first]
        return " ".join([first, *rest])
    if not is_english(question):
        return None
    entity = answer_entity(question, answer)
    if not entity:
        return None
    out = subject_first(entity, answer)
    return out if out and out.strip() != answer.strip() else None


def run(ctx) -> None:
    for item in ctx.chat_items:
        q, ans = user_text(item), answer_text(item)
        rng = random.Random(f"{ctx.cfg.seed}:{item.source_line or item.line}:restate")
        variant = restated(q, ans, rng)
        if variant is None:
            continue
        if not ctx.checked("restate", variant, item, ans):
            continue
        ctx.add(item, "restate", messages=system_messages(item) + [{"role": "user", "content": q},
                                                                   {"role": "assistant", "content": variant}])


KIND = Kind(
    name="restate", order=15, run=run, active=lambda a: a.restate,
    summary="the item's question with its answer worded another way",
    knobs=(("restate", bool, knob(False, "Add the question with its answer restated: an entity first, or a "
                                  "multi-sentence answer reordered (kind 'restate').", group="augment",
                                  panel=True)),),
)
