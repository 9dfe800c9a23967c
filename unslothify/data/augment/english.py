"""English rewording rules: deterministic, no model. Questions are reworded by lead-phrase and word swaps,
passive forms, a place phrase moved to the front and wrappers ("Do you know ...?"), each variant checked
(checks.check_question) before it is kept.

The rules are written for English alone. `is_english` tells a question's language from its most frequent
function words, and the rules refuse (return nothing for) text that is not English, so a file in another
language gets no broken rewordings: the kinds count what they skipped for the report.
"""

from __future__ import annotations

import random
import re

from .checks import FUNCTION_WORDS, WORD, Rejects, check_question, norm_question

# The most frequent function words of English and of the languages users' data most often comes in
# instead. A few words are shared (Dutch "is", German "was", Portuguese "as"); a text is taken as English
# unless another language's function words outnumber English ones in it.
STOPWORDS = {
    "en": set("the a an of to in is are was were be been being what who whom whose which when where why how do "
              "does did done and or but not no with for on at by from as into about than then there their they "
              "them it its this that these those has have had can could will would should shall may might must "
              "i you he she we my your his her our me us if so any some all many much more most one only also "
              "very just name tell give".split()),
    "nl": set("de het een van en is zijn wat wie welke wanneer waar waarom hoe op met voor door aan bij dat die "
              "niet ook heeft hebben wordt worden werd er naar om uit".split()),
    "de": set("der die das dem den des ein eine einen und ist sind was wer welche welcher wann wo warum wie mit "
              "für auf von zu im nicht auch hat haben wird wurde sich".split()),
    "fr": set("le la les un une des et est sont que qui quel quelle quels quand où pourquoi comment avec pour sur "
              "dans du au aux ont ce cette".split()),
    "es": set("el la los las un una y es son qué quién quiénes cuál cuándo dónde por cómo con para en del al "
              "se fue lo".split()),
    "it": set("il lo gli le un una e è sono che chi quale quando dove perché come con per su di del della".split()),
    "pt": set("o os um uma e é são que quem qual quando onde por como com para em do da dos das".split()),
    "sv": set("en ett och är var vad vem vilken vilket när varför hur med för på av till det den inte som har "
              "hade".split()),
}


def detect_language(text: str) -> str | None:
    """The language whose function words the text has most of (English on a tie), None when it has none."""
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", text)]
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in STOPWORDS.items()}
    best = max(scores.values())
    if best == 0:
        return None
    return "en" if scores["en"] == best else max(scores, key=scores.get)


def is_english(text: str) -> bool:
    """True unless the text reads as another language (no function words at all gives the rules a try)."""
    return detect_language(text) in ("en", None)


AUXILIARIES = ("is", "are", "was", "were", "does", "do", "did", "has", "have", "had", "can", "will", "would", "should")
_IRREGULAR_PAST = {
    "do": "did", "keep": "kept", "build": "built", "write": "wrote", "make": "made", "hold": "held", "find": "found",
    "give": "gave", "take": "took", "bring": "brought", "sell": "sold", "see": "saw", "eat": "ate",
    "run": "ran", "begin": "began", "become": "became", "come": "came", "get": "got", "go": "went",
    "know": "knew", "lead": "led", "ring": "rang", "rise": "rose", "speak": "spoke", "tell": "told",
    "think": "thought", "wear": "wore", "win": "won", "hang": "hung", "fly": "flew", "grow": "grew",
    "teach": "taught", "pay": "paid", "say": "said", "leave": "left", "feel": "felt", "meet": "met",
    "spend": "spent", "stand": "stood", "draw": "drew", "choose": "chose", "put": "put", "set": "set",
}
_IRREGULAR_PARTICIPLE = {
    "keep": "kept", "build": "built", "write": "written", "make": "made", "hold": "held", "find": "found",
    "give": "given", "take": "taken", "bring": "brought", "sell": "sold", "see": "seen", "eat": "eaten",
    "know": "known", "lead": "led", "speak": "spoken", "tell": "told", "wear": "worn", "win": "won",
    "draw": "drawn", "choose": "chosen", "grow": "grown", "teach": "taught", "pay": "paid", "fly": "flown",
    "begin": "begun", "ring": "rung", "hang": "hung", "put": "put", "set": "set",
}
_PARTICIPLE_TO_BASE = {v: k for k, v in _IRREGULAR_PARTICIPLE.items()}
_PAST_TO_BASE = {v: k for k, v in _IRREGULAR_PAST.items()}

