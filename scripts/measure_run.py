#!/usr/bin/env python3
"""Measure `python -m unslothify run` as a user runs it, over seeds, for the README's measured table.

Each seed is one `run` in a scratch folder (a copy of the data file, so the augmented file lands there), timed
by the wall clock from start to its last line, with the machine's load noted. Each finished run appends one
JSON line to the results file; `python -m scripts.update_readme` renders the table from these files.

    python -m scripts.measure_run --set domain --seeds 1,2,3          # make run's data, the defaults
    python -m scripts.measure_run --set invented --seeds 1,2,3        # the outside set of 40 invented facts

Results: docs/measurements/<machine kind>-<set>.jsonl (machine kind: cpu or gpu).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def example(name: str, general: str = "general.jsonl") -> tuple[Path, Path, Path]:
    """examples/<name>'s data and held-out questions, with a general file of eval/."""
    return ROOT / "examples" / name / "train.jsonl", ROOT / "examples" / name / "questions.jsonl", ROOT / "eval" / general


SETS = {  # data, held-out questions, general questions
    "domain": (ROOT / "domain.jsonl", ROOT / "eval" / "questions.jsonl", ROOT / "eval" / "general.jsonl"),
    "invented": example("invented"),
    "confirm": example("confirm"),
    # made by scripts/make_invented_set.py --seed 61 --kinds term --facts 30 --reverse 30: a glossary of an
    # invented language, every word asked back from the thing it names, to confirm the reverse rows for terms
    "terms": example("terms"),
    # the same with --seed 62: made after examples/terms had been looked at, to confirm what was changed on it
    "terms-b": example("terms-b"),
    # and --seed 63, made after terms-b had been looked at: measured once with the probes of fe853ef (since reverted)
    "terms-c": example("terms-c"),
    # and --seed 64, made after terms-b and -c were looked at: measured once with the probes of 7717a57 (reverted)
    "terms-d": example("terms-d"),
    # made by scripts/make_invented_set.py --seed 44, with general questions no set or prompt of the project holds:
    # measured once, at the end, for the figures a new user can expect on facts and questions nobody tuned on
    "outside": example("outside", "outside_general.jsonl"),
}
MEASUREMENTS = ROOT / "docs" / "measurements"


def run_flags(name: str, folder: Path, facts: int | None = None, seed: int = 1, asked: bool = False) -> list[str]:
    """`run`'s flags for a set, with its data copied into folder (the augmented file lands beside the copy) and
    the run's output there; with `facts`, a slice of them (slice_of; `asked`: of the facts a question asks)."""
    data, questions, general = SETS[name]
    copy = folder / data.name
    flags = ["--general-questions", str(general), "--output", str(folder / "run")]
    if facts is None:
        shutil.copy2(data, copy)
        return ["--data", str(copy), "--eval-questions", str(questions), *flags]
    replay = slice_of(data, questions, facts, seed, copy, folder / "questions.jsonl", asked)
    return ["--data", str(copy), "--eval-questions", str(folder / "questions.jsonl"), "--augment-replay",
            str(replay), *flags]


def slice_of(data: Path, questions: Path, facts: int, seed: int, data_out: Path, questions_out: Path,
             asked: bool = False) -> int:
    """Write `facts` of the data's items, drawn by seed, and the held-out questions about them (the rule `run`
    scores a slice by: score/questions.questions_about); return the replay rows that slice keeps
    (train/inputs.replay_share, its rows counted before augmenting as the item and its rewordings). This is the
    training a CPU's time plan gives (cap_shortens: facts) without the cap, so a faster machine can measure what
    a slow one would learn. With `asked`, the slice is drawn from the facts a held-out question asks about (101
    of domain.jsonl's 500): a lever's slice is then scored on 3-4x the questions for the same training, where a
    plan's slice of 50 facts meets 9-16 (one run's figure swings +-0.13). A user's plan cannot draw so: it is for
    comparing levers, not for a user's figure."""
    from unslothify.config import Config
    from unslothify.data.items import read_jsonl, read_jsonl_items
    from unslothify.score.questions import load_questions, questions_about
    from unslothify.train.inputs import replay_share
    from unslothify.train.plan import fact_order

    items, _ = read_jsonl_items(data)
    held_out = load_questions(questions)
    about = questions_about(held_out, items)
    pool = set().union(*about.values()) if asked else {i.line for i in items}
    chosen = set(fact_order([i for i in items if i.line in pool], seed)[:facts])
    raw = data.read_text(encoding="utf-8").split("\n")  # numbered as read_jsonl numbers them
    data_out.write_text("".join(raw[i - 1] + "\n" for i in sorted(chosen)), encoding="utf-8")
    with questions_out.open("w", encoding="utf-8") as f:
        for q, (_, row) in zip(held_out, read_jsonl(questions)):
            if about.get(id(q), set()) & chosen:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    augment = Config().augment  # a fact's rows: the item and its rewordings (the plan counts them after augmenting)
    return replay_share(augment.replay, facts * (1 + augment.rephrasings), len(items) * (1 + augment.rephrasings))


