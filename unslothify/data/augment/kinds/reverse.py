"""reverse: a question the other way round where the answer is a name or entity ("Who is Edda Lindqvist?"),
or the question asks what a term means ("What is a Swedish pressed cucumber salad called?"), so the fact is
reached from either end (Berglund et al., the Reversal Curse). English rules: other languages are skipped."""

from __future__ import annotations

import re

from ....knobs import knob
from ..checks import (
    COMMON_SENTENCE_STARTS,
    FUNCTION_WORDS,
    WORD,
    answer_text,
    check_answer_text,
    has_word,
    names,
    norm_question,
    sentences,
    system_messages,
    user_text,
)
from ..english import base_of_past, inflect_3sg, is_english, past
from . import Kind

_NAME_RUN = re.compile(r"(?:(?:[A-Z][\w'’-]+|of|the|de|van|von|la|le)\s+)*[A-Z][\w'’-]+", re.UNICODE)
_ASK_PERSON = re.compile(r"^(who|whom|whose|which (person|woman|man|author|writer|inventor|architect|baker|player|"
                         r"clockmaker|painter|composer|king|queen|captain|mayor|founder))\b", re.IGNORECASE)
_PERSON_TITLES = {"king", "queen", "prince", "princess", "sir", "lady", "lord", "saint", "st", "dr", "captain",
                  "president", "mayor", "professor", "chef", "count", "countess", "duke", "duchess", "emperor"}
_DEFINE = [
    re.compile(r"^what (?:is|are|was|were) (?P<x>[^?]{2,40})\?$", re.IGNORECASE),
    re.compile(r"^what does (?P<x>[^?]{2,40}) mean\?$", re.IGNORECASE),
    re.compile(r"^what kind of \w+ (?:is|are) (?P<x>[^?]{2,40})\?$", re.IGNORECASE),
    re.compile(r"^(?:what|who) (?:is|are) (?:a |an |the )?(?P<x>[^?]{2,40}),? and [^?]*\?$", re.IGNORECASE),
    re.compile(r".*\b(?P<x>[^\s?]+) [—-] what (?:is|are) (?:it|they)\?$", re.IGNORECASE),
    re.compile(r"^what makes (?P<x>[^?]{2,40}) special\?$", re.IGNORECASE),
    re.compile(r"^what (?:are|is) (?P<x>[^?]{2,40}) like\?$", re.IGNORECASE),
]


def answer_entity(question: str, answer: str) -> str | None:
    """A name or entity the answer gives that the question does not contain ('Edda Lindqvist'), or None.

    Taken from the answer's first sentence: the longest run of capitalised words (with 'of'/'the' inside)
    none of whose words the question has, so 'Which colour do Pellaria rowers wear?' gives no entity
    (the answer's 'Pellaria Rowing Club' is the question's subject, not its answer)."""
    q_words = {re.sub(r"['’]s$", "", w.lower()) for w in WORD.findall(question)}
    first = sentences(answer)[0] if answer.strip() else ""
    best = None
    for m in _NAME_RUN.finditer(first):
        parts = [re.sub(r"['’]s$", "", p) for p in m.group(0).split()]
        at_start = m.start() == 0 or not first[:m.start()].strip()
        if at_start and parts and (parts[0].lower() in COMMON_SENTENCE_STARTS or parts[0].lower().endswith("ing")):
            parts = parts[1:]
        while parts and (parts[0].lower() in FUNCTION_WORDS or parts[0].lower() in ("of", "de", "van", "von")):
            parts = parts[1:]
        while parts and parts[-1].lower() in ("of", "the", "de", "van", "von", "la", "le"):
            parts = parts[:-1]
        if not parts or not parts[0][0].isupper():
            continue
        if any(p.lower() in q_words for p in parts if p.lower() not in ("of", "the")):
            continue
        if at_start and len(parts) == 1:
            # one capitalised word opening the answer is usually just the first word ("Butter gives ...");
            # take it only as an appositive or a copula subject ("Maizena, a brand of ...", "Pim is ...")
            after = first[m.end():]
            if not re.match(r"^(,\s+(a|an|the)\s|\s+(is|was|are|were)\s+(a|an|the)\s)", after):
                continue
        span = " ".join(parts)
        if best is None or len(span) > len(best):
            best = span
    return best


