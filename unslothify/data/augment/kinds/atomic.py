"""atomic: an answer that holds several facts, also taught one fact at a time. Each sentence of a
multi-sentence answer becomes its own statement (plain text naming its subject, loss on all of it) and its own
answer to the item's question, so a held-out question that asks for one of the facts meets a fact stored on
its own rather than only inside a paragraph. Nothing is reworded, so it holds in any language."""

from __future__ import annotations

from ....knobs import knob
from ..checks import WORD, answer_text, sentences, system_messages, user_text
from . import Kind
from .statement import statement_for

MIN_WORDS = 5  # shorter sentences ("Yes.", "It depends.") carry no fact of their own


def run(ctx) -> None:
    seen_text = {i.text for i in ctx.train if i.text is not None}
    for item in ctx.chat_items:
        q, ans = user_text(item), answer_text(item)
        parts = [s for s in sentences(ans) if len(WORD.findall(s)) >= MIN_WORDS]
        if len(sentences(ans)) < 2 or not parts:
            continue
        for sent in parts:
            statement = statement_for(q, sent)
            if not ctx.checked("atomic", statement, item, sent, seen_text):
                continue
            ctx.add(item, "atomic", text=statement)
            ctx.add(item, "atomic", messages=system_messages(item) + [{"role": "user", "content": q},
                                                                      {"role": "assistant", "content": sent}])


KIND = Kind(
    name="atomic", order=25, run=run, active=lambda a: a.atomic,
    summary="one sentence of a multi-fact answer, as a statement and as the answer to the item's question",
    knobs=(("atomic", bool, knob(False, "Teach multi-sentence answers one sentence at a time too: each sentence "
                                 "as a statement and as an answer to the item's question (kind 'atomic').",
                                 group="augment", panel=True)),),
)
