#!/usr/bin/env python3
"""What teaches the facts: each lever of issue "Teach the facts" trained and scored as `run` would, over
seeds, on the sets of invented facts and on domain.jsonl, on this machine (CPU or GPU).

    python -m scripts.levers sweep --levers defaults,rephrase2,restate --sets invented-b,domain --seeds 1,2,3
    python -m scripts.levers sweep ... --parallel 12 --deadline 540   # a GPU runs many small runs at once
    python -m scripts.levers report                                    # the tables in docs/augmentation.md

Each run is one `scripts/probe_agreement.py measure` process (the same code as the agreement figures: the
probes and the held-out questions at every evaluation, then base and tuned on the held-out and retention
sets), appended as one JSON line to docs/measurements/levers-<cpu|gpu>.jsonl. Runs side by side share the
machine, so their seconds are not the time a user waits: `--parallel 1` (the default) measures that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from unslothify.recipes import experiment

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ROOT / "docs" / "measurements"
DOC = ROOT / "docs" / "augmentation.md"

# One change each to the model's own recipe: recipes/experiments/levers.yaml.
LEVERS = experiment("levers")
EPOCHS = 4.5
EVALS_PER_EPOCH = 1



def retention(summary: dict) -> float:
    """Retention question by question where the run recorded it (eval's 'retention', since 2026-12-04), else the
    ratio of the general recalls the older runs recorded (which nets new answers against lost ones)."""
    return summary["retention"] if summary.get("retention") is not None else summary["tuned_general"] / summary["base_general"]

def results_path() -> Path:
    import torch

    return MEASUREMENTS / f"levers-{'gpu' if torch.cuda.is_available() else 'cpu'}.jsonl"


def cmd_sweep(args):
    out = Path(args.out) if args.out else results_path()
    jobs = [(lever, s, seed) for seed in args.seeds.split(",") for s in args.sets.split(",")
            for lever in args.levers.split(",")]
    knobs = {**LEVERS}
    started, running, done = time.monotonic(), [], 0
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1" if args.parallel > 1 else "")}
    env = {k: v for k, v in env.items() if v != ""}
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    while jobs or running:
        while jobs and len(running) < args.parallel and time.monotonic() - started < args.deadline:
            lever, s, seed = jobs.pop(0)
            spec = dict(knobs[lever])
            epochs = spec.pop("num_train_epochs", args.epochs)
            cmd = [sys.executable, "-m", "scripts.probe_agreement", "measure", "--set", s, "--seed", seed,
                   "--epochs", str(epochs), "--evals-per-epoch", str(args.evals_per_epoch), "--knobs",
                   json.dumps(spec), "--out", str(out), "--lever", lever]
            log = open(logs / f"{lever}-{s}-{seed}.log", "w")
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), log,
                            lever, s, seed))
        if time.monotonic() - started >= args.deadline and jobs:
            print(f"deadline: {len(jobs)} runs not started", flush=True)
            jobs = []
        for entry in list(running):
            proc, log, lever, s, seed = entry
            if proc.poll() is not None:
                log.close()
                running.remove(entry)
                done += 1
                print(f"[{time.monotonic() - started:5.0f} s] {lever} {s} seed {seed}: exit {proc.returncode}",
                      flush=True)
            elif time.monotonic() - started > args.deadline + args.grace:
                proc.kill()
        time.sleep(2)
    print(f"{done} runs in {time.monotonic() - started:.0f} s; results in {out}")


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------

def _stat(xs, fmt="{:.2f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    return fmt.format(statistics.mean(xs)) + (f" ± {fmt.format(statistics.stdev(xs))}" if len(xs) > 1 else "")


def table(rows: list[dict]) -> str:
    """One line per lever and set: held-out recall (forward, reverse), retention, probe recall, time."""
    lines = ["| set | lever | runs | held-out recall | reverse | retention (tuned / base) | probe recall | "
             "epochs | trained on | seconds all told | of it training |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["set"], r.get("lever", "?")), []).append(r)
    for (s, lever), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], list(LEVERS).index(kv[0][1])
                                                                  if kv[0][1] in LEVERS else 99)):
        f = [r["final"] for r in rs]
        lines.append(
            f"| {s} | {lever} | {len(rs)} | {_stat([x['tuned_recall'] for x in f])} | "
            f"{_stat([x.get('tuned_reverse_recall') for x in f])} | "
            f"{_stat([retention(x) for x in f if x.get('base_general')])} | "
            f"{_stat([r['points'][-1]['probe_recall'] for r in rs])} | "
            f"{_stat([r['points'][-1]['epoch'] for r in rs], '{:.1f}')} | {rs[0]['train_items']} | "
            f"{_stat([r['seconds'] for r in rs], '{:.0f}')} | {_stat([r['train_seconds'] for r in rs], '{:.0f}')} |")
    return "\n".join(lines)


def cmd_report(args):
    import re

    parts = []
    for kind in ("cpu", "gpu"):
        path = MEASUREMENTS / f"levers-{kind}.jsonl"
        if not path.exists():
            continue
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        if not rows:
            continue
        dates = sorted({r["date"][:10] for r in rows})
        parts.append(f"**{kind.upper()}**: {rows[0]['machine']}, {dates[0]}"
                     f"{' to ' + dates[-1] if len(dates) > 1 else ''} (`{path.relative_to(ROOT)}`).\n\n" + table(rows))
    text = DOC.read_text(encoding="utf-8")
    body = "\n\n".join(parts) or "(no measurements yet)"
    new = re.sub(r"(<!-- levers:start -->\n).*?(<!-- levers:end -->)", lambda m: m.group(1) + body + "\n" + m.group(2),
                 text, flags=re.S)
    DOC.write_text(new, encoding="utf-8")
    print(body)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--levers", default=",".join(LEVERS))
    s.add_argument("--sets", default="invented-b,domain")
    s.add_argument("--seeds", default="1,2,3")
    s.add_argument("--epochs", type=float, default=EPOCHS)
    s.add_argument("--evals-per-epoch", type=int, default=EVALS_PER_EPOCH)
    s.add_argument("--parallel", type=int, default=1)
    s.add_argument("--deadline", type=float, default=1e9, help="start no run after this many seconds")
    s.add_argument("--grace", type=float, default=120, help="kill runs this long after the deadline")
    s.add_argument("--out", default=None)
    s.add_argument("--logs", default="/tmp/levers-logs")
    sub.add_parser("report")
    args = p.parse_args()
    {"sweep": cmd_sweep, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
