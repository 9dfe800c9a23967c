"""replay: the base model's own greedy answers to general prompts, generated before training and mixed into
the training split, so the tuned model keeps what it knew. A prompt that repeats a retention question
(`general_questions`) is refused: it would be trained on and then scored."""

from __future__ import annotations

import re
from pathlib import Path

from ...items import DataError, Item, read_jsonl
from ....fsutil import sha256_file
from ....knobs import knob
from ..checks import WORD, norm_question
from . import Kind
from ....fsutil import PROJECT_DIR

DEFAULT_PROMPTS = "eval/general_prompts.jsonl"


def prompts_path(cfg) -> Path:
    """The prompts file; a relative name not found from here is looked up in the project folder."""
    p = Path(cfg.augment.replay_prompts or DEFAULT_PROMPTS)
    if p.exists() or p.is_absolute():
        return p
    return PROJECT_DIR / p if (PROJECT_DIR / p).exists() else p


def load_prompts(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, rec in read_jsonl(path):
        p = rec.get("prompt") or rec.get("question")
        if not isinstance(p, str) or not p.strip():
            raise DataError(f"{path}, line {number}: expected {{\"prompt\": \"...\"}}.")
        out.append((number, p.strip()))
    return out


def complete_sentences(text: str) -> str:
    """Cut a length-capped answer back to its last complete sentence (so replay does not teach stopping
    mid-sentence); unchanged when it already ends a sentence."""
    t = re.sub(r"\n\s*\d+\.$", "", text.strip()).strip()  # a list cut off after its next number
    if not t or t[-1] in ".!?)\"”":
        return t
    cut = max(t.rfind(". "), t.rfind("! "), t.rfind("? "), t.rfind(".\n"))
    return t[:cut + 1].strip() if cut > 0 else ""


def inputs(cfg) -> dict:
    """What replay records depend on besides the split: the generating model and its settings, the files."""
    from ....model.choice import resolve_model_name

    g = Path(cfg.general_questions) if cfg.general_questions else None
    p = prompts_path(cfg)
    return {"model": resolve_model_name(cfg.model)[0], "max_new_tokens": cfg.max_new_tokens,
            "system_prompt": cfg.system_prompt, "replay_prompts_sha256": sha256_file(p) if p.exists() else None,
            "general_questions_sha256": sha256_file(g) if g and g.exists() else None}


def run(ctx) -> None:
    cfg = ctx.cfg
    path = prompts_path(cfg)
    general = set()
    if cfg.general_questions and Path(cfg.general_questions).exists():
        from ....score.questions import load_questions

        general = {norm_question(q.question) for q in load_questions(cfg.general_questions)}
    usable = []
    for number, p in load_prompts(path):
        if norm_question(p) in general:
            ctx.rejects.add("replay", "leak", p)  # a retention question must not be trained on
        elif norm_question(p) in ctx.existing:
            ctx.rejects.add("replay", "copy", p)
        else:
            usable.append((number, p))
    usable = usable[:cfg.augment.replay]
    if len(usable) < cfg.augment.replay:
        ctx.progress(f"Note: replay asks for {cfg.augment.replay} prompts; {path} has {len(usable)} usable.")
    if not usable:
        return
    from ....model.generate import answer_batch

    model, tokenizer, description = ctx.generator("model")
    ctx.progress(f"Replay: {description} answers {len(usable)} general prompts before training ...")
    outs = answer_batch(model, tokenizer, [p for _, p in usable], max_new_tokens=cfg.max_new_tokens,
                        system_prompt=cfg.system_prompt, batch_size=16, desc="Replay answers")
    for (number, p), out in zip(usable, outs):
        answer = complete_sentences(out)
        if not answer or not WORD.search(answer):
            ctx.rejects.add("replay", "empty", f"{p} -> {out}")
            continue
        ctx.add_standalone(Item(line=0, source=str(path), kind="replay", source_line=number,
                                messages=[{"role": "user", "content": p}, {"role": "assistant", "content": answer}]))


KIND = Kind(
    name="replay", order=40, run=run, active=lambda a: a.replay > 0, inputs=inputs,
    summary="the base model's own answer to a general prompt",
    knobs=(
        ("replay", int, knob(80, "Base-model answers to general prompts mixed in to keep what it knew (kind "
                             "'replay'); how many prompts.", 0, 500, step=1, group="augment", panel=True)),
        ("replay_prompts", str, knob(DEFAULT_PROMPTS, "General prompts for replay (JSONL of {\"prompt\"}); must not "
                                     "repeat the retention questions.", group="augment")),
    ),
)
