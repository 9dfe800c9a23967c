#!/usr/bin/env python3
"""Compare augmentation kinds on CPU with the embedded model, at equal training steps and equal wall time.

For each data set and augmentation config: prepare (a copy of the training file in a scratch folder, so
the augmented file lands there), augment, train a fresh LoRA adapter with the embedded recipe for a fixed
number of optimizer steps, and score held-out recall (and reverse recall where the set has reverse
questions) and general retention (eval/general.jsonl) with the eval contract. The base model is scored
once per set. Each finished run appends one JSON line to the results file, so an interrupted comparison
keeps what it measured and `--report` can rebuild the table at any time.

    # equal steps (the embedded recipe's 8 epochs of the invented set = 72 steps)
    python -m scripts.compare_augmentation --set invented --configs none,rephrase,statement,reverse,replay,all --steps 72
    # equal wall time: steps = (seconds - augmentation time) / the config's measured seconds per step
    python -m scripts.compare_augmentation --set invented --configs rephrase,statement,reverse,replay,all --seconds 100
    # the table (markdown) from all results so far
    python -m scripts.compare_augmentation --report > table.md

Sets: invented (examples/invented: 40 facts x 2 phrasings, 40 held-out paraphrases) and domain (domain.jsonl,
eval/questions.jsonl with 20 reverse questions). Timings are wall-clock on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
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
# The variants compared: recipes/experiments/augmentation.yaml.
CONFIGS = experiment("augmentation")
DEFAULT_RESULTS = ROOT / "runs" / "compare_augmentation" / "results.jsonl"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_result(path: Path, row: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def make_cfg(set_name: str, config: str, work: Path, extra: dict):
    from unslothify.config import AugmentConfig, load_config
    import dataclasses

    train, questions = SETS[set_name]
    data = work / train.name
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(train, data)
    aug = CONFIGS[config]
    if aug is None:
        aug = dataclasses.asdict(AugmentConfig())
    return load_config(None, model="embedded", data=str(data), eval_questions=str(questions),
                       general_questions=str(ROOT / "eval" / "general.jsonl"), output_dir=str(work / "run"),
                       augment=dict(aug), **extra)


def score_base(set_name: str, results: Path, extra: dict) -> dict:
    """Base-model recall/retention for a set (once; cached in the results file)."""
    for r in read_results(results):
        if r.get("set") == set_name and r.get("config") == "base":
            return r
    from unslothify.score.questions import score_file
    from unslothify.model.load import load_for_inference

    cfg = make_cfg(set_name, "none", ROOT / "runs" / "compare_augmentation" / f"{set_name}-base", extra)
    model, tokenizer, _ = load_for_inference("embedded", cfg)
    rec, _ = score_file(model, tokenizer, cfg, cfg.eval_questions, "base")
    gen, _ = score_file(model, tokenizer, cfg, cfg.general_questions, "base general")
    row = {"set": set_name, "config": "base", "recall": rec["recall"], "n": rec["n"],
           "reverse_recall": rec.get("reverse_recall"), "general": gen["recall"], "n_general": gen["n"]}
    append_result(results, row)
    return row


def seconds_per_step(results: Path, set_name: str, config: str, label: str = "") -> tuple[float, float] | None:
    rows = [r for r in read_results(results) if r.get("set") == set_name and r.get("config") == config
            and r.get("mode") == "steps" and r.get("label", "") == label]
    if not rows:
        return None
    r = rows[-1]
    return r["train_seconds"] / r["steps"], r["augment_seconds"]


def run_one(set_name: str, config: str, steps: int | None, seconds: float | None, results: Path, extra: dict,
            keep: bool, label: str = "") -> dict:
    from unslothify.data.augment import augment
    from unslothify.model.load import for_inference
    from unslothify.score.questions import score_file
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune

    mode = "steps" if seconds is None else "time"
    if seconds is not None:
        measured = seconds_per_step(results, set_name, config, label)
        if measured is None:
            raise SystemExit(f"--seconds needs an equal-steps run of {config} on {set_name} first (its s/step).")
        per_step, aug_s = measured
        steps = max(1, int((seconds - aug_s) / per_step))
    stamp = datetime.now().strftime("%H%M%S")
    work = ROOT / "runs" / "compare_augmentation" / f"{set_name}-{config}-{mode}{steps}-{stamp}"
    cfg = make_cfg(set_name, config, work, extra)
    started = time.perf_counter()
    prepared = prepare(cfg, plot=False)
    report = None
    aug_seconds = 0.0
    if cfg.augment.enabled:
        t0 = time.perf_counter()
        report = augment(cfg, prepared).report
        aug_seconds = time.perf_counter() - t0
    ft = FineTune.start(cfg)
    train_ds = ft.training_data().train
    per_epoch = math.ceil(len(train_ds) / (cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps))
    epochs = steps / per_epoch
    version = ft.train(more_epochs=epochs)
    train_seconds = version.manifest["train_seconds"]
    done_steps = version.manifest["cumulative_steps"]
    for_inference(ft.model)
    t0 = time.perf_counter()
    rec, rec_rows = score_file(ft.model, ft.tokenizer, cfg, cfg.eval_questions, f"{config} tuned")
    gen, gen_rows = score_file(ft.model, ft.tokenizer, cfg, cfg.general_questions, f"{config} tuned general")
    eval_seconds = time.perf_counter() - t0
    base = score_base(set_name, results, extra)
    row = {
        "set": set_name, "config": config, "label": label, "mode": mode, "steps": done_steps, "epochs": round(epochs, 3),
        "train_items": len(prepared.train), "trained_on": len(train_ds),
        "augment": dict(CONFIGS[config] or {"default": True}),
        "added": report["added"] if report else {}, "rejected": report["rejected"] if report else {},
        "augment_seconds": round(aug_seconds, 1), "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1), "total_seconds": round(time.perf_counter() - started, 1),
        "recall": rec["recall"], "n": rec["n"], "reverse_recall": rec.get("reverse_recall"),
        "forward_recall": rec.get("forward_recall"), "general": gen["recall"], "n_general": gen["n"],
        "base_recall": base["recall"], "base_general": base["general"],
        "retention": round(gen["recall"] / base["general"], 4) if base["general"] else None,
        "final_train_loss": version.manifest["final_train_loss"], "final_eval_loss": version.manifest["final_eval_loss"],
        "recipe": {k: getattr(cfg, k) for k in ("learning_rate", "lora_r", "lora_alpha", "per_device_train_batch_size",
                                                 "lr_scheduler_type", "weight_decay")},
        "machine": machine(), "load": os.getloadavg()[0],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "misses": [r["question"] for r in rec_rows if not r["recalled"]][:50],
        "general_misses": [(r["question"], r["answer"][:120]) for r in gen_rows if not r["recalled"]][:30],
    }
    append_result(results, row)
    print(json.dumps({k: v for k, v in row.items() if k not in ("misses", "rejected")}), flush=True)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return row


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def report(results: Path) -> str:
    rows = read_results(results)
    out = []
    for set_name in SETS:
        base = next((r for r in rows if r.get("set") == set_name and r.get("config") == "base"), None)
        runs = [r for r in rows if r.get("set") == set_name and r.get("config") != "base"]
        if not runs:
            continue
        out.append(f"\n**{set_name}** (base model: recall {fmt(base['recall'])}"
                   + (f", reverse recall {fmt(base['reverse_recall'])}" if base and base.get("reverse_recall") is not None
                      else "") + f", general {fmt(base['general'])} on {base['n_general']} questions)\n" if base else "\n")
        out.append("| config | budget | steps | items trained (added) | rejected | recall | reverse | general "
                   "retention | augment s | train s | eval s |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            added = sum(r["added"].values()) if r["added"] else 0
            rejected = sum(sum(v.values()) for v in r["rejected"].values()) if r["rejected"] else 0
            budget = "equal steps" if r["mode"] == "steps" else "equal time"
            name = r["config"] + (f" ({r['label']})" if r.get("label") else "")
            out.append(f"| {name} | {budget} | {r['steps']} | {r['trained_on']} ({added}) | {rejected} | "
                       f"{fmt(r['recall'])} | {fmt(r.get('reverse_recall'))} | {fmt(r['retention'])} | "
                       f"{fmt(r['augment_seconds'], 0)} | {fmt(r['train_seconds'], 0)} | {fmt(r['eval_seconds'], 0)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=sorted(SETS), default="invented")
    p.add_argument("--configs", default="none,rephrase,statement,reverse,replay,all",
                   help=f"comma list of: {', '.join(CONFIGS)}")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="optimizer steps per run (equal steps)")
    g.add_argument("--seconds", type=float, help="augmentation + training seconds per run (equal wall time)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--recipe", default="", help="knob overrides for every run, e.g. learning_rate=1e-3,lora_r=16")
    p.add_argument("--label", default="", help="suffix for the config name in the table (e.g. the recipe change)")
    p.add_argument("--keep", action="store_true", help="keep each run's scratch folder")
    p.add_argument("--report", action="store_true", help="print the markdown table of all results and exit")
    args = p.parse_args(argv)
    results = Path(args.results)
    if args.report:
        print(report(results))
        return 0
    if args.steps is None and args.seconds is None:
        p.error("give --steps or --seconds")
    extra = {}
    for kv in filter(None, args.recipe.split(",")):
        k, v = kv.split("=", 1)
        extra[k.strip()] = v.strip().replace(";", ",")  # lists: target_modules=q_proj;v_proj
    for config in args.configs.split(","):
        if config not in CONFIGS:
            p.error(f"unknown config {config!r}; known: {', '.join(CONFIGS)}")
        run_one(args.set, config, args.steps, args.seconds, results, extra, args.keep, args.label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