# Whole-phrase swaps at the start of a question (case-insensitive), each a list of alternatives.
LEAD_SWAPS = [
    (r"^who\b", ["Which person", "Who exactly"]),
    (r"^which person\b", ["Who"]),
    (r"^how many (\w+) (.*)\?$", [r"What number of \1 \2?", r"How many \1 \2, in all?"]),
    (r"^when was\b", ["In what year was", "When exactly was"]),
    (r"^when did\b", ["In what year did", "At what point did"]),
    (r"^when\b", ["At what time"]),
    (r"^in what year\b", ["When", "In which year"]),
    (r"^in which year\b", ["When", "In what year"]),
    (r"^what is the name of\b", ["What is", "What's the name of", "What name does one give to"]),
    (r"^what was the name of\b", ["What was", "What name was given to"]),
    (r"^what is\b", ["What's", "What exactly is"]),
    (r"^what's\b", ["What is"]),
    (r"^what are\b", ["What're", "What exactly are"]),
    (r"^which\b", ["What"]),
    (r"^what (?!(?:is|are|was|were|do|does|did|has|have|can|will|would|should)\b)(?=[a-z]+ (?:is|are|was|were|do|does|did|has|have|[a-z]+ed|[a-z]+s [a-z])\b)", ["Which "]),
    (r"^where\b", ["In what place", "Where exactly"]),
    (r"^how long is (.*)\?$", [r"What length is \1?", r"What is the length of \1?"]),
    (r"^how much does (.*) weigh\?$", [r"What does \1 weigh?", r"What is the weight of \1?"]),
    (r"^why\b", ["For what reason"]),
]
# Word swaps anywhere (lowercase words only, so names are never touched).
WORD_SWAPS = {
    "invented": ["created", "came up with"], "founded": ["established", "set up"],
    "built": ["constructed", "made"], "wrote": ["authored", "penned"], "designed": ["planned", "drew up"],
    "discovered": ["found", "first found"], "created": ["made", "invented"], "made": ["produced", "created"],
    "started": ["founded", "began"], "famous": ["well known", "known"], "known": ["famous", "noted"],
    "official": ["formal", "recognised"], "traditional": ["customary", "classic"],
    "usually": ["typically", "normally"], "often": ["frequently", "commonly"], "main": ["principal", "chief"],
    "big": ["large"], "large": ["big"], "small": ["little"], "little": ["small"],
    "highest": ["tallest", "loftiest"], "tallest": ["highest"], "name": ["title"], "called": ["named"],
    "named": ["called"], "people": ["folk", "residents"], "village": ["settlement"],
    "leads": ["runs", "heads"],
    "use": ["employ"], "uses": ["employs"], "gives": ["lends"], "give": ["lend"], "symbol": ["emblem"],
    "emblem": ["symbol"], "colour": ["color"], "color": ["colour"], "number": ["count"], "count": ["number"],
    "buy": ["purchase"], "represents": ["stands for", "symbolises"],
    "responsible": ["in charge"], "celebrate": ["mark"], "typical": ["usual", "standard"],
    "classic": ["traditional"], "served": ["eaten"], "serve": ["offer"], "cook": ["prepare"],
    "recipe": ["method"], "dish": ["meal"], "difference": ["distinction"], "why": ["for what reason"],
    "need": ["require"], "get": ["obtain"],
}
_PREFIXES = [
    "Tell me, {q}", "Do you know {e}?", "Can you tell me {e}?", "I'd like to know {e}.", "Quick question: {q}",
    "{q} Please answer briefly.", "Could you explain {e}?", "I was wondering {e}.", "Please tell me {e}.",
    "Any idea {e}?",
]


