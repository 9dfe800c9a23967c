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


# A definition opens the answer: "Pressgurka is a Swedish pressed cucumber salad: ...", "Köttkvarn means meat
# grinder; ...", "Dagens lunch, the lunch of the day, is the weekday set meal ...".
_DEFINITION = re.compile(r"^(?:the |a |an )?(?P<x>[^,.:;()]{2,40}?)(?:, [^,.:;]{2,60},)? (?P<cop>is|are|means|mean|"
                         r"refers to|refer to) (?P<pred>[^.:;(]+)", re.IGNORECASE)
# What follows a definition's first clause and is not part of it ("..., usually beef and pork", "..., which is").
_CLAUSE_END = re.compile(r",\s+(?:which|who|whose|where|usually|often|sometimes|typically|mostly|especially|sold|"
                         r"made|served|used|eaten|the|a|an|and|but|so|or|with|from|in|on|at|for|as|while|though)\b"
                         r"|\s+and\s+(?:\S+\s+)?(?:is|are|was|were|has|have|comes|come|means)\b"
                         r"|\s+(?:is|are|was|were)\s")
# Predicates that describe a use or a comparison, not what the term names ("short for ...", "what Swedes say").
_NOT_A_NAME = re.compile(r"^(?:what|how|when|where|why|who|not|also|short|one of|best|usually|often|just|simply|"
                         r"the same|similar|like|made|used|served|sold|eaten|said|found|known)\b", re.IGNORECASE)
# The reverse question for a term, in three wordings; its answer names the term (Berglund et al.: one
# direction a fact is seen in is the only one it is recalled in, so each wording adds a route to it).
TERM_WORDINGS = (
    ("What {cop} {pred} called?", "{Pred} {cop} called {x}."),
    ("What is the word for {pred}?", "The word for {pred} is {x}."),
    ("Which term means {pred}?", "{X} means {pred}."),
)


def term_definition(question: str, answer: str) -> tuple[str, str, str] | None:
    """(term, what it names, 'is'/'are') when the answer opens by defining a term that the question asks about:
    ('kryddpeppar', 'allspice', 'is') from 'What does kryddpeppar mean?' / 'Kryddpeppar is allspice, the dried
    berry ...'. None where the answer does not open so, or the term is not in the question, or it is longer
    than a term (4 words), or the predicate is a use rather than a name ('short for ...')."""
    first = sentences(answer.strip())[0] if answer.strip() else ""
    m = _DEFINITION.match(first)
    if not m:
        return None
    x = m.group("x").strip().strip("'\"“”")
    if not x or len(x.split()) > 4 or " of " in x or not has_word(question, x) or x.lower() in FUNCTION_WORDS:
        return None  # a term ("pressgurka"), not a description ("the flower symbol of Quenby")
    if re.match(r"^(it|they|this|that|these|those|there|he|she|we|you)$", x, re.IGNORECASE):
        return None
    if _first_wh_word(question) not in ("what", "which") and not re.search(r"\b(mean|means|meaning|tell me)\b",
                                                                            question, re.IGNORECASE):
        return None  # "Are lingonberries healthy?" -> "Lingonberries are rich in ...": a property, not a name
    # the term as the text spells it inside a sentence ("Potatismos appears ..." -> "potatismos")
    spellings = [hit.group(0) for text in (question, answer)
                 for hit in re.finditer(rf"(?<!\w){re.escape(x)}(?!\w)", text, re.IGNORECASE)]
    x = next((w for w in spellings if w[:1].islower()), spellings[0])
    pred = m.group("pred").strip()
    parts = re.split(r"(,\s+)", pred)
    # "dried, finely ground breadcrumbs": one bare word before the comma is part of the noun phrase
    if (len(parts) >= 3 and len(re.sub(r"^(?:the|a|an) ", "", parts[0]).split()) == 1
            and not _CLAUSE_END.match(parts[1] + parts[2])):
        pred = parts[0] + parts[1] + parts[2]
    else:
        pred = parts[0]
    pred = _CLAUSE_END.split(pred)[0].strip().strip("'\"“”")
    if (not pred or _NOT_A_NAME.match(pred) or re.match(r"^[A-Z]\w* for\b", pred) or '"' in pred
            or not 1 <= len(pred.split()) <= 14 or has_word(pred, x)):
        return None  # a use ("short for"), a translation ("Swedish for ..."), a quote, the term itself
    if all(w[:1].isupper() or w in ("of", "the") for w in re.sub(r"^(?:the|a|an) ", "", pred).split()):
        return None  # "The mayor of Tindleford is Agatha Brumwell": a name, which the entity rule reverses
    ent = answer_entity(question, answer)
    if ent and has_word(pred, ent) and _stands_as_a_name(ent, answer, strict=True):
        return None  # "Millbeck is famous for a cheese called Blue Tansy": the answer is the name, as above
    first_word = pred.split()[0].lower()
    if first_word in FUNCTION_WORDS and first_word not in ("a", "an", "the"):
        return None  # "on the menu in most restaurants", "of the day": a place or a part, not a name
    if re.match(r"^(?:\w+(?:er|est) (?:and|or) \w+|\w+ed (?:by|in|on|at|with|from|for|as|to)\b|[\w-]+(?:ed|-\w+)$)",
                pred):
        return None  # "bigger and flatter", "marked by enthusiasts ...", "pre-fried", "protein-rich": no noun
    cop = "are" if m.group("cop").lower() in ("are", "mean", "refer to") else "is"
    return x, pred, cop


