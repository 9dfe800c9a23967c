"""rephrase: reworded questions with the original answer, so a fact is reached by more than one phrasing.

By the English rules (`rephrase_with: rules`, deterministic, no model), by the model in use (`model`), or by
a generator model the user names (a hub id or a folder); a model's shortfall is filled by the rules.
"""

from __future__ import annotations

import random
import re

from ....knobs import knob
from ..checks import answer_text, check_question, norm_question, system_messages, user_text
from ..english import is_english, rule_rephrasings
from . import Kind

REPHRASE_SYSTEM = ("You reword questions. Reply with the reworded question only: same meaning, different words, "
                   "every name and number kept, no answer.")
REPHRASE_STYLES = [
    "Reword this question in different words, keeping every name and number:\n{q}",
    "Ask the same thing another way (do not answer it):\n{q}",
    "Rewrite this question as a person might type it into a search box, as a full question:\n{q}",
]


def _clean_generated_question(text: str) -> str:
    t = text.strip().strip('"“”').strip()
    t = re.sub(r"^(reworded question|rephrased|question|sure[,!]?|here is[^:]*):\s*", "", t, flags=re.IGNORECASE)
    t = t.split("\n")[0].strip().strip('"“”').strip()
    if "?" in t:
        t = t[: t.index("?") + 1]
    return t


def model_rephrasings(model, tokenizer, questions: list[str], k: int, max_new_tokens: int = 48) -> list[list[str]]:
    """Raw generations: for each question, one greedy rewording per style (len(REPHRASE_STYLES) per question,
    at least k); checked later by the caller."""
    from ....model.generate import answer_batch

    styles = REPHRASE_STYLES * ((k + len(REPHRASE_STYLES) - 1) // len(REPHRASE_STYLES))
    prompts = [s.format(q=q) for q in questions for s in styles]
    outs = answer_batch(model, tokenizer, prompts, max_new_tokens=max_new_tokens, system_prompt=REPHRASE_SYSTEM,
                        batch_size=16, desc="Rewording questions")
    n = len(styles)
    return [[_clean_generated_question(o) for o in outs[i * n:(i + 1) * n]] for i in range(len(questions))]


def run(ctx) -> None:
    a = ctx.cfg.augment
    items = ctx.chat_items
    generated = None
    if a.rephrase_with != "rules":
        model, tokenizer, description = ctx.generator("model" if a.rephrase_with == "model" else a.rephrase_with)
        ctx.progress(f"Rewording {len(items)} questions with {description} ...")
        generated = model_rephrasings(model, tokenizer, [user_text(i) for i in items], a.rephrasings)
    filled_by_rules = 0
    for n, item in enumerate(items):
        q = user_text(item)
        kept: list[str] = []
        seen = set(ctx.existing)
        for v in generated[n] if generated is not None else []:
            reason = check_question(v, q, seen)
            if reason:
                ctx.rejects.add("rephrase", reason, v)
                continue
            kept.append(v)
            seen.add(norm_question(v))
            if len(kept) == a.rephrasings:
                break
        if len(kept) < a.rephrasings:
            if not is_english(q):
                ctx.rejects.add("rephrase", "not_english", q)  # the rules parse English only
            else:
                rng = random.Random(f"{ctx.cfg.seed}:{item.source_line or item.line}:rephrase")
                more = rule_rephrasings(q, a.rephrasings - len(kept), rng, seen,
                                        ctx.rejects if generated is None else None)
                filled_by_rules += len(more) if generated is not None else 0
                kept += more
        for v in kept:
            ctx.existing.add(norm_question(v))
            ctx.add(item, "rephrase", messages=system_messages(item) + [{"role": "user", "content": v},
                                                                        {"role": "assistant", "content": answer_text(item)}])
    if generated is not None:
        ctx.details["rephrase_filled_by_rules"] = filled_by_rules


def inputs(cfg) -> dict:
    if cfg.augment.rephrase_with == "rules":
        return {}
    from ....model.choice import resolve_model_name

    return {"model": resolve_model_name(cfg.model)[0], "max_new_tokens": cfg.max_new_tokens,
            "system_prompt": cfg.system_prompt}


KIND = Kind(
    name="rephrase", order=10, run=run, active=lambda a: a.rephrasings > 0, inputs=inputs,
    summary="a reworded question with the original answer",
    knobs=(
        ("rephrasings", int, knob(6, "Reworded questions per item (kind 'rephrase'): 6 taught more than 2 on CPU and GPU, docs/augmentation.md.", 0, 10, step=1,
                                  group="augment", panel=True)),
        ("rephrase_with", str, knob("rules", "Who rewords questions: 'rules' (deterministic, no model; English "
                                    "only), 'model' (the model in use), or a hub id / path of a generator model.",
                                    group="augment")),
    ),
)