def inflect_3sg(verb: str) -> str:
    if verb in ("have", "do", "be", "go"):
        return {"have": "has", "do": "does", "be": "is", "go": "goes"}[verb]
    if re.search(r"(s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def past(verb: str) -> str:
    if verb in _IRREGULAR_PAST:
        return _IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ied"
    return verb + "ed"


def participle(verb: str) -> str:
    return _IRREGULAR_PARTICIPLE.get(verb, past(verb))


def base_of_past(word: str) -> str | None:
    """'invented' -> 'invent', 'wrote' -> 'write', 'kept' -> 'keep' (None when not a past form we know)."""
    w = word.lower()
    if w in _PAST_TO_BASE:
        return _PAST_TO_BASE[w]
    if w in _PARTICIPLE_TO_BASE:
        return _PARTICIPLE_TO_BASE[w]
    if w.endswith("ied") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ed") and len(w) > 4:
        stem = w[:-2]
        if stem.endswith(("at", "ut", "ir", "ov", "ag", "eas", "ar", "rv", "uc", "rc", "dg", "iz", "is", "ag")):
            return stem + "e"
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "ls":
            return stem[:-1]
        return stem
    return None


def _looks_participle(word: str) -> bool:
    w = word.lower()
    return w in _PARTICIPLE_TO_BASE or (w.endswith("ed") and len(w) > 3 and w not in {"red", "bed", "need",
                                                                                         "seed", "speed", "shed"})


_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those", "its", "their", "his", "her", "our", "your",
                "my", "you", "people", "they", "we", "i", "he", "she", "it"}
_ADVERBS = {"first", "ever", "still", "usually", "traditionally", "really", "actually", "also", "often", "always",
            "never", "well", "best", "most", "originally", "typically", "normally", "mainly"}
_RELATIVE = {"that", "who", "which", "where", "when", "whose"}
# Base-form verbs that follow do/does/did in questions ("Where does the river END?").
_VERBS = set("""
end empty flow run use call light wear make take eat serve mean have come go get give keep hold open close begin start
need cost weigh contain include live speak say cook fry bake add taste look sell buy pay sit stand reach do play win
lead rule grow become show appear represent mark celebrate know think want like prefer drink fly sail carry build
write invent found discover design create produce ship export import hang ring chair run cover cross hide store
grind mix stir brown boil simmer roast fill shape roll soak thicken season freeze reheat thaw serve garnish pour
describe differ compare belong originate arrive leave return travel die marry vote bring send stay remain celebrate
""".split())


def _wh_length(words: list[str]) -> int:
    first = words[0].lower()
    if first == "how" and len(words) > 1 and words[1].lower() in ("many", "much", "long", "old", "far", "big", "tall",
                                                                   "heavy", "often", "large", "deep", "high", "wide"):
        i = 2
    elif first in ("which", "what", "whose", "how"):
        i = 1
    else:
        return 1
    if first in ("which", "what", "whose") or words[1].lower() in ("many", "much"):
        j = i
        while j < len(words) and j < i + 3 and words[j].lower() not in AUXILIARIES and words[j][0].islower() \
                and words[j].lower() not in FUNCTION_WORDS | _DETERMINERS:
            j += 1
        if j < len(words) and words[j].lower() in AUXILIARIES:
            return j
        return i if first != "how" else j
    return i


