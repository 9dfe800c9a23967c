#!/usr/bin/env python3
"""What a training step costs on this machine: the time plan's timed steps (train/plan.py, the call's own trainer
and retention term at learning rate 0) beside real training calls of the session (train/session.py) with the
retention term off and on, all in one process on the same model and rows, so the ratios compare like with like.

    python -m scripts.step_cost --set invented --steps 120               # embedded model, the run's recipe
    python -m scripts.step_cost --set invented --steps 120 --profile 25  # and where each call spends its time

Prints one JSON line per variant (seconds per step past the first few, and per step of the plan's figure) and
the ratios. On a GPU a small model's step is bound by the host issuing kernels, so per-step costs the term adds
on the host show here and not in a timing of its arithmetic.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .measure_run import SETS, run_flags


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=sorted(SETS), default="invented")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--profile", type=int, default=0, help="print this many functions of each call, by time")
    p.add_argument("--weights", default="0,4", help="retention weights to time, in order")
    p.add_argument("--callers", default="", help="with --profile: also who calls the functions matching this")
    p.add_argument("--out", default=None, help="append the JSON lines here (e.g. docs/measurements/step-cost.jsonl)")
    args = p.parse_args()
    if args.steps < 12:
        p.error("--steps: at least 12 (the first 5 steps of a call are not counted)")

    from transformers import TrainerCallback

    from unslothify.cli import build_parser, config_from_args
    from unslothify.config import replace
    from unslothify.data.prepare import prepare
    from unslothify.data.augment import augment
    from unslothify.machine.device import has_cuda, machine
    from unslothify.train.plan import plan
    from unslothify.train.session import FineTune

    cli = build_parser().parse_args(["run", "--model", "embedded", *run_flags(args.set, Path(tempfile.mkdtemp()))])
    cfg = replace(config_from_args(cli), max_train_minutes=0.0)
    prepared = prepare(cfg, progress=lambda *_: None)
    ft = FineTune.start(cfg, progress=lambda *_: None)
    if cfg.augment.enabled:
        augment(cfg, prepared, lambda *_: None, ft.model, ft.tokenizer)
    timing = ft.timing(cfg)
    data_ = ft.training_data(cfg)
    steps_per_epoch = -(-len(data_.train) // cfg.per_device_train_batch_size)
    sync = __import__("torch").cuda.synchronize if has_cuda() else (lambda: None)

    class StepClock(TrainerCallback):
        """Wall time between the ends of steps (no synchronisation inside a step, as in a real call)."""

        def __init__(self):
            self.ends = []

        def on_step_end(self, a, state, control, **kw):
            if len(self.ends) in (5, args.steps - 1):
                sync()
            self.ends.append(time.perf_counter())

    # the plan's steady step on this set's batches (its one-off seconds aside), as plan() sizes a call
    one_epoch = plan(cfg, timing, [len(r) for r in data_.train["input_ids"]], 0, 0, False, epochs=1.0)
    planned = (one_epoch["training"] - timing.get("train_one_off_seconds", 0.0)) / one_epoch["steps"]
    rows = [{"variant": "plan (the call's trainer and term, lr 0)", "seconds_per_step": planned,
             "one_off_seconds": round(timing.get("train_one_off_seconds", 0.0), 2),
             "timed_step_seconds": timing.get("timed_step_seconds")}]
    for weight in [float(w) for w in args.weights.split(",")]:
        clock = StepClock()
        ft.callbacks = [clock]
        call_cfg = replace(cfg, retention_weight=weight, evals_per_epoch=0.1, early_stopping_patience=0,
                           num_train_epochs=max(0.1, args.steps / steps_per_epoch))
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        ft.train(call_cfg)
        if profiler:
            profiler.disable()
        per_step = (clock.ends[-1] - clock.ends[5]) / max(1, len(clock.ends) - 6)
        rows.append({"variant": f"training call, retention_weight {weight:g}", "seconds_per_step": per_step,
                     "steps": len(clock.ends)})
        if profiler:
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
            stats.print_stats(args.profile)
            if args.callers:
                stats.print_callers(args.callers)
            print(text.getvalue())
    base = rows[0]["seconds_per_step"]
    date = datetime.now(timezone.utc).isoformat(timespec="minutes")
    for r in rows:
        r.update(ratio_to_plan=round(r["seconds_per_step"] / base, 3), seconds_per_step=round(r["seconds_per_step"], 4),
                 machine=machine(), set=args.set, date=date)
        print(json.dumps(r))
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