def term_reverses(question: str, answer: str) -> list[tuple[str, str, str]]:
    """The reverse questions (with their answers and the term) for an answer that defines a term, in each of
    TERM_WORDINGS; [] where term_definition finds none."""
    found = term_definition(question, answer)
    if found is None:
        return []
    x, pred, cop = found
    out = []
    for q_form, a_form in TERM_WORDINGS:
        rq = q_form.format(cop=cop, pred=pred, x=x)
        ra = a_form.format(cop=cop, pred=pred, Pred=pred[0].upper() + pred[1:], x=x, X=x[0].upper() + x[1:])
        out.append((rq, ra, x))
    return out


def _first_wh_word(question: str) -> str | None:
    m = re.search(r"\b(who|whom|whose|which|what|where|when|why|how)\b", question, re.IGNORECASE)
    return m.group(1).lower() if m else None


def _stands_as_a_name(entity: str, answer: str, strict: bool = False) -> bool:
    """Whether an entity stands in the answer as a name ('Pim is', 'named Pim.', 'speak Oskvari.') rather than
    as a modifier ('Swedish sausages', '14 March every year', '"Light before haste"'). A name of two or more
    words is taken as one unless `strict` ('the Swedish Easter buffet' is not one)."""
    if len(entity.split()) > 1 and not strict:
        return True
    e = re.escape(entity)
    return bool(re.search(rf"(?:^|[^\w'’-]){e}(?:[.,;:!?]|\s+(?:is|was|are|were|has|had)\b|$)", answer))


def reverse_for(question: str, answer: str, common: frozenset[str] = frozenset()) -> tuple[str, str, str] | None:
    """(reverse question, its answer, the entity) when the answer defines a term the question asks about (the
    first of term_reverses) or gives a name the question does not contain (entity_reverse); None otherwise."""
    terms = term_reverses(question.strip(), answer.strip())
    return terms[0] if terms else entity_reverse(question, answer, common)


def entity_reverse(question: str, answer: str, common: frozenset[str] = frozenset()) -> tuple[str, str, str] | None:
    """(reverse question, its answer, the entity) when the answer gives a name the question does not contain;
    None otherwise. `common`: entities (lowercased) that many of the set's answers name ('Swedish', 'IKEA'): a
    topic, not one fact's answer, so 'What is Sweden?' has no single reply and is not written."""
    q = question.strip()
    a = answer.strip()
    if _first_wh_word(q) not in ("who", "whom", "whose", "which", "what", "where"):
        return None  # a yes/no, when, why or how question: its answer is not a name to ask about
    ent = answer_entity(q, a)
    if not ent or ent.lower() in common or not _stands_as_a_name(ent, a):
        return None
    # The entity first where the rules can restate it so; otherwise the answer as it is, which still
    # pairs the entity in the question with the fact in the answer.
    body = subject_first(ent, a) or a
    who = bool(_ASK_PERSON.match(q)) or ent.split()[0].lower() in _PERSON_TITLES  # "Who is King Charles XII?"
    rq = f"Who is {ent}?" if who else f"What is {ent}?"
    return rq, body, ent


def common_entities(pairs: list[tuple[str, str]], most: int = 3) -> frozenset[str]:
    """Names (lowercased: a capitalised run of words, and each of its words) that the answers of more than
    `most` items give: the set's topics ('swedish', 'ikea', 'charles xii')."""
    counts: dict[str, int] = {}
    for _, a in pairs:
        seen = set()
        for run in _NAME_RUN.findall(a):
            words = run.split()
            while words and words[0].lower() in FUNCTION_WORDS:
                words = words[1:]
            seen |= {w.lower() for w in words} | ({" ".join(words).lower()} if words else set())
        for name in seen:
            counts[name] = counts.get(name, 0) + 1
    return frozenset(w for w, n in counts.items() if n > most)


def run(ctx) -> None:
    not_applicable = 0
    english = []
    for item in ctx.chat_items:
        if is_english(user_text(item)):
            english.append(item)
        else:
            ctx.rejects.add("reverse", "not_english", user_text(item))  # the rules parse English only
    common = common_entities([(user_text(item), answer_text(item)) for item in english])
    for item in english:
        q, ans = user_text(item), answer_text(item)
        found = term_reverses(q, ans) or [r for r in [entity_reverse(q, ans, common)] if r]
        if not found:
            not_applicable += 1
            continue
        for rq, ra, ent in found:
            reason = "copy" if norm_question(rq) in ctx.existing else None
            reason = reason or check_answer_text(ra, q + " " + ans, (ent,))
            # a capitalised word the item does not have in any case ("Allspice" opening a sentence is no name)
            if reason is None and (names(ra) - {w.lower() for w in WORD.findall(q + " " + ans)}):
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
