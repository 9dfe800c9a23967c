"""Regenerates the generated sections of the README and the docs pages (knob table, bad-input table, Colab
badges, the measured table) from the code and the measurement files.

    python -m scripts.update_readme          # rewrite README.md and docs/*.md where a section is out of date
    python -m scripts.update_readme --check  # exit 1 if any is out of date (tests use this)
"""

import dataclasses
import json
import io
import re
import sys
import statistics
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]



def retention(summary: dict) -> float:
    """Retention question by question where the run recorded it (eval's 'retention', since 2026-12-04), else the
    ratio of the general recalls the older runs recorded (which nets new answers against lost ones)."""
    return summary["retention"] if summary.get("retention") is not None else summary["tuned_general"] / summary["base_general"]

def knob_table() -> str:
    from unslothify import recipes
    from unslothify.config import AugmentConfig, knob_fields
    from unslothify.knobs import describe_allowed

    sets = {name: recipes.read(name) for name in recipes.available()}
    rows = ["| knob | default | allowed | what it does |", "|---|---|---|---|"]
    for f in knob_fields():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, list):
            default = ", ".join(default)
        cpu = "".join(f"<br>{name}: `{values[f.name]}`" for name, values in sets.items() if f.name in values)
        help_text = f.metadata["help"] + (f" *Overfitting: {f.metadata['overfit']}.*" if f.metadata.get("overfit") else "")
        rows.append(f"| `{f.name}` | `{default}`{cpu} | {describe_allowed(f)} | {help_text} |")
    for f in dataclasses.fields(AugmentConfig):
        rows.append(f"| `augment.{f.name}` | `{f.default}` | {describe_allowed(f)} | {f.metadata['help']} |")
    return "\n".join(rows)


def bad_input_table() -> str:
    from scripts import bad_input_report

    out = io.StringIO()
    with redirect_stdout(out):
        bad_input_report.main()
    return out.getvalue().strip()


def colab_table() -> str:
    """An "Open in Colab" badge per notebook, from the repository URL the notebooks clone."""
    from unslothify.machine.runtime import REPO_URL

    repo = REPO_URL.removeprefix("https://github.com/")
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    rows = ["| notebook | open |", "|---|---|"]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        url = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{nb.name}"
        rows.append(f"| `{nb.stem}` | [![Open In Colab]({badge})]({url}) |")
    return "\n".join(rows)


SET_NAMES = {"domain": "`domain.jsonl` (`make run`), 91 held-out questions (20 reverse)",
             "invented": "`examples/invented`: 40 invented facts x 2, 40 held-out questions",
             "confirm": "`examples/confirm`: 40 invented facts x 2, 48 held-out questions (8 reverse)",
             "terms": "`examples/terms`, nobody tuned on it: 30 words of an invented language x 2, 60 held-out "
                      "questions (30 reverse: the word from the thing it names)",
             "outside": "`examples/outside`, nobody tuned on it: 40 facts, 48 questions (8 reverse); retention on "
                        "`eval/outside_general.jsonl`"}


def results(path: Path) -> list[dict]:
    """The rows of a measurements file (JSONL), none where it is missing or empty. Not the package's read_jsonl,
    which refuses an empty file: a results file starts empty until its first run lands."""
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def measured_table(kind: str = "cpu") -> str:
    """`run` with the defaults, over seeds, on 2 CPU cores (kind cpu) or a GPU (kind gpu): from
    docs/measurements/<kind>-*.jsonl, which scripts/measure_run.py writes."""
    def stat(xs, fmt="{:.3f}"):
        xs = [x for x in xs if x is not None]
        if not xs:
            return "–"
        return fmt.format(statistics.mean(xs)) + (f" ± {fmt.format(statistics.stdev(xs))}" if len(xs) > 1 else "")

    rows = ["| data | runs (seeds) | all told, minutes | epochs trained | held-out recall, base -> tuned | "
            "forward / reverse (tuned) | items trained: recall on their questions (n) | "
            "general retention (tuned / base) | machine, date |",
            "|---|---|---|---|---|---|---|---|---|"]
    groups = []  # a row per file and machine: cards differ up to 1.6x in step time
    for path in sorted((ROOT / "docs" / "measurements").glob(f"{kind}-*.jsonl")):
        by_machine: dict[str, list] = {}
        for r in results(path):
            by_machine.setdefault(r["machine"], []).append(r)
        groups += by_machine.values()
    for runs in groups:
        s = [r["summary"] for r in runs]
        name = SET_NAMES.get(runs[0]["set"], runs[0]["set"])
        walls = [r["wall_seconds"] / 60 for r in runs]
        rows.append(
            f"| {name} | {len(runs)} ({', '.join(str(r['seed']) for r in runs)}) | {stat(walls, '{:.1f}')} "
            f"(max {max(walls):.1f}) | {stat([r['epochs'] for r in runs], '{:.1f}')} | "
            f"{stat([x['base_recall'] for x in s])} -> **{stat([x['tuned_recall'] for x in s])}** | "
            f"{stat([x.get('tuned_forward_recall') for x in s])} / {stat([x.get('tuned_reverse_recall') for x in s])} | "
            f"{trained_facts(s)} | "
            f"**{stat([retention(x) for x in s])}** | "
            f"{runs[0]['machine']}, {runs[0]['date'][:10]}{notes(runs)} |")
    return "\n".join(rows)


def notes(runs: list[dict]) -> str:
    """'; seed 2: the card warm ...' for rows whose conditions the figures alone do not say (measure_run --note)."""
    return "".join(f"; seed {r['seed']}: {r['note']}" for r in runs if r.get("note"))