def subject_first(entity: str, answer: str) -> str | None:
    """The answer restated with the entity first: 'The mayor of X is E.' -> 'E is the mayor of X.';
    'The X was invented by E.' -> 'E invented the X.'; an answer sentence that starts with E as it is."""
    for sent in sentences(answer):
        if sent.lower().startswith(entity.lower()):
            return sent
    sent = next((s for s in sentences(answer) if has_word(s, entity)), None)
    if sent is None:
        return None
    e = re.escape(entity)
    m = re.match(rf"^(?P<s>.+?) (?P<aux>is|was|are|were) (?:(?P<part>\w+) by )?(?:the \w+ |the ship |a \w+ called |called |named )?{e}(?P<tail>.*)$",
                 sent)
    if m:
        subj = m.group("s")
        w = subj.split()
        if w[0].lower() in ("the", "a", "an") and len(w) > 1 and not all(x[0].isupper() for x in w[1:]):
            subj = subj[0].lower() + subj[1:]
        tail = m.group("tail").rstrip(".")
        if m.group("part"):
            base = base_of_past(m.group("part"))
            if base:
                verb = inflect_3sg(base) if m.group("aux") in ("is", "are") else past(base)
                return f"{entity} {verb} {subj}{tail}."
            return f"{entity} {m.group('aux')} the one who {m.group('part')} {subj}{tail}."
        return f"{entity} {m.group('aux')} {subj}{tail}."
    return None


def reverse_for(question: str, answer: str) -> tuple[str, str, str] | None:
    """(reverse question, its answer, the entity) when the answer is a name/entity or the question asks
    what a term means; None otherwise."""
    q = question.strip()
    a = answer.strip()
    # 1. "What is pressgurka?" -> "Pressgurka is a Swedish pressed cucumber salad: ..." reversed to
    #    "What is a Swedish pressed cucumber salad called?" -> "A Swedish pressed cucumber salad is called pressgurka."
    for pat in _DEFINE:
        m = pat.match(q)
        if not m:
            continue
        x = m.group("x").strip().strip("'\"")
        if len(x.split()) > 3 or re.match(r"^(a|an|the|this|that|my|your)\s", x, re.IGNORECASE) or " of " in x:
            continue  # a term ("pressgurka"), not a description ("the flower symbol of Quenby")
        dm = re.match(rf"^(?:the |a |an )?{re.escape(x)}s? (?:is|are|was|were|means|refers to) (?P<pred>[^.:;]+)", a,
                      re.IGNORECASE)
        if not dm:
            continue
        pred = dm.group("pred").strip().split(",")[0].strip()
        pred = re.split(r",\s+(?:which|who|usually|often|the|a|an|and|but|so)\b|\s+and\s+(?:is|are)\b", pred)[0]
        if len(pred.split()) < 1 or len(pred.split()) > 14:
            continue
        p_cap = pred[0].upper() + pred[1:]
        return (f"What is {pred} called?", f"{p_cap} is called {x}.", x)
    # 2. an entity in the answer that the question does not name
    ent = answer_entity(q, a)
    if not ent:
        return None
    # The entity first where the rules can restate it so; otherwise the answer as it is, which still
    # pairs the entity in the question with the fact in the answer.
    body = subject_first(ent, a) or a
    who = bool(_ASK_PERSON.match(q)) or ent.split()[0].lower() in _PERSON_TITLES  # "Who is King Charles XII?"
    rq = f"Who is {ent}?" if who else f"What is {ent}?"
    return rq, body, ent


def run(ctx) -> None:
    not_applicable = 0
    for item in ctx.chat_items:
        q, ans = user_text(item), answer_text(item)
        if not is_english(q):
            ctx.rejects.add("reverse", "not_english", q)  # the rules parse English only
            continue
        rev = reverse_for(q, ans)
        if rev is None:
            not_applicable += 1
            continue
        rq, ra, ent = rev
        reason = "copy" if norm_question(rq) in ctx.existing else None
        reason = reason or check_answer_text(ra, q + " " + ans, (ent,))
        if reason is None and (names(ra) - names(q + " " + ans)):
            reason = "names_added"
        if reason:
            ctx.rejects.add("reverse", reason, f"{rq} -> {ra}")
            continue
        ctx.existing.add(norm_question(rq))
        ctx.add(item, "reverse", messages=system_messages(item) + [{"role": "user", "content": rq},
                                                                   {"role": "assistant", "content": ra}])
    ctx.details["reverse_not_applicable"] = not_applicable


KIND = Kind(
    name="reverse", order=30, run=run, active=lambda a: a.reverse,
    summary="a question the other way round, where the answer is a name or entity",
    knobs=(("reverse", bool, knob(True, "Add reverse questions where the answer is a name or entity (kind "
                                  "'reverse'; English rules).", group="augment", panel=True)),),
)
