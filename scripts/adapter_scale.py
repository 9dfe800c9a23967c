"""The adapter's weight at use (WiSE-FT for LoRA: W + s x B A): held-out recall and retention of one trained
version at scales 0.5-1.0, the curve the adapter_scale default is chosen from.

    python -m scripts.adapter_scale measure --set invented-b --seed 1 [--knobs '{"retention_weight": 4}']
    python -m scripts.adapter_scale report        # the table in docs/augmentation.md ("The adapter's scale")

Each `measure` trains as `run` does (the model's recipe and the defaults, plus --knobs), then scores the version
at every scale (peft's rescale_adapter_scale, the same weights) on the set's held-out questions and on
eval/general.jsonl, retention question by question against the base. One JSON line per run in
docs/measurements/adapter-scale-<cpu|gpu>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from scripts.probe_agreement import SETS

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ROOT / "docs" / "measurements"
DOC = ROOT / "docs" / "augmentation.md"
SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def measure(set_name: str, seed: int, knobs: dict) -> dict:
    from peft.helpers import rescale_adapter_scale

    from unslothify.config import load_config
    from unslothify.data.augment import augment
    from unslothify.data.prepare import prepare
    from unslothify.machine.device import has_cuda, machine
    from unslothify.model.load import for_inference
    from unslothify.score.questions import base_vs_tuned
    from unslothify.train.session import FineTune

    data, questions = SETS[set_name]
    quiet = lambda *_: None  # noqa: E731
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        copy = Path(td) / data.name
        shutil.copy2(data, copy)
        cfg = load_config(None, model="embedded", data=str(copy), eval_questions=str(questions),
                          output_dir=str(Path(td) / "run"), seed=seed, max_train_minutes=0, **knobs)
        prepared = prepare(cfg, plot=False, progress=quiet)
        ft = FineTune.start(cfg, progress=print)
        if cfg.augment.enabled:
            augment(cfg, prepared, quiet, ft.model, ft.tokenizer)
        version = ft.train(cfg)
        for_inference(ft.model)
        points = []
        for scale in SCALES:
            with rescale_adapter_scale(ft.model, scale):
                summary, _ = base_vs_tuned(ft.model, ft.tokenizer, cfg, quiet, version.name, ft.model_path)
            points.append({"scale": scale, **{k: summary.get(k) for k in ("tuned_recall", "tuned_forward_recall",
                                                                           "tuned_reverse_recall", "retention")}})
            print(json.dumps(points[-1]), flush=True)
    return {"set": set_name, "seed": seed, "knobs": knobs, "retention_weight": cfg.retention_weight,
            "machine": machine(), "gpu": has_cuda(),
            "epochs": cfg.num_train_epochs, "seconds": round(time.perf_counter() - started, 1),
            "date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "points": points}


def results_path(gpu: bool) -> Path:
    return MEASUREMENTS / f"adapter-scale-{'gpu' if gpu else 'cpu'}.jsonl"


def cmd_measure(args):
    row = measure(args.set, args.seed, json.loads(args.knobs))
    out = Path(args.out) if args.out else results_path(row["gpu"])
    with out.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def table(rows: list[dict]) -> str:
    """Per machine, set and knobs: held-out recall and retention at each scale, over the seeds."""
    groups: dict = {}
    for r in rows:
        key = ("GPU" if r["gpu"] else "CPU", r["set"], r["retention_weight"])
        groups.setdefault(key, []).append(r)
    lines = ["| machine | set | retention_weight | seeds | " + " | ".join(f"scale {s:g}" for s in SCALES) + " |",
             "|---|---|---|---|" + "---|" * len(SCALES)]
    for (machine, set_name, weight), rs in sorted(groups.items()):
        cells = []
        for s in SCALES:
            pts = [p for r in rs for p in r["points"] if p["scale"] == s]
            recall = statistics.mean(p["tuned_recall"] for p in pts)
            kept = statistics.mean(p["retention"] for p in pts if p["retention"] is not None)
            cells.append(f"{recall:.2f} / {kept:.2f}")
        lines.append(f"| {machine} | {set_name} | {weight:g} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cmd_report(args):
    rows = [json.loads(x) for p in (results_path(False), results_path(True)) if p.exists()
            for x in p.read_text().splitlines() if x.strip()]
    text = ("Made by `python -m scripts.adapter_scale report` from docs/measurements/adapter-scale-*.jsonl: each "
            "cell is held-out recall / retention (of the general questions the base answers, the share still "
            "answered), the mean over the seeds, of one trained version weighed at that scale.\n\n" + table(rows))
    doc = DOC.read_text()
    start, end = "<!-- adapter-scale:start -->", "<!-- adapter-scale:end -->"
    if start in doc:
        doc = doc[:doc.index(start) + len(start)] + "\n" + text + "\n" + doc[doc.index(end):]
        DOC.write_text(doc)
    print(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--set", choices=sorted(SETS), default="invented-b")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--knobs", default="{}")
    m.add_argument("--out", default=None)
    sub.add_parser("report")
    args = p.parse_args()
    {"measure": cmd_measure, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