def embedded_question(q: str) -> str | None:
    """The question as an embedded clause ('who keeps the light', 'when Dunmereth was founded'), or None
    when the rules cannot rearrange it safely."""
    body = q.strip().rstrip("?").strip()
    words = body.split()
    if len(words) < 2 or "," in body or ";" in body or re.search(
            r"\b(and|or)\s+(who|what|which|when|where|why|how|is|are|do|does|can|should)\b", body, re.IGNORECASE):
        return None
    first = words[0].lower()
    if first not in {"who", "what", "which", "when", "where", "why", "how", "whose", "whom"}:
        return None
    i = _wh_length(words)
    head = " ".join([first] + words[1:i])
    subject_wh = first in ("who", "what", "which", "whose") or (first == "how" and words[1].lower() in ("many", "much")
                                                               and i > 2)
    if i >= len(words) or words[i].lower() not in AUXILIARIES:
        return " ".join([first] + words[1:]) if subject_wh else None
    aux = words[i].lower()
    rest = words[i + 1:]
    if not rest:
        return None
    r0 = rest[0]
    np_led = r0.lower() in _DETERMINERS or r0[0].isupper() or len(rest) == 1
    if aux in ("can", "will", "would", "should") and np_led:
        for j in range(1, len(rest)):
            if rest[j].lower() in _VERBS | {"be"}:
                return " ".join([head, *rest[:j], aux, *rest[j:]])
        return None
    if aux in ("do", "does", "did"):
        for j in range(1, len(rest)):
            w = rest[j].lower()
            if w in _VERBS and rest[j - 1].lower() not in _RELATIVE:
                form = w if aux == "do" else inflect_3sg(w) if aux == "does" else past(w)
                return " ".join([head, *rest[:j], form, *rest[j + 1:]])
        return None
    if not np_led:
        # "which person is responsible for X", "what language is spoken in X": the wh-phrase is the subject
        return " ".join([head, aux, *rest]) if subject_wh else None
    if r0[0].isupper() and r0.lower() not in _DETERMINERS:
        j = 0
        while j < len(rest) and (rest[j][0].isupper() or rest[j] in ("of", "'s")):
            j += 1
        return " ".join([head, *rest[:j], aux, *rest[j:]])
    for j, w in enumerate(rest):
        if w.lower() in _RELATIVE:
            break
        if j > 0 and _looks_participle(w):
            k = j - 1 if rest[j - 1].lower() in _ADVERBS else j
            return " ".join([head, *rest[:k], aux, *rest[k:]])
    if first in ("what", "which", "who", "whose") and (len(rest) == 1 or r0.lower() in ("the", "a", "an")):
        return " ".join([head, *rest, aux])  # "what the official colour of X is"
    return None


def is_name_start(text: str) -> bool:
    w = WORD.match(text)
    return bool(w) and w.group(0).lower() not in FUNCTION_WORDS and w.group(0)[0].isupper()


def front_phrase(q: str) -> str | None:
    """Move a trailing place/time phrase to the front: 'What language is spoken in the Tirenne valley?' ->
    'In the Tirenne valley, what language is spoken?'"""
    body = q.strip()
    if not body.endswith("?"):
        return None
    m = re.search(r"\s(in|on|at|during|for)\s+([^?,]+)\?$", body)
    if not m or len(m.group(2).split()) > 6:
        return None
    last = m.group(2).split()[-1].lower()
    if last in _VERBS or last in AUXILIARIES or _looks_participle(last) or last in _PARTICIPLE_TO_BASE:
        return None  # "... in Drummond Vale called?": the phrase is not a place
    phrase = f"{m.group(1).capitalize()} {m.group(2)}"
    rest = body[:m.start()].strip()
    if len(rest.split()) < 3:
        return None
    if not any(w[0].isupper() for w in m.group(2).split()):
        return None  # only move phrases that name something, so meaning stays put
    return f"{phrase}, {rest[0].lower() + rest[1:] if not is_name_start(rest) else rest}?"


