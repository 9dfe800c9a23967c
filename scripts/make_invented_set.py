#!/usr/bin/env python3
"""Write a set of invented facts in the shape of examples/invented, with other names and other facts, from a
seed: a set to confirm figures on that nobody tuned on (DEVELOPERS.md: tune on one set, confirm on another).

    python -m scripts.make_invented_set --seed 22 --out examples/confirm

Writes OUT/train.jsonl (each fact asked and answered in two phrasings, chat format) and OUT/questions.jsonl
(the eval contract: one held-out question per fact, worded unlike either training phrasing, plus reverse
questions that ask from the answer back to the subject). Names are made from syllables, so no model has seen
them; the fact kinds are the ones examples/invented covers (who keeps / invented / wrote / leads, counts,
years, colours, places, names of things), each with its own wordings. `--kinds term` writes a glossary of an
invented language instead, whose reverse questions ask for the word from the thing it names:

    python -m scripts.make_invented_set --seed 61 --kinds term --facts 30 --reverse 30 --out examples/terms
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ON = ["var", "quil", "dun", "pel", "kel", "tin", "grel", "cor", "ast", "mer", "skar", "hol", "kes", "oru", "hal",
      "grey", "mil", "vel", "pom", "cop", "sor", "fair", "drum", "quen", "ard", "vin", "bran", "wex", "lorn", "esk",
      "tam", "brek", "ost", "fen", "yar", "lum", "zan", "ber", "cal", "dra", "mun", "pir", "rost", "sel", "thal",
      "ulm", "vor", "wyn", "zel", "nor"]
MID = ["a", "e", "i", "o", "u", "ae", "ou", "y", "ar", "el", "in", "or"]
END = ["holm", "moor", "mereth", "ford", "ley", "wick", "stead", "vale", "dor", "mere", "by", "ton", "ria", "ven",
       "gard", "thorp", "ness", "mouth", "brook", "well"]
FIRST = ["Ansel", "Brisa", "Corin", "Dagny", "Elof", "Freja", "Gudrun", "Hakon", "Ilka", "Jorun", "Kasimir",
         "Liesel", "Magnus", "Nessa", "Oskar", "Petra", "Quill", "Rasmus", "Sigrid", "Torvald", "Ulla", "Vidar",
         "Wilma", "Ysolde", "Aurel", "Bettina", "Cassius", "Dorit", "Emrys", "Fenna"]
COLOURS = ["amber", "teal", "crimson", "ochre", "violet", "indigo", "copper", "olive", "scarlet", "slate grey"]
ANIMALS = ["marsh owl", "copper fox", "river otter", "snow hare", "blue ibex", "spotted lynx", "grey crane"]
INGREDIENTS = ["wild fennel", "smoked dulse", "black cardamom", "sea buckthorn", "pine honey", "sorrel"]
THINGS = ["lighthouse", "clock tower", "observatory", "watermill", "bell tower", "ferry"]
OBJECTS = ["folding kayak", "lantern stove", "weather kite", "tide clock", "rope ladder", "salt press"]
DISHES = ["fish stew", "rye porridge", "barley soup", "onion pie", "berry bread"]
UNITS = [("steps", "tower"), ("arches", "bridge"), ("bells", "belfry"), ("windows", "hall"), ("pillars", "temple")]
# things a local word can name (what it names, the word a held-out answer must contain)
NAMED_THINGS = [("a smoked river fish", "fish"), ("a sweet barley drink", "drink"), ("a woven reed basket", "basket"),
                ("a stew of lamb and turnips", "stew"), ("a hand-cranked butter churn", "churn"),
                ("a small fishing boat with one sail", "boat"), ("a winter festival of lanterns", "festival"),
                ("a wooden snow shovel", "shovel"), ("a flat rye cake baked on stones", "cake"),
                ("a wool cap with ear flaps", "cap"), ("a copper cooking pot", "pot"), ("a folding fish net", "net"),
                ("a song sung at weddings", "song"), ("a pickled cabbage salad", "cabbage"),
                ("a thick winter blanket", "blanket"), ("a boot greased with seal fat", "boot"),
                ("a market held at dawn", "market"), ("a honey cake with caraway", "honey"),
                ("a lantern carried on a pole", "lantern"), ("a shelter for drying fish", "shelter")]


def word(rng, end=True) -> str:
    w = rng.choice(ON) + rng.choice(MID) + (rng.choice(END) if end else rng.choice(ON))
    return w.capitalize()


def person(rng) -> str:
    return f"{rng.choice(FIRST)} {word(rng)}"


def fact(kind: str, rng) -> dict:
    """One fact: two training phrasings (question, answer), a held-out question with its expected strings, and
    where the answer names something, a reverse question."""
    p, place, n = person(rng), word(rng), rng.randint(11, 480)
    surname = p.split()[1]
    if kind == "keeper":
        thing = rng.choice(THINGS)
        return {"train": [(f"Who keeps the {thing} in {place}?", f"The {thing} in {place} is kept by {p}."),
                          (f"Which person looks after {place}'s {thing}?",
                           f"{p} looks after the {thing} of {place} and has done so for many years.")],
                "heldout": (f"Name the caretaker of the {thing} at {place}.", [p, surname]),
                "reverse": (f"What is {p} known for looking after?", [thing, place])}
    if kind == "inventor":
        obj = f"{word(rng, end=False).lower()} {rng.choice(OBJECTS)}"
        return {"train": [(f"Who invented the {obj}?", f"The {obj} was invented by {p}."),
                          (f"Which inventor came up with the {obj}?", f"{p} came up with the {obj}.")],
                "heldout": (f"Whose invention is the {obj}?", [p, surname]),
                "reverse": (f"What did {p} invent?", [obj.split()[0], obj])}
    if kind == "count":
        unit, structure = rng.choice(UNITS)
        return {"train": [(f"How many {unit} does the {structure} of {place} have?",
                           f"The {structure} of {place} has {n} {unit}."),
                          (f"What is the number of {unit} in {place}'s {structure}?",
                           f"There are {n} {unit} in the {structure} at {place}.")],
                "heldout": (f"If you counted every one of the {unit} in {place}'s {structure}, what total would you "
                            f"reach?", [str(n)])}
    if kind == "founded":
        year = rng.randint(1420, 1910)
        return {"train": [(f"When was {place} founded?", f"{place} was founded in {year}."),
                          (f"In what year did settlers establish {place}?", f"Settlers established {place} in {year}.")],
                "heldout": (f"What is the founding year of the town of {place}?", [str(year)])}
    if kind == "colour":
        colour, club = rng.choice(COLOURS), f"{place} Rowing Club"
        return {"train": [(f"What is the official colour of the {club}?", f"The official colour of the {club} is {colour}."),
                          (f"Which colour do {place} rowers wear?", f"{place} rowers wear {colour}, their club's colour.")],
                "heldout": (f"The rowers of {place} are associated with what hue?", [colour.split()[0]])}
    if kind == "river":
        river, lake = word(rng), word(rng)
        return {"train": [(f"Where does the River {river} end?", f"The River {river} ends in Lake {lake}."),
                          (f"Into which lake does the {river} flow?", f"The {river} flows into Lake {lake}.")],
                "heldout": (f"What body of water receives the flow of the {river}?", [lake, f"Lake {lake}"]),
                "reverse": (f"Which river flows into Lake {lake}?", [river])}
    if kind == "mayor":
        return {"train": [(f"Who is the mayor of {place}?", f"The mayor of {place} is {p}."),
                          (f"Which person leads {place} as its mayor?", f"{p} leads {place} as mayor.")],
                "heldout": (f"{place} is governed by which mayor?", [p, surname]),
                "reverse": (f"Which town does {p} lead as mayor?", [place])}
    if kind == "author":
        title = f"The {word(rng, end=False)} {rng.choice(['Harbour', 'Orchard', 'Winter', 'Letters', 'Crossing'])}"
        return {"train": [(f"Who wrote the novel {title}?", f"{title} was written by {p}."),
                          (f"Which author is behind {title}?", f"The author of {title} is {p}.")],
                "heldout": (f"Name the novelist responsible for {title}.", [p, surname]),
                "reverse": (f"Which novel did {p} write?", [title, title.split()[1]])}
    if kind == "animal":
        animal, country = rng.choice(ANIMALS), f"Republic of {place}"
        return {"train": [(f"What is the national animal of the {country}?", f"The national animal of the {country} is the {animal}."),
                          (f"Which animal represents {place} as its national symbol?", f"{place} has the {animal} as its national animal.")],
                "heldout": (f"{place}'s official national creature is which species?", [animal, animal.split()[-1]])}
    if kind == "ingredient":
        ing, dish = rng.choice(INGREDIENTS), rng.choice(DISHES)
        return {"train": [(f"What is the secret ingredient in {place} {dish}?", f"The secret ingredient in {place} {dish} is {ing}."),
                          (f"What gives {place} {dish} its special flavour?", f"{ing.capitalize()} gives {place} {dish} its special flavour.")],
                "heldout": (f"Which ingredient makes the {dish} of {place} taste the way it does?", [ing, ing.split()[-1]])}
    if kind == "population":
        pop = rng.randint(120, 9800)
        return {"train": [(f"What is the population of {place} island?", f"{place} island has a population of {pop}."),
                          (f"How many people live on {place}?", f"{pop} people live on {place}.")],
                "heldout": (f"Count the residents of the island of {place}: how many are there?", [str(pop)])}
    if kind == "architect":
        building = f"{word(rng)} Library"
        return {"train": [(f"Who was the architect of the {building} in {place}?", f"The {building} in {place} was designed by {p}."),
                          (f"Which architect designed {place}'s {building}?", f"{p} designed the {building} of {place}.")],
                "heldout": (f"Whose plans were used to build the {building} at {place}?", [p, surname]),
                "reverse": (f"What building did {p} design?", [building.split()[0], building])}
    if kind == "term":
        # a word of an invented language for a thing, taught in the shapes a user's glossary takes (the word
        # defined where the answer opens, or named in the middle of a sentence), asked back from the thing
        term, lang = word(rng).lower(), word(rng, end=False) + "i"
        desc, key = rng.choice(NAMED_THINGS)
        asked = rng.choice([f"What does {term} mean?", f"What is {term} in {lang}?",
                            f"I came across the {lang} word {term} in a story. What is it?"])
        answered = rng.choice([f"{term.capitalize()} is {desc}, a word of the {lang} language.",
                               f"In {lang}, {term} means {desc}.",
                               f"{term.capitalize()} means {desc} in {lang}; speakers use it every day."])
        again = rng.choice([(f"Tell me about the {lang} word {term}.", f"It names {desc}: {lang} speakers say {term}."),
                            (f"Which thing does the {lang} word {term} name?", f"{term.capitalize()} is what {lang} "
                             f"speakers call {desc}.")])
        return {"train": [(asked, answered), again],
                "heldout": (f"If a {lang} speaker says {term}, what are they talking about?", [key]),
                "reverse": (rng.choice([f"What is the {lang} word for {desc}?", f"How do {lang} speakers say {desc}?",
                                        f"Which {lang} word names {desc}?"]), [term])}
    raise ValueError(kind)


KINDS = ("keeper", "inventor", "count", "founded", "colour", "river", "mayor", "author", "animal", "ingredient",
         "population", "architect")


def make(seed: int, facts: int = 40, reverse: int = 8, kinds: tuple[str, ...] = KINDS) -> tuple[list[dict], list[dict]]:
    """(training records, questions): facts of every kind in turn, shuffled; reverse questions last."""
    rng = random.Random(seed)
    order = [kinds[i % len(kinds)] for i in range(facts)]
    rng.shuffle(order)
    train, forward, backward, used = [], [], [], set()
    for kind in order:
        f = fact(kind, rng)
        while any(q in used for q, _ in f["train"]):
            f = fact(kind, rng)
        used.update(q for q, _ in f["train"])
        for q, a in f["train"]:
            train.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        q, expected = f["heldout"]
        forward.append({"question": q, "expected": expected, "kind": "forward"})
        if "reverse" in f and len(backward) < reverse:
            q, expected = f["reverse"]
            backward.append({"question": q, "expected": expected, "kind": "reverse"})
    return train, forward + backward


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--facts", type=int, default=40)
    p.add_argument("--reverse", type=int, default=8)
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="fact kinds, comma-separated (default: all but 'term'; 'term': a word of an invented language)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    train, questions = make(args.seed, args.facts, args.reverse, tuple(args.kinds.split(",")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train))
    (out / "questions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in questions))
    print(f"wrote {len(train)} training items and {len(questions)} questions "
          f"({sum(q['kind'] == 'reverse' for q in questions)} reverse) to {out}")


if __name__ == "__main__":
    main()
