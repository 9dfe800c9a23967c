"""More, and more varied, general prompts for replay (eval/general_prompts.jsonl): explanations, how-tos, advice,
comparisons, writing, stories, reasoning, each filled from a list, added after the hand-written ones where
absent; prompts that reword a retention question or state its fact are dropped (augment kind replay's `leak`,
which refuses them at run time too, with the base model's answers where they are kept).

    python -m scripts.make_general_prompts
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "eval" / "general_prompts.jsonl"

TEMPLATES = {
    "Explain how {} works, in simple terms.": [
        "a bicycle's gears", "a refrigerator", "a compass", "a thermostat", "a microwave oven", "a vaccine",
        "a solar panel", "a pin tumbler lock", "a search engine", "a credit card payment", "an elevator",
        "an inkjet printer", "a rechargeable battery", "a wind turbine", "a submarine's ballast tanks",
        "a dishwasher", "an aeroplane wing", "a heat pump", "noise-cancelling headphones", "a barcode scanner",
        "a touchscreen", "satellite navigation", "a pressure cooker", "a smoke alarm", "a sewing machine"],
    "Give me three tips for {}.": [
        "learning to cook", "keeping houseplants alive", "studying for an exam", "writing a cover letter",
        "saving money on groceries", "running a short meeting", "packing light for a trip",
        "starting a vegetable garden", "taking better photos with a phone", "speaking in public",
        "keeping a journal", "organising a wardrobe", "cycling safely in a city", "making friends in a new town",
        "staying focused when working from home", "reading more books", "baking bread at home",
        "painting a room", "learning a new language as an adult", "preparing for a job interview"],
    "What is the difference between {} and {}?": [
        ("weather", "climate"), ("a virus", "a bacterium"), ("a lake", "a pond"), ("baking soda", "baking powder"),
        ("a hurricane", "a tornado"), ("speed", "velocity"), ("a simile", "a metaphor"), ("a loan", "a grant"),
        ("a comet", "an asteroid"), ("a violin", "a viola"), ("latitude", "longitude"), ("renting", "buying a home"),
        ("a museum", "a gallery"), ("a fruit", "a vegetable"), ("a novel", "a short story"),
        ("an invoice", "a receipt"), ("jam", "jelly"), ("a hill", "a mountain")],
    "Write a short {} about {}.": [
        ("poem", "falling leaves"), ("story opening", "a lost umbrella"), ("thank-you note", "a birthday gift"),
        ("product description", "a wooden chair"), ("postcard message", "a rainy holiday"),
        ("poem", "a busy market"), ("story opening", "a quiet library"), ("diary entry", "a long train journey"),
        ("poem", "a snowy morning"), ("letter", "a neighbour's noisy dog"), ("story opening", "a missing key"),
        ("speech", "a friend's retirement"), ("review", "a neighbourhood café"), ("limerick", "a forgetful cook")],
    "How do I {}?": [
        "boil an egg", "fix a flat bicycle tyre", "remove a splinter", "fold a paper aeroplane", "tie a tie",
        "make a good cup of tea", "clean a cast-iron pan", "sew on a button", "unblock a kitchen sink",
        "back up the photos on my phone", "write a clear email subject line", "light a campfire safely",
        "keep bread fresh for longer", "start running as a beginner", "make a simple budget"],
    "Describe {} to someone who has never seen it.": [
        "snow falling", "a rainforest", "a desert at night", "an underground train at rush hour",
        "the northern lights", "a thunderstorm", "an orchestra tuning up", "a busy airport"],
    "Suggest a name for {} and say why it fits.": [
        "a small bakery", "a book club", "a robot vacuum cleaner", "a hiking group", "a podcast about history",
        "a sailing boat", "a garden café", "a community choir"],
    "Summarise the story of {} in two sentences.": [
        "Cinderella", "the tortoise and the hare", "Jack and the beanstalk", "Goldilocks and the three bears",
        "the ugly duckling", "the boy who cried wolf", "Hansel and Gretel", "the emperor's new clothes"],
    "Why {}?": [
        "is the sea salty", "do we yawn", "does bread go stale", "do onions make people cry", "does ice float",
        "do we have time zones", "does the moon seem to change shape", "do some trees lose their leaves in winter",
        "do bicycles stay upright when moving", "does a boiled kettle make a whistling sound"],
    "{}": [
        "If a train travels 180 kilometres in 3 hours, what is its average speed?",
        "A recipe for 4 people needs 300 grams of rice. How much rice is needed for 6 people?",
        "If I save 15 pounds a week, how many weeks until I have 120 pounds?",
        "A shirt costs 40 euros and is reduced by 25 per cent. What does it cost now?",
        "Plan a simple three-day menu for a vegetarian.",
        "What questions should I ask before adopting a rescue pet?",
        "How can I tell if an egg is still fresh?",
        "What are some good ways to cool down a room without air conditioning?",
        "Give me a short warm-up routine before exercise.",
        "What should I pack in a basic first-aid kit?"],
}


def generated() -> list[str]:
    out = []
    for template, fillers in TEMPLATES.items():
        for f in fillers:
            text = template.format(*f) if isinstance(f, tuple) else template.format(f)
            out.append(text[0].upper() + text[1:])
    return out


def main():
    from unslothify.config import load_config
    from unslothify.data.augment.checks import norm_question
    from unslothify.data.augment.kinds.replay import leak, retention_questions

    questions = retention_questions(load_config(None, model="embedded"))
    rows = [json.loads(x) for x in PROMPTS.read_text(encoding="utf-8").splitlines() if x.strip()]
    seen = {norm_question(r["prompt"]) for r in rows}
    added = [p for p in generated() if norm_question(p) not in seen]
    rows += [{"prompt": p} for p in added]
    kept = [r for r in rows if not leak(r["prompt"], "", questions)]
    PROMPTS.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    print(f"{len(added)} prompts added, {len(rows) - len(kept)} dropped as rewordings of retention questions: "
          f"{len(kept)} in {PROMPTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