def trained_facts(summaries: list[dict]) -> str:
    """'90: 0.333 (18)' where a time cap trained a slice of the facts (cap_shortens: facts), else 'all'."""
    sliced = [x for x in summaries if "trained_facts" in x]
    if not sliced:
        return "all"
    recall = statistics.mean(x["trained_facts_recall"] for x in sliced)
    return (f"{'/'.join(str(x['trained_facts']) for x in sliced)}: **{recall:.3f}** "
            f"({'/'.join(str(x['trained_facts_n']) for x in sliced)})")


def stages_table() -> str:
    """Where a run's seconds go, stage by stage, and what the estimate said before training: from
    docs/measurements/{cpu,gpu}-*.jsonl rows that recorded them (scripts/measure_run.py)."""
    rows = ["| data | machine, date | all told, s | training (share) | prepare + load | augment | estimate | export | "
            "score | expected all told (error) | expected training (error) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((ROOT / "docs" / "measurements").glob("[cg]pu-*.jsonl")):
        for r in results(path):
            st, ex = r["summary"].get("stage_seconds"), r["summary"].get("expected_seconds")
            if not st or not ex:
                continue
            wall = r["wall_seconds"]
            before = st.get("preparing", 0) + st.get("augmenting", 0) + st.get("estimating", 0)
            expected = before + sum(ex.values())
            trained = ex.get("training", 0) + ex.get("probes", 0)
            rows.append(f"| {r['set']}{' ' + r['args'].strip() if r.get('args') else ''} | {r['machine']}, "
                        f"{r['date'][:10]}{notes([r])} | "
                        f"{wall:.0f} | {st['training']:.0f} ({st['training'] / wall:.0%}) | {st['preparing']:.0f} | "
                        f"{st['augmenting']:.0f} | {st['estimating']:.0f} | {st.get('export', 0):.0f} | "
                        f"{st['scoring']:.0f} | {expected:.0f} ({expected / wall - 1:+.0%}) | "
                        f"{trained:.0f} ({trained / st['training'] - 1:+.0%}) |")
    return "\n".join(rows)


def lever_table(*stems: str) -> str:
    """Lever by lever, the runs of docs/measurements/<stem>.jsonl (scripts/measure_run.py --lever, gpu_check.sh
    slices-bg and runs-bg), pooled question by question: a slice of the facts (--facts) or all of them."""
    rows = ["| machine | set, facts a run | lever (replay rows) | runs (seeds) | recall on their questions (n) | "
            "retention | probes' retention | training, s | date |", "|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for stem in stems:
        path = ROOT / "docs" / "measurements" / f"{stem}.jsonl"
        for r in results(path):
            s = r["summary"]
            # a lever is named by its replay rows too: the defaults' share of them changed on 2026-12-06
            key = (r["machine"], r["set"], r["facts"] or "all", r.get("lever") or "defaults", s["augmented"]["replay"])
            groups.setdefault(key, []).append(r)
    for (machine, name, facts, lever, replay), runs in groups.items():
        n = sum(r["summary"]["n"] for r in runs)
        hits = sum(round(r["summary"]["tuned_recall"] * r["summary"]["n"]) for r in runs)
        probes = [r["summary"].get("probe_retention") for r in runs]
        rows.append(f"| {machine} | {name}, {facts} | {lever} ({replay}) | {len(runs)} "
                    f"({', '.join(str(r['seed']) for r in runs)}) | **{hits / n:.3f}** ({n}) | "
                    f"**{statistics.mean(retention(r['summary']) for r in runs):.3f}** | "
                    f"{statistics.mean(probes) if None not in probes else float('nan'):.3f} | "
                    f"{statistics.mean(r['train_seconds'] for r in runs):.0f} | {runs[0]['date'][:10]} |")
    return "\n".join(rows)


def t4_line() -> str:
    """The projected T4 time of each stage the T4 simulation measured (docs/t4.md, scripts/t4_sim.py)."""
    from scripts.t4_sim import RATIOS, RESULTS, STAGE_BOUND, latest_stages

    latest = latest_stages(results(RESULTS))
    parts = [f"{stage} {latest[stage]['seconds'] * RATIOS[STAGE_BOUND[stage]] / 60:.0f} min"
             for stage in ("load", "replay", "train", "merge", "gguf", "chat") if stage in latest]
    peak = max(r.get("gpu_all_processes_gib") or 0 for r in latest.values())
    date = max(r.get("date", "") for r in latest.values())[:10]
    return (f"Projected for the free T4 from its simulation on an H200 ({date}: the default 7B recipe, one epoch "
            f"of domain.jsonl, every stage under a T4's 15 GiB and 12.7 GB of RAM): {', '.join(parts)}; the "
            f"largest stage holds {peak} of the T4's 15 GiB. [docs/t4.md](docs/t4.md) has each stage and the "
            "method.")


SECTIONS = {"knobs": knob_table, "bad-input": bad_input_table, "colab": colab_table, "measured-cpu": measured_table,
            "measured-gpu": lambda: measured_table("gpu"),
            "measured-stages": stages_table, "t4": t4_line, "slices": lambda: lever_table("slices-cpu", "slices-gpu"),
            "replay-gpu": lambda: lever_table("replay-gpu")}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

if __name__ == "__main__":
    stale = []
    for page in PAGES:
        current = page.read_text(encoding="utf-8")
        new = render(current)
        if new != current:
            stale.append(page.relative_to(ROOT))
            if "--check" not in sys.argv:
                page.write_text(new, encoding="utf-8")
    if "--check" in sys.argv:
        print("out of date: " + ", ".join(map(str, stale)) if stale else "current")
        sys.exit(1 if stale else 0)
