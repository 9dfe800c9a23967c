"""replay: the base model's own greedy answers to general prompts, generated before training and mixed into
the training split, so the tuned model keeps what it knew. A row that rewords a retention question
(`general_questions`, and the retention probes' candidates) or states its fact is refused: it would be taught,
then scored as kept."""

from __future__ import annotations

import re
from pathlib import Path

from ....fsutil import PROJECT_DIR, sha256_file
from ....knobs import knob
from ....score.questions import is_recalled
from ...items import DataError, Item, read_jsonl
from ..checks import FUNCTION_WORDS, WORD, norm_question
from . import Kind

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
    from ....score.probes import RETENTION_CANDIDATES

    g = Path(cfg.general_questions) if cfg.general_questions else None
    p = prompts_path(cfg)
    return {"model": resolve_model_name(cfg.model)[0], "max_new_tokens": cfg.max_new_tokens,
            "system_prompt": cfg.system_prompt, "replay_prompts_sha256": sha256_file(p) if p.exists() else None,
            "general_questions_sha256": sha256_file(g) if g and g.exists() else None,
            "retention_candidates_sha256": sha256_file(RETENTION_CANDIDATES)}


def retention_questions(cfg) -> list:
    """The questions retention is measured on: the general eval file and the retention probes' candidates."""
    from ....score.probes import RETENTION_CANDIDATES
    from ....score.questions import load_questions

    files = [Path(cfg.general_questions)] if cfg.general_questions else []
    return [q for f in [*files, RETENTION_CANDIDATES] if f.exists() for q in load_questions(f)]


def _content(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text) if len(w) >= 4 and w.lower() not in FUNCTION_WORDS}


def leak(prompt: str, answer: str, questions: list) -> str | None:
    """The retention question a replay row would teach, or None: a prompt that rewords it (most of its content
    words), or a row that states its fact (one of its expected strings beside one of its content words). Trained
    on, such a row would be scored as kept knowledge when it is taught knowledge."""
    text = f"{prompt} {answer}"
    said = _content(text)
    for q in questions:
        asked = _content(q.question)
        reworded = bool(asked) and len(asked & _content(prompt)) >= 0.6 * len(asked)
        if reworded or norm_question(prompt) == norm_question(q.question):
            return q.question
        if asked & said and is_recalled(text, q.expected):
            return q.question
    return None


def run(ctx) -> None:
    cfg = ctx.cfg
    path = prompts_path(cfg)
    questions = retention_questions(cfg)
    usable = []
    for number, p in load_prompts(path):
        if leak(p, "", questions):
            ctx.rejects.add("replay", "leak", p)  # a retention question must not be trained on
        elif norm_question(p) in ctx.existing:
            ctx.rejects.add("replay", "copy", p)
        else:
            usable.append((number, p))
    if not usable or not cfg.augment.replay:
        return
    from ....model.base_answers import base_answers
    from ....model.choice import resolve_model
    from ....model.generate import answer_batch
    from ....model.load import load_tokenizer

    def ask(prompts: list[str]) -> list[str]:
        model, tokenizer, description = ctx.generator("model")
        ctx.progress(f"Replay: {description} answers {len(prompts)} general prompts before training ...")
        return answer_batch(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                            system_prompt=cfg.system_prompt, desc="Replay answers")

    # In file order: the short factual and everyday prompts come first, and they keep the general questions;
    # drawn over the whole file (arithmetic, writing, how-tos) they kept no more and fit fewer facts in a CPU's
    # cap (docs/augmentation.md, "Replay drawn from the whole prompts file?").
    # The base model's answers do not change between runs: asked once per model (shipped for the embedded one), a
    # few more than are missing at a time, until `replay` rows keep clear of the retention questions.
    name, _ = resolve_model(cfg, ctx.progress)
    tokenizer = load_tokenizer(cfg, lambda *_: None)
    kept, asked = 0, 0
    while kept < cfg.augment.replay and asked < len(usable):
        chunk = usable[asked:asked + cfg.augment.replay - kept + 4]
        asked += len(chunk)
        outs = base_answers([p for _, p in chunk], cfg, tokenizer, name, ask, progress=ctx.progress)
        for (number, p), out in zip(chunk, outs):
            answer = complete_sentences(out)
            if kept == cfg.augment.replay:
                break
            if not answer or not WORD.search(answer):
                ctx.rejects.add("replay", "empty", f"{p} -> {out}")
            elif leak(p, answer, questions):
                ctx.rejects.add("replay", "leak", f"{p} -> {answer}")
            else:
                kept += 1
                ctx.add_standalone(Item(line=0, source=str(path), kind="replay", source_line=number, messages=[
                    {"role": "user", "content": p}, {"role": "assistant", "content": answer}]))
    if kept < cfg.augment.replay:
        ctx.progress(f"Note: replay asks for {cfg.augment.replay} prompts; {path} has {kept} usable.")


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
