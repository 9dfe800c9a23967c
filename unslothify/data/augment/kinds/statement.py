"""statement: the answer as a standalone statement naming its subject, plain text with loss on all of it, so
the fact is also stored outside the question-answer format."""

from __future__ import annotations

from ....knobs import knob
from ..checks import FUNCTION_WORDS, WORD, answer_text, has_word, names, user_text
from . import Kind


def _content_words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text) if w.lower() not in FUNCTION_WORDS and len(w) > 2}


def statement_for(question: str, answer: str) -> str:
    """The answer as a standalone statement that names its subject. When the answer already names what the
    question is about (its names, or most of its content words), it stands alone as it is; otherwise the
    question is kept in front of it ('When do Swedes eat meatballs? All year round: ...'). Nothing here
    rewords, so it holds in any language."""
    q_names = names(question)
    q_words = _content_words(question)
    a = answer.strip()
    if q_names and all(has_word(a, n) for n in q_names):
        return a
    if not q_names and q_words and len([w for w in q_words if has_word(a, w)]) >= max(1, (2 * len(q_words)) // 3):
        return a
    return f"{question.strip()} {a}"


def run(ctx) -> None:
    seen_text = {i.text for i in ctx.train if i.text is not None}
    for item in ctx.chat_items:
        ans = answer_text(item)
        st = statement_for(user_text(item), ans)
        if ctx.checked("statement", st, item, ans, seen_text):
            ctx.add(item, "statement", text=st)


KIND = Kind(
    name="statement", order=20, run=run, active=lambda a: a.statements,
    summary="the answer as a standalone statement, loss on all of it",
    knobs=(("statements", bool, knob(True, "Add each answer as a standalone statement naming its subject, loss on "
                                     "all of it (kind 'statement').", group="augment", panel=True)),),
)
