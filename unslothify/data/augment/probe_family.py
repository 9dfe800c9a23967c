"""The probe family: wordings kept out of training. Knowledge probes (unslothify/data/probes.py) ask a trained fact
in a sentence shape the rewording rules cannot write: from the answer's side (its sentence, with the key term
asked for in place: "The lighthouse on Varnholm island is kept by whom?"), and where the answer gives no such
sentence, every word the tables can swap, swapped at once after a lead-phrase swap (the training rules swap one
at a time), or a frame training never uses around the question. They share the English rules' phrase-level
parsing (english.py)."""

from __future__ import annotations

import random
import re

from .english import LEAD_SWAPS, WORD_SWAPS, embedded_question, front_phrase, is_english
from .checks import norm_question, sentences

_PROBE_FRAMES = [
    "Identify {e}.", "Remind me {e}.", "Settle this for me: {e}?", "Do you remember {e}?", "I'm curious {e}.",
    "Help me recall {e}.", "Say {e}.", "Name {e}.", "Is it known {e}?", "I forget {e}. Do you know?",
]
_PROBE_FRAMES_Q = ["Here is one for you: {q}", "Help me out: {q}", "A question on this: {q}", "Honest answer: {q}"]
_PROBE_WORD_SWAPS = {
    "keeps": "looks after", "keep": "look after", "invented": "devised", "founded": "set up", "built": "put up",
    "wrote": "was the writer of", "designed": "conceived", "discovered": "came upon", "hang": "are there",
    "official": "sanctioned", "traditional": "time-honoured", "usually": "as a rule", "often": "many times",
    "main": "key", "famous": "renowned", "known": "recognised", "called": "termed", "named": "titled",
    "people": "folks", "village": "hamlet", "town": "township", "leads": "directs", "uses": "makes use of",
    "use": "make use of", "colour": "shade", "color": "shade", "number": "total", "symbol": "sign",
    "celebrate": "commemorate", "typical": "characteristic", "served": "dished up", "serve": "dish up",
    "cook": "make", "recipe": "formula", "dish": "plate", "difference": "contrast", "need": "want",
    "end": "finish", "eat": "have", "made": "prepared", "start": "begin",
}


def lexical_rewording(q: str) -> str | None:
    """Every word the tables can swap, swapped at once (probe-only synonyms first), after a lead-phrase swap:
    the same question in other words, as a person asking it anew would put it. None when nothing changes."""
    out = q
    for pattern, alternatives in LEAD_SWAPS:
        if re.search(pattern, out, re.IGNORECASE):
            out = re.sub(pattern, alternatives[0], out, count=1, flags=re.IGNORECASE)
            break
    toks = out.split(" ")
    for j, t in enumerate(toks):
        core = t.strip("?,.!;:")
        alt = _PROBE_WORD_SWAPS.get(core) or (WORD_SWAPS.get(core) or [None])[0] if j and core.islower() else None
        if alt:
            toks[j] = t.replace(core, alt)
    out = " ".join(toks)
    return out if norm_question(out) != norm_question(q) else None


def _year(term: str) -> bool:
    return len(term) == 4 and term.isdigit() and term[:2] in ("15", "16", "17", "18", "19", "20")


def answer_side(answer: str, terms: list[str]) -> str | None:
    """The answer's first sentence that holds a key term, with the term asked for in its place ("The
    lighthouse on Varnholm island is kept by whom?", "Quillmoor's clock tower holds how many bells?"): the
    fact asked in the answer's own sentence shape, which no question in the data has and no rewording rule
    writes. None when no sentence holds a term once (a sentence that still shows another term gives it away).

    Why this family: on adapters saved while training (2 CPU cores, 2026-12-04, scripts/probe_agreement.py
    families), rewordings of the question (lexical) reached 0.97 while held-out questions stayed at 0.78-0.83:
    they keep the training question's shape, so they measure the training wording. Asked from the answer's
    side, probes overstated held-out recall by +0.06 and did not saturate (docs/probes.md)."""
    for sent in sentences(answer):
        for term in terms:
            if term not in sent:
                continue
            if term.isdigit():
                wh = "what year" if _year(term) else "how many"
            elif term[0].isupper():
                wh = "whom"
            else:
                wh = "what"
            body = sent.replace(term, wh, 1).rstrip(".!;: ")
            if any(t in body for t in terms) or body.strip().lower() == wh:
                continue
            if wh == "how many":  # "holds how many bells" reads; "is how many" does not
                body = re.sub(r"\b(is|are|was|were) how many\b", r"\1 what number", body)
            if body.lower().startswith("whom "):  # the subject of its sentence: "Who tends the lighthouse?"
                body = "who" + body[4:]
            return body[0].upper() + body[1:] + "?"
    return None


def probe_rewordings(question: str, rng: random.Random, answer: str = "", terms: list[str] | None = None) -> list[str]:
    """Wordings of one fact for a knowledge probe, best first: asked from the answer's side (answer_side, where
    the answer and its key terms are given), then the lexical rewording of the question (lexical_rewording), then the
    probe frames (frames training never uses) around it, each with a probe-only word swap where the question
    has one. Unchecked: the caller checks them against the data (checks.check_question)."""
    q = question.strip()
    if not q or not is_english(q):
        return []
    side = answer_side(answer, terms) if answer and terms else None
    lexical = lexical_rewording(q)
    return [x for x in (side, lexical) if x] + framed(q, rng)


def framed(q: str, rng: random.Random) -> list[str]:
    """The probe frames around the question (as an embedded clause where the rules can make one)."""
    swapped = []
    toks = q.split(" ")
    for j, t in enumerate(toks):
        core = t.strip("?,.!;:")
        if j > 0 and core.islower() and core in _PROBE_WORD_SWAPS:
            swapped.append(" ".join(toks[:j] + [t.replace(core, _PROBE_WORD_SWAPS[core])] + toks[j + 1:]))
    bases = swapped + [q] if swapped else [q]
    rng.shuffle(swapped)
    out = []
    for base in bases:
        emb = embedded_question(base)
        fronted = front_phrase(base)
        frames = [f.format(e=emb) for f in _PROBE_FRAMES] if emb else []
        rng.shuffle(frames)
        qs = [f.format(q=base) for f in _PROBE_FRAMES_Q]
        rng.shuffle(qs)
        if fronted:
            qs.insert(0, rng.choice(_PROBE_FRAMES_Q).format(q=fronted))
        out += frames[:3] + qs[:2]
    return [re.sub(r"\s+", " ", c).strip() for c in out]