def lever_flags(lever: str | None) -> list[str]:
    """`run`'s flags for one of scripts/levers.py's levers (recipes/experiments/levers.yaml): its knobs, each a
    flag (an augment knob as --augment-<knob>)."""
    if not lever:
        return []
    from unslothify.recipes import experiment

    flags = []
    for knob, value in experiment("levers")[lever].items():
        for name, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            if isinstance(v, list):
                raise SystemExit(f"lever {lever}: {knob} is a list, which a flag cannot carry")
            flags += ["--" + "-".join(x.replace("_", "-") for x in (knob, name) if x), str(v)]
    return flags


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=sorted(SETS), default="domain")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--args", default="", help="more flags for run, e.g. '--epochs 2'")
    p.add_argument("--facts", type=int, default=None, help="train a slice of this many facts (items), drawn by "
                   "the seed, scored on the held-out questions about them: what a CPU's time plan trains, uncapped")
    p.add_argument("--asked", action="store_true", help="with --facts: draw the slice from the facts a held-out "
                   "question asks about, so a lever is scored on more questions (not a user's figure)")
    p.add_argument("--lever", default=None, help="one of scripts/levers.py's levers (recipes/experiments/"
                   "levers.yaml), given to run as flags after --args")
    p.add_argument("--note", default=None, help="what the row's figures do not say of how it ran, e.g. 'the card "
                   "warm: an earlier run had cached the base model's answers' (shown beside the row in the docs)")
    p.add_argument("--out", default=None)
    p.add_argument("--logs", default=None, help="a folder for each run's output, every line with its second, and "
                   "its eval file (each question's answers)")
    args = p.parse_args()
    from unslothify.machine.device import has_cuda, machine

    out = Path(args.out or MEASUREMENTS / f"{'gpu' if has_cuda() else 'cpu'}-{args.set}.jsonl")
    data = SETS[args.set][0]
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory() as td:
            cmd = [sys.executable, "-m", "unslothify", "run", "--model", "auto",
                   *run_flags(args.set, Path(td), args.facts, seed, args.asked), "--seed", str(seed), *args.args.split(),
                   *lever_flags(args.lever)]
            load = os.getloadavg()[0]
            started = time.perf_counter()
            name = "-".join([args.set, *([args.lever] if args.lever else []), f"seed{seed}"])  # runs side by side
            log = Path(args.logs) / f"{name}.log" if args.logs else None
            proc = timed_run(cmd, log)
            wall = time.perf_counter() - started
            if proc.returncode not in (0, 4):
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"run failed (exit {proc.returncode}) for seed {seed}")
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            manifest = json.loads((Path(summary["run"]) / summary["version"] / "manifest.json").read_text())
            row = {"set": args.set, "seed": seed, "args": args.args, "lever": args.lever, "facts": args.facts,
                   **({"asked": True} if args.asked else {}), **({"note": args.note} if args.note else {}),
                   "machine": machine(), "load_before": load,
                   "load_after": os.getloadavg()[0], "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
                   "wall_seconds": round(wall, 1), "train_seconds": manifest["train_seconds"],
                   "probe_seconds": manifest.get("probe_seconds"),
                   "epochs": manifest["epochs_this_call"], "steps": manifest["cumulative_steps"],
                   "train_items": manifest["train_items"], "summary": summary,
                   "expected": next((line for line in proc.stdout.splitlines() if line.startswith("Expected time")), "")}
            eval_file = Path(summary["run"]) / "eval" / f"{summary['version']}.json"
            row["errors"] = error_classes(eval_file, data)
            if log is not None:  # each question's answers, beside the run's output (the run's folder goes)
                shutil.copy2(eval_file, log.with_suffix(".eval.json"))
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            print(json.dumps({k: row[k] for k in ("set", "seed", "wall_seconds", "epochs")} |
                             {k: summary.get(k) for k in ("tuned_recall", "tuned_general", "base_general", "retention")}), flush=True)


def timed_run(cmd: list[str], log: Path | None) -> subprocess.CompletedProcess:
    """Run cmd in the repository; with a log, every line it writes (stdout and stderr, a progress bar's redraws
    included) is kept there with the seconds since the start, which is where a stage's time is found."""
    if log is None:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    import threading

    log.parent.mkdir(parents=True, exist_ok=True)
    started, lock, kept = time.perf_counter(), threading.Lock(), {"stdout": [], "stderr": []}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(log, "w", encoding="utf-8") as f:
        def pump(stream, name):
            for line in stream:  # text mode: a carriage return ends a line too
                kept[name].append(line)
                with lock:
                    f.write(f"{time.perf_counter() - started:8.1f} {name[3]} {line.rstrip()}\n")
                    f.flush()
        readers = [threading.Thread(target=pump, args=(getattr(proc, n), n)) for n in kept]
        for r in readers:
            r.start()
        for r in readers:
            r.join()
    return subprocess.CompletedProcess(cmd, proc.wait(), "".join(kept["stdout"]), "".join(kept["stderr"]))


def error_classes(eval_file: Path, data: Path) -> dict:
    """The misses sorted by scripts/error_analysis.py, counted (the rows are in the run's eval file)."""
    proc = subprocess.run([sys.executable, "-m", "scripts.error_analysis", str(eval_file), "--data",
                           str(data), "--json"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {}
    result = json.loads(proc.stdout)
    examples: dict = {}
    for row in result["rows"]:  # two of each class, to quote
        if len(examples.setdefault(row["class"], [])) < 2:
            examples[row["class"]].append({k: row[k] for k in ("question", "expected", "answer")})
    return {"counts": result["counts"], "examples": examples}


if __name__ == "__main__":
    main()
