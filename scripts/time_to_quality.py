#!/usr/bin/env python3
"""Time to quality: held-out recall and general retention against training time, per training recipe.

Each run trains a fresh LoRA adapter on the embedded SmolLM2-135M (a real pretrained model) and scores it
after every `--epochs` point (one training call per point, continuing): held-out recall on the set's
questions (forward and reverse where the set has kinds) and retention on eval/general.jsonl. Every point
is one JSON line in DIR/results.jsonl, so an interrupted sweep keeps what it measured.

    # one run
    python -m scripts.time_to_quality run --set invented --recipe packed-2048 --seed 1 --epochs 1,2,3,4.5 --out DIR
    # many, in parallel processes (a GPU has room for ~10 small ones), then solo timings of each recipe
    python -m scripts.time_to_quality sweep --sets invented --recipes unpacked,packed-2048 --seeds 1,2,3 --out DIR
    python -m scripts.time_to_quality timing --sets invented --recipes unpacked,packed-2048 --out DIR
    # the table (markdown) and the figure
    python -m scripts.time_to_quality report --out DIR --plot docs/time_to_quality.png

Time: runs that share a machine slow each other, so the time axis of the report is rebuilt from the solo
timings: setup (model load, prepare, augment) + epochs x the recipe's solo seconds per epoch. Runs on one
CPU are measured as they ran. Sets: invented (examples/invented: 40 facts x 2 phrasings, 40 held-out
questions) and domain (domain.jsonl, eval/questions.jsonl: 91, 20 reverse).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from unslothify.recipes import experiment

ROOT = Path(__file__).resolve().parents[1]

SETS = {
    "invented": (ROOT / "examples" / "invented" / "train.jsonl", ROOT / "examples" / "invented" / "questions.jsonl"),
    "domain": (ROOT / "domain.jsonl", ROOT / "eval" / "questions.jsonl"),
}
# Knobs on top of the model's own recipe, and the experiment's lr_scale and plan: recipes/experiments/time-to-quality.yaml.
RECIPES = experiment("time-to-quality")


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def append(path: Path, row: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def packing_plan(lengths: list[int], tokens_per_step: int = 4096, min_updates_per_epoch: int = 8,
                 row_tokens: int | None = None) -> dict:
    """Rows and row length for padding-free packing, from the items' token lengths.

    The step budget is tokens_per_step (on an H100, 4096 tokens ran at 83-95 % of the throughput of 8192 or
    16384, with 2-4x the optimizer updates per epoch: docs/benchmark.md), lowered where needed so an epoch
    still has min_updates_per_epoch optimizer updates
    (a small data set must not shrink to a handful of updates). Rows are max_seq_length tokens long: at
    least the longest item (items are never split), rounded up to a multiple of 64.
    """
    if not lengths:
        raise ValueError("no items")
    longest = max(lengths)
    total = sum(lengths)
    budget = min(tokens_per_step, max(longest, total // max(1, min_updates_per_epoch)))
    row = row_tokens or max(_round_up(longest, 64), min(2048, _round_up(budget, 64)))
    rows = max(1, budget // row)
    steps = math.ceil(total / (rows * row))
    return {"max_seq_length": row, "per_device_train_batch_size": rows, "tokens_per_step": rows * row,
            "updates_per_epoch": steps, "items_per_update": round(len(lengths) / steps, 1)}


def _round_up(n: int, k: int) -> int:
    return ((n + k - 1) // k) * k


def base_config(set_name: str, work: Path, seed: int, extra: dict):
    from unslothify.config import load_config

    train, questions = SETS[set_name]
    data = work / train.name  # the augmented file is written beside the data: keep it in the scratch folder
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(train, data)
    return load_config(None, model="embedded", data=str(data), eval_questions=str(questions),
                       general_questions=str(ROOT / "eval" / "general.jsonl"), output_dir=str(work / "run"),
                       seed=seed, **extra)


def recipe_config(cfg, recipe: str, train_lengths: list[int]):
    """cfg with the recipe's knobs; `lr_scale` and `plan` are worked out from the training items' lengths."""
    import math

    from unslothify.config import replace

    spec = dict(RECIPES[recipe])
    plan = spec.pop("plan", None)
    lr_scale = spec.pop("lr_scale", False)
    if plan:
        p = packing_plan(train_lengths, **plan)
        spec.update(per_device_train_batch_size=p["per_device_train_batch_size"], max_seq_length=p["max_seq_length"])
    cfg = replace(cfg, **spec)
    if lr_scale:
        mean = sum(train_lengths) / len(train_lengths)
        items = cfg.per_device_train_batch_size * cfg.max_seq_length / mean
        cfg = replace(cfg, learning_rate=min(1e-2, cfg.learning_rate * math.sqrt(items / 8)))
    return cfg


def score(model, tokenizer, cfg) -> dict:
    from unslothify.score.questions import score_file

    quiet = lambda *_: None  # noqa: E731
    rec, _ = score_file(model, tokenizer, cfg, cfg.eval_questions, "tuned", quiet)
    gen, _ = score_file(model, tokenizer, cfg, cfg.general_questions, "tuned general", quiet)
    return {"recall": rec["recall"], "n": rec["n"], "forward_recall": rec.get("forward_recall"),
            "reverse_recall": rec.get("reverse_recall"), "general": gen["recall"], "n_general": gen["n"]}


def cmd_run(args) -> None:
    """One (set, recipe, seed): prepare, augment, then a training call per epoch point, each scored."""
    t0 = time.perf_counter()
    from unslothify.data.augment import augment, training_items
    from unslothify.data.tokens import tokenize_items
    from unslothify.model.load import for_inference, for_training
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune

    extra = json.loads(args.extra or "{}")
    work = Path(args.work) / f"{args.set}-{args.recipe}-{args.seed}"
    shutil.rmtree(work, ignore_errors=True)
    quiet = (lambda *_: None) if not args.verbose else print
    cfg = base_config(args.set, work, args.seed, extra)
    prepared = prepare(cfg, progress=quiet, plot=False)
    if cfg.augment.enabled:
        augment(cfg, prepared, progress=quiet)
    ft = FineTune.start(cfg, progress=quiet)
    items = training_items(cfg, prepared, quiet)
    lengths = [len(r["input_ids"]) for r in tokenize_items(ft.tokenizer, items, cfg.max_seq_length)[0]]
    cfg = recipe_config(cfg, args.recipe, lengths)
    setup = time.perf_counter() - t0
    base = {"set": args.set, "recipe": args.recipe, "seed": args.seed, "extra": extra, "machine": machine(),
            "parallel": args.parallel, "items": len(items), "tokens": sum(lengths), "setup_seconds": round(setup, 1),
            "learning_rate": cfg.learning_rate, "rows": cfg.per_device_train_batch_size,
            "row_tokens": cfg.max_seq_length, "packing": cfg.packing, "date": datetime.now(timezone.utc).isoformat()}
    done = 0.0
    for point in [float(e) for e in args.epochs.split(",")]:
        version = ft.train(cfg, more_epochs=point - done)
        done = point
        row = {**base, "epochs": point, "steps": version.manifest["cumulative_steps"],
               "train_seconds": round(sum(v.manifest["train_seconds"] for v in ft.run.versions()), 1),
               "wall": round(time.perf_counter() - t0, 1)}
        if not args.no_eval:
            for_inference(ft.model)
            row.update(score(ft.model, ft.tokenizer, cfg))
            for_training(ft.model)
        append(Path(args.out) / ("timing.jsonl" if args.no_eval else "results.jsonl"), row)
        print(json.dumps(row), flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def cmd_base(args) -> None:
    """The base model's scores on a set (recall and retention): the curves' starting point."""
    from unslothify.model.load import load_for_inference

    cfg = base_config(args.set, Path(args.work) / f"{args.set}-base", 0, {})
    model, tokenizer, _ = load_for_inference("embedded", cfg)
    row = {"set": args.set, "recipe": "base", "epochs": 0.0, "machine": machine(), **score(model, tokenizer, cfg)}
    append(Path(args.out) / "results.jsonl", row)
    print(json.dumps(row), flush=True)


def _launch(jobs: list[list[str]], parallel: int, deadline: float, log_dir: Path) -> None:
    """Run the jobs (argument lists for this script), `parallel` at a time, until done or the deadline."""
    log_dir.mkdir(parents=True, exist_ok=True)
    running: list[tuple[subprocess.Popen, str]] = []
    queue = list(jobs)
    started = time.monotonic()
    while queue or running:
        while queue and len(running) < parallel and time.monotonic() - started < deadline:
            job = queue.pop(0)
            name = "-".join(job[job.index("--set") + 1:job.index("--set") + 2] +
                            (job[job.index("--recipe") + 1:job.index("--recipe") + 2] if "--recipe" in job else ["base"])
                            + (job[job.index("--seed") + 1:job.index("--seed") + 2] if "--seed" in job else []))
            log = open(log_dir / f"{name}.log", "w")
            running.append((subprocess.Popen([sys.executable, "-m", "scripts.time_to_quality", *job], stdout=log, stderr=subprocess.STDOUT),
                            name))
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                print(f"{time.monotonic() - started:6.0f} s  {name}: exit {proc.returncode}", flush=True)
            elif time.monotonic() - started > deadline:
                proc.kill()
                running.remove((proc, name))
                print(f"{time.monotonic() - started:6.0f} s  {name}: stopped at the deadline", flush=True)
        if not queue and not running:
            break
        if queue and time.monotonic() - started >= deadline:
            print(f"deadline: {len(queue)} jobs not started", flush=True)
            queue.clear()
        time.sleep(1)


def cmd_sweep(args) -> None:
    common = ["--out", args.out, "--work", args.work, "--epochs", args.epochs, "--parallel", str(args.parallel)]
    if args.extra:
        common += ["--extra", args.extra]
    jobs = [["base", "--set", s, "--out", args.out, "--work", args.work] for s in args.sets.split(",")]
    jobs += [["run", "--set", s, "--recipe", r, "--seed", str(seed), *common]
             for s in args.sets.split(",") for seed in args.seeds.split(",") for r in args.recipes.split(",")]
    _launch(jobs, args.parallel, args.deadline, Path(args.out) / "logs")


def cmd_timing(args) -> None:
    """Each recipe alone on the machine: setup seconds and seconds per epoch, no scoring."""
    jobs = [["run", "--set", s, "--recipe", r, "--seed", "1", "--epochs", args.epochs, "--no-eval", "--out", args.out,
             "--work", args.work, "--parallel", "1", *(["--extra", args.extra] if args.extra else [])]
            for s in args.sets.split(",") for r in args.recipes.split(",")]
    _launch(jobs, 1, args.deadline, Path(args.out) / "logs")


def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def solo_time(timings: list[dict], row: dict) -> tuple[float, bool] | None:
    """(setup + training seconds for the row's point, derived) from the solo timings. Setup (load, prepare,
    augment with replay) is the same work for every recipe, so it is the mean over all timings of the set
    (calls on different machines start 10 s apart). Training: the recipe's own seconds per epoch on that set;
    else derived from its seconds per step on another set, or those of the recipe it only rescales the
    learning rate of (-lr: the same steps). None when untimed."""
    def per(x):
        return x["train_seconds"] / x["steps"]

    setups = [x["setup_seconds"] for x in timings if x["set"] == row["set"]]
    same = [x for x in timings if x["set"] == row["set"] and x["recipe"] == row["recipe"]]
    if same:
        last = max(same, key=lambda x: x["epochs"])
        return statistics.mean(setups) + row["epochs"] * last["train_seconds"] / last["epochs"], False
    family = row["recipe"].removesuffix("-lr")
    like = [x for x in timings if x["recipe"] in (row["recipe"], family)]
    if not like:
        return None
    setups = setups or [x["setup_seconds"] for x in like]
    return statistics.mean(setups) + row["steps"] * statistics.mean(per(x) for x in like), True


def cmd_report(args) -> None:
    out = Path(args.out)
    rows, timings = read(out / "results.jsonl"), read(out / "timing.jsonl")
    lines = []
    for set_name in sorted({r["set"] for r in rows}):
        base = [r for r in rows if r["set"] == set_name and r["recipe"] == "base"]
        runs = [r for r in rows if r["set"] == set_name and r["recipe"] != "base"]
        machines = sorted({r["machine"] for r in runs})
        lines += [f"**{set_name}** ({', '.join(machines)}; {len({(r['recipe'], r['seed']) for r in runs})} runs; "
                  f"base recall {base[0]['recall']:.3f}, retention 1 = base's {base[0]['general']:.3f})" if base else
                  f"**{set_name}**", "",
                  "| recipe | epochs | steps | time (s, solo) | held-out recall | reverse | general retention | seeds |",
                  "|---|---:|---:|---:|---|---|---|---:|"]
        for recipe in [r for r in RECIPES if any(x["recipe"] == r for x in runs)]:
            for epochs in sorted({x["epochs"] for x in runs if x["recipe"] == recipe}):
                pts = [x for x in runs if x["recipe"] == recipe and x["epochs"] == epochs]
                retention = [x["general"] / base[0]["general"] for x in pts] if base else []
                t = solo_time(timings, {**pts[0], "steps": statistics.mean(x["steps"] for x in pts)})
                shown = "–" if t is None else f"{'≈' if t[1] else ''}{t[0]:.0f}"
                lines.append(f"| {recipe} | {epochs:g} | {round(statistics.mean(x['steps'] for x in pts))} | "
                             f"{shown} | {mean_sd([x['recall'] for x in pts])} | "
                             f"{mean_sd([x['reverse_recall'] for x in pts if x.get('reverse_recall') is not None])} | "
                             f"{mean_sd(retention)} | {len(pts)} |")
        lines.append("")
    print("\n".join(lines))
    if args.plot:
        plot(rows, timings, Path(args.plot))


def plot(rows: list[dict], timings: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r["set"] for r in rows if r["recipe"] != "base"})
    fig, axes = plt.subplots(2, len(sets), figsize=(6 * len(sets), 7), squeeze=False)
    for col, set_name in enumerate(sets):
        base = next((r for r in rows if r["set"] == set_name and r["recipe"] == "base"), None)
        for recipe in RECIPES:
            pts = [r for r in rows if r["set"] == set_name and r["recipe"] == recipe]
            if not pts:
                continue
            xs, rec, ret = [], [], []
            for epochs in sorted({p["epochs"] for p in pts}):
                group = [p for p in pts if p["epochs"] == epochs]
                t = solo_time(timings, {**group[0], "steps": statistics.mean(p["steps"] for p in group)})
                if t is None:
                    continue  # untimed: runs side by side slow each other, so their own clocks are not used
                xs.append(t[0])
                rec.append(statistics.mean(p["recall"] for p in group))
                ret.append(statistics.mean(p["general"] for p in group) / (base["general"] if base else 1))
            if not xs:
                continue
            axes[0][col].plot(xs, rec, "o-", label=recipe)
            axes[1][col].plot(xs, ret, "o-", label=recipe)
        axes[0][col].set_title(f"{set_name}: held-out recall")
        axes[1][col].set_title(f"{set_name}: general retention (tuned / base)")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xlabel("seconds: setup + training, each recipe timed alone")
            ax.grid(alpha=0.3)
        axes[0][col].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "base", "sweep", "timing", "report"):
        s = sub.add_parser(name)
        s.add_argument("--out", default=str(ROOT / "runs" / "time_to_quality"))
        s.add_argument("--work", default=str(ROOT / "runs" / "time_to_quality" / "work"))
        s.add_argument("--set", default="invented", choices=sorted(SETS))
        s.add_argument("--sets", default="invented")
        s.add_argument("--recipe", default="packed-2048", choices=sorted(RECIPES))
        s.add_argument("--recipes", default="unpacked,packed-2048")
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--seeds", default="1,2,3")
        s.add_argument("--epochs", default="1,2,3,4.5", help="comma list of cumulative epoch points")
        s.add_argument("--extra", default="", help="JSON of more config knobs for every run")
        s.add_argument("--parallel", type=int, default=1)
        s.add_argument("--deadline", type=float, default=1e9, help="seconds: start no job after, stop at")
        s.add_argument("--no-eval", action="store_true")
        s.add_argument("--keep", action="store_true", help="keep the run folder")
        s.add_argument("--verbose", action="store_true")
        s.add_argument("--plot", default="")
    args = p.parse_args()
    {"run": cmd_run, "base": cmd_base, "sweep": cmd_sweep, "timing": cmd_timing, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