def _passive(q: str) -> list[str]:
    """'Who invented the Warmwell kettle?' -> 'The Warmwell kettle was invented by whom?', 'By whom was ...'"""
    m = re.match(r"^who\s+(\w+)\s+(.+?)\?$", q.strip(), re.IGNORECASE)
    if not m:
        return []
    verb, obj = m.group(1), m.group(2)
    base = base_of_past(verb)
    if base is None or verb.lower() in ("is", "was", "are", "were", "has", "had", "did"):
        # present tense: "Who keeps the lighthouse" -> "Who is the lighthouse kept by?"
        if verb.lower().endswith("s") and verb.lower() not in ("is", "was", "has", "does"):
            vb = verb.lower()[:-1]
            vb = vb[:-2] + "y" if vb.endswith("ie") else vb[:-1] if vb.endswith(("sse", "she", "che", "xe")) else vb
            part = participle(vb)
            o = obj[0].upper() + obj[1:]
            return [f"By whom is {obj} {part}?", f"{o} is {part} by whom?"]
        return []
    part = participle(base)
    o = obj[0].upper() + obj[1:]
    return [f"{o} was {part} by whom?", f"By whom was {obj} {part}?", f"Who was {obj} {part} by?"]


def _structural(q: str) -> list[str]:
    """Variants that change the question itself: a lead-phrase swap, passive forms, a place phrase moved to
    the front, and one word swap per variant (lowercase words only, so names are never touched)."""
    out: list[str] = []
    for pattern, alternatives in LEAD_SWAPS:
        if re.search(pattern, q, re.IGNORECASE):
            out += [re.sub(pattern, alt, q, count=1, flags=re.IGNORECASE) for alt in alternatives]
            break
    out += _passive(q)
    fronted = front_phrase(q)
    if fronted:
        out.append(fronted)
    toks = q.split(" ")
    for j, t in enumerate(toks):
        core = t.strip("?,.!;:")
        if core and core.islower() and core in WORD_SWAPS and j > 0:
            out += [" ".join(toks[:j] + [t.replace(core, alt)] + toks[j + 1:]) for alt in WORD_SWAPS[core]]
    return out


def _wrappers(q: str) -> list[str]:
    """The question inside a frame ('Tell me, ...', 'Do you know who ...?'), as an embedded clause where the
    rules can make one."""
    emb = embedded_question(q)
    out = []
    for tpl in _PREFIXES:
        if "{e}" in tpl and emb is None:
            continue
        body_q = q[0].lower() + q[1:] if not is_name_start(q) else q
        out.append(tpl.format(q=body_q if tpl.startswith("Tell me") else q, e=emb or ""))
    return out


def rule_rephrasings(question: str, k: int, rng: random.Random, existing: set[str],
                     rejects: Rejects | None = None) -> list[str]:
    """Up to k reworded questions by rules: structural changes (_structural), wrappers (_wrappers) and the two
    combined, taken in turn, each checked. Deterministic for a given rng."""
    q = question.strip()
    if not q or not is_english(q):
        return []  # the rules parse English only
    structural, wrappers = _structural(q), _wrappers(q)
    rng.shuffle(structural)
    rng.shuffle(wrappers)
    combos = []  # a structural change inside a wrapper, for variety
    for s in structural[:3]:
        e2 = embedded_question(s)
        if e2 and wrappers:
            combos.append(rng.choice([t for t in _PREFIXES if "{e}" in t]).format(e=e2, q=s))
    candidates: list[str] = []
    pools = [structural, wrappers, combos]
    while any(pools):
        for pool in pools:
            if pool:
                candidates.append(pool.pop(0))
    out: list[str] = []
    seen = set(existing)
    for c in candidates:
        c = re.sub(r"\s+", " ", c).strip()
        c = c[0].upper() + c[1:]
        reason = check_question(c, q, seen)
        if reason:
            if rejects is not None and reason != "copy":
                rejects.add("rephrase", reason, c)
            continue
        out.append(c)
        seen.add(norm_question(c))
        if len(out) == k:
            break
    return out
