#!/usr/bin/env python3
"""Are the knowledge probes worth steering by? Train as `run` does, with several evaluations per epoch, and at
every evaluation score both the probes (made from the training items) and the held-out questions written by
hand (eval/questions.jsonl, examples/invented/questions.jsonl), which nothing else in a run ever chooses by.

    python -m scripts.probe_agreement measure --set invented --epochs 4.5 --evals-per-epoch 2 --seed 1
    python -m scripts.probe_agreement measure --set domain --epochs 3 --evals-per-epoch 2 --seed 1
    python -m scripts.probe_agreement report          # docs/probes.md and docs/probe_agreement.png

Each evaluation point is a version a user could have saved. The report gives, per set and seed: the points
(probe recall, held-out recall, probe retention), the rank correlation of probe recall with held-out recall
(Spearman), and whether the point the probes choose (runs.best_version's rule) is within 0.05 of the best
held-out recall of any point. Raw points: docs/measurements/probe-agreement.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "domain": (ROOT / "domain.jsonl", ROOT / "eval" / "questions.jsonl"),
    "invented": (ROOT / "examples" / "invented" / "train.jsonl", ROOT / "examples" / "invented" / "questions.jsonl"),
    # made by scripts/make_invented_set.py: --seed 11 to tune on (with reverse questions), --seed 22 to confirm
    "invented-b": (ROOT / "examples" / "invented-b" / "train.jsonl",
                   ROOT / "examples" / "invented-b" / "questions.jsonl"),
    "confirm": (ROOT / "examples" / "confirm" / "train.jsonl", ROOT / "examples" / "confirm" / "questions.jsonl"),
}
RESULTS = ROOT / "docs" / "measurements" / "probe-agreement.jsonl"
# The lever runs (scripts/levers.py) are runs of `measure` too: the report reads them beside this script's own.
# The probes of 2026-12-04 (answer-side wordings, steady retention questions); the earlier lexical probes' points
# are kept in docs/bench-runs/probe-agreement-lexical-2026-12-03.jsonl.
REPORTED = [RESULTS, ROOT / "docs" / "measurements" / "probe-agreement-gpu.jsonl"]
NOTES = ROOT / "docs" / "measurements" / "probes-notes.md"  # what the figures mean; written by hand
DOC = ROOT / "docs" / "probes.md"
PLOT = ROOT / "docs" / "probe_agreement.png"


def measure_run(set_name: str, knobs: dict, seed: int, epochs: float, evals_per_epoch: int, model: str = "embedded",
                keep_checkpoints: str | None = None, progress=print) -> dict:
    """One training run as `run` trains it (prepare, load, augment, train), scoring the held-out questions at
    every evaluation beside the probes, and at the end the retention set (eval/general.jsonl) for base and
    tuned. Returns one row: the points, the final scores, the times."""
    from unslothify.data.augment import augment
    from unslothify.config import load_config
    from unslothify.machine.device import has_cuda, machine
    from unslothify.score.questions import base_vs_tuned, evaluate, load_questions
    from unslothify.score.probes import generating
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune

    data, questions_path = SETS[set_name]
    questions = load_questions(questions_path)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        copy = Path(td) / data.name
        shutil.copy2(data, copy)  # the augmented file is written beside the data
        cfg = load_config(None, model=model, data=str(copy), eval_questions=str(questions_path),
                          output_dir=str(Path(td) / "run"), seed=seed, num_train_epochs=epochs,
                          evals_per_epoch=evals_per_epoch, max_train_minutes=0, **knobs)
        prepared = prepare(cfg, plot=False, progress=progress)
        ft = FineTune.start(cfg, progress=progress)
        if cfg.augment.enabled:
            augment(cfg, prepared, progress, ft.model, ft.tokenizer)
        setup_seconds = time.perf_counter() - started
        heldout: list[dict] = []
        probe_for = ft.probe_for
        general = load_questions(cfg.general_questions)
        from unslothify.model.load import for_inference, for_training

        for_inference(ft.model)  # the base's general answers, asked as `eval` asks them, once
        base_general, _ = evaluate(ft.model, ft.tokenizer, general, max_new_tokens=cfg.max_new_tokens,
                                   system_prompt=cfg.system_prompt)
        for_training(ft.model)
        known = [i for i, h in enumerate(base_general["hits"]) if h]

        def with_heldout(call_cfg, data):
            probe = probe_for(call_cfg, data)

            def both(model, at_base=False):
                out = probe(model, at_base)
                if keep_checkpoints:  # the adapter at this point, for `families`
                    model.save_pretrained(Path(keep_checkpoints) / f"point-{len(heldout):03d}")
                with generating(model):
                    score, _ = evaluate(model, ft.tokenizer, questions, max_new_tokens=cfg.max_new_tokens,
                                        system_prompt=cfg.system_prompt)
                    kept, _ = evaluate(model, ft.tokenizer, [general[i] for i in known],
                                       max_new_tokens=cfg.max_new_tokens, system_prompt=cfg.system_prompt)
                heldout.append({"heldout_recall": score["recall"], "general_retention": kept["recall"],
                                **{k: v for k, v in score.items() if k.endswith("_recall") and k != "recall"}})
                return out
            return both

        ft.probe_for = with_heldout
        version = ft.train()
        for_inference(ft.model)
        summary, _ = base_vs_tuned(ft.model, ft.tokenizer, cfg, lambda *_: None, version.name, ft.model_path)
        points = [h for h in version.history() if "probe_recall" in h]
        assert len(points) == len(heldout), (len(points), len(heldout))
        return {"set": set_name, "seed": seed, "model": cfg.model, "machine": machine(), "gpu": has_cuda(),
                "epochs": epochs, "evals_per_epoch": evals_per_epoch, "knobs": knobs,
                "probes": len(prepared.probes), "retention_probes": version.manifest.get("retention_probes"),
                "heldout_questions": len(questions),
                "train_items": version.manifest["train_items"], "seconds": round(time.perf_counter() - started, 1),
                "setup_seconds": round(setup_seconds, 1), "train_seconds": version.manifest["train_seconds"],
                "probe_seconds": version.manifest["probe_seconds"], "final": summary,
                "general_known": len(known), "general_questions": len(general),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "points": [{"epoch": p["epoch"], "step": p["step"], "probe_recall": p["probe_recall"],
                            "probe_retention": p.get("probe_retention"), "eval_loss": p.get("eval_loss"), **h}
                           for p, h in zip(points, heldout)]}


def cmd_measure(args):
    row = measure_run(args.set, json.loads(args.knobs), args.seed, args.epochs, args.evals_per_epoch, args.model,
                      args.keep_checkpoints)
    if args.lever:
        row["lever"] = args.lever
    out = Path(args.out or RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "points"}))
    for p in row["points"]:
        print(f"epoch {p['epoch']:.2f}: probes {p['probe_recall']:.3f} held-out {p['heldout_recall']:.3f} "
              f"retention {p['probe_retention']}")


# ----------------------------------------------------------------------------------------------------------
# Candidate probe families, scored on saved adapters (how the shipped family was chosen)
# ----------------------------------------------------------------------------------------------------------

def _wh(question: str) -> str:
    q = question.lower()
    for lead, wh in (("how many", "How many"), ("how much", "How much"), ("who", "Who"), ("which person", "Who"),
                     ("when", "When"), ("in what year", "When"), ("in which year", "When"), ("where", "Where"),
                     ("what colour", "What colour"), ("which colour", "What colour")):
        if q.startswith(lead) or f" {lead} " in q:
            return wh
    return "What"


def family_questions(name: str, question: str, answer: str, terms: list[str], rng) -> list[str]:
    """Candidate probe wordings of one item in family `name` (checked by the caller)."""
    from unslothify.data.augment import english as E, probe_family as F
    from unslothify.data.augment.checks import FUNCTION_WORDS, WORD

    if name == "frames":  # the probe frames around the question
        return F.framed(question, rng)
    if name == "lexical":  # a lead-phrase swap and every word swap the tables know, no frame
        return [x for x in [F.lexical_rewording(question)] if x]
    if name == "keyword":  # the question's names and content words, and what kind of answer it wants
        words = [w for w in WORD.findall(question) if w.lower() not in FUNCTION_WORDS and w.lower() not in E.AUXILIARIES]
        return [f"{_wh(question)}? Quick facts: {', '.join(words)}."] if words else []
    if name == "echo":  # the answer's sentence with its key term asked for in place (the shipped family)
        side = F.answer_side(answer, terms)
        return [side] if side else []
    raise ValueError(name)


FAMILIES = ("frames", "lexical", "keyword", "echo")


def cmd_families(args):
    import random

    from unslothify.data.augment.checks import check_question, norm_question, single_turn, user_text, answer_text
    from unslothify.config import load_config
    from unslothify.data.items import read_jsonl_items
    from unslothify.score.questions import Question, evaluate, load_questions
    from unslothify.model.load import load_for_inference
    from unslothify.score.probes import generating
    from unslothify.data.probes import build_probes

    data, questions_path = SETS[args.set]
    cfg = load_config(None, model="embedded", data=str(data), output_dir="/tmp/families-run")
    items, _ = read_jsonl_items(data)
    sampled = build_probes(items, cfg)  # the same items and key terms as the shipped probes
    by_line = {i.line: i for i in items}
    seen = {norm_question(user_text(i)) for i in items if single_turn(i)}
    sets = {}
    for fam in FAMILIES:
        qs = []
        for q, _ in sampled:
            item = by_line[q.line]
            cands = family_questions(fam, user_text(item), answer_text(item), q.expected, random.Random(q.line))
            ok = next((c for c in cands if fam == "keyword" or check_question(c, user_text(item), seen) is None), None)
            if ok:
                qs.append(Question(ok, q.expected, fam, q.line))
        sets[fam] = qs
        print(fam, len(qs), "e.g.", [x.question for x in qs[:3]])
    heldout = load_questions(questions_path)
    rows = []
    for point in sorted(Path(args.checkpoints).glob("point-*")):
        model, tok, _ = load_for_inference(str(point), cfg)
        row = {"point": point.name}
        with generating(model):
            row["heldout"] = evaluate(model, tok, heldout, max_new_tokens=64)[0]["recall"]
            for fam, qs in sets.items():
                row[fam] = evaluate(model, tok, qs, max_new_tokens=48)[0]["recall"]
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model
    out = Path(args.out or f"/tmp/families-{args.set}.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pts = rows[1:]
    for fam in FAMILIES:
        rho = spearman([r[fam] for r in pts], [r["heldout"] for r in pts])
        over = sum(r[fam] - r["heldout"] for r in pts) / len(pts)
        print(f"{fam:8s} rho {rho:.2f} overstates {over:+.3f}")


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------

def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation with average ranks for ties (Pearson on the ranks)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx) ** 0.5
    vy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (vx * vy) if vx and vy else float("nan")


def chosen_point(points: list[dict], retention_probes: int | None = None) -> dict:
    """The point runs.best_version would pick among versions saved at these points."""
    from unslothify.runs import choose_best

    return points[choose_best([(p["probe_recall"], p.get("probe_retention")) for p in points], retention_probes)]


def summarise(row: dict) -> dict:
    pts = [p for p in row["points"] if p["step"] > 0]  # the base point says nothing about steering
    chosen = chosen_point(pts, row.get("retention_probes"))
    best = max(p["heldout_recall"] for p in pts)
    recall_gap = [p["probe_recall"] - p["heldout_recall"] for p in pts]
    retention_gap = [p["probe_retention"] - p["general_retention"] for p in pts
                     if p.get("probe_retention") is not None and p.get("general_retention") is not None]
    return {"rho": spearman([p["probe_recall"] for p in pts], [p["heldout_recall"] for p in pts]),
            "chosen_epoch": chosen["epoch"], "chosen_heldout": chosen["heldout_recall"], "best_heldout": best,
            "within": best - chosen["heldout_recall"] <= 0.05 + 1e-9,
            "recall_gap": statistics.mean(recall_gap), "recall_worst": max(recall_gap, key=abs),
            "recall_ok": sum(abs(g) <= RECALL_BAR + 1e-9 for g in recall_gap), "points": len(pts),
            "retention_gap": statistics.mean(retention_gap) if retention_gap else None,
            "retention_worst": max(retention_gap, key=abs) if retention_gap else None,
            "retention_ok": sum(abs(g) <= RETENTION_BAR + 1e-9 for g in retention_gap),
            "probe_share": row["probe_seconds"] / max(1e-9, row["train_seconds"])}


# Issue 30's bars: probe recall within 0.10 of held-out recall, probe retention within 0.05 of the general eval's.
RECALL_BAR, RETENTION_BAR = 0.10, 0.05


def _signed(x) -> str:
    return "–" if x is None else f"{x:+.2f}"


def cmd_report(args):
    paths = [Path(p) for p in args.results.split(",")] if args.results else [p for p in REPORTED if p.exists()]
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    lines = ["# Knowledge probes against held-out questions and the general eval", "",
             "Made by `python -m scripts.probe_agreement report` from "
             f"{', '.join(f'`{p.relative_to(ROOT)}`' for p in paths)} (raw points). Each row is one training run as "
             "`run` trains it (`scripts/probe_agreement.py measure`). At every evaluation the run scored its probes "
             "and, for this comparison only, the hand-written held-out questions (recall) and `eval/general.jsonl` "
             "asked as `eval` asks it (retention: of the questions the base answers, the share still answered). "
             "gap: probe minus outside figure, mean over the points after step 0, and the worst point; "
             f"within: points inside the bars ({RECALL_BAR:.2f} for recall, {RETENTION_BAR:.2f} for retention). "
             "rho: Spearman rank correlation of probe recall with held-out recall. best: whether the point the "
             "probes choose (runs.choose_best) is within 0.05 of the best held-out recall of any point.", "",
             "| set | seed | machine | epochs | points | probes | retention probes | recall gap (worst) | recall within | "
             "retention gap (worst) | retention within | rho | best | probes' share of the call |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summaries = []
    for row in rows:
        s = summarise(row)
        summaries.append(s)
        lines.append(f"| {row['set']}{' (' + row['lever'] + ')' if row.get('lever') else ''} | {row['seed']} | "
                     f"{'GPU' if row['gpu'] else 'CPU'} ({row['date'][:10]}) | {row['epochs']:g} | {s['points']} | "
                     f"{row['probes']} | {row.get('retention_probes')} | {_signed(s['recall_gap'])} "
                     f"({_signed(s['recall_worst'])}) | {s['recall_ok']} of {s['points']} | "
                     f"{_signed(s['retention_gap'])} ({_signed(s['retention_worst'])}) | "
                     f"{s['retention_ok']} of {s['points']} | {s['rho']:.2f} | {'yes' if s['within'] else 'no'} | "
                     f"{s['probe_share']:.0%} |")
    if summaries:
        gaps = [s["retention_gap"] for s in summaries if s["retention_gap"] is not None]
        lines += ["", f"All told: probe recall minus held-out recall {statistics.mean(s['recall_gap'] for s in summaries):+.2f} "
                  f"on average; probe retention minus the general eval's "
                  f"{statistics.mean(gaps) if gaps else float('nan'):+.2f}; {sum(s['within'] for s in summaries)} of "
                  f"{len(rows)} choices within 0.05 of the best held-out point; the probes took "
                  f"{min(s['probe_share'] for s in summaries):.0%}-{max(s['probe_share'] for s in summaries):.0%} of "
                  f"the training call.", ""]
    if args.extra and Path(args.extra).exists():
        lines += [Path(args.extra).read_text().strip(), ""]
    lines += ["", "Every point:", "", "| set | seed | epoch | probe recall | held-out recall | probe retention | "
              "general retention | validation loss |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for p in row["points"]:
            lines.append(f"| {row['set']} | {row['seed']} | {p['epoch']:.2f} | {p['probe_recall']:.3f} | "
                         f"{p['heldout_recall']:.3f} | {_fmt(p.get('probe_retention'))} | "
                         f"{_fmt(p.get('general_retention'))} | {p['eval_loss']:.3f} |")
    lines += ["", f"![probe recall against held-out recall]({PLOT.name})", ""]
    _plot(rows)
    DOC.write_text("\n".join(lines), encoding="utf-8")
    print("wrote", DOC, "and", PLOT)


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _plot(rows):
    """Per set: probe recall against held-out recall (top), probe retention against the general eval's (below)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({r["set"] for r in rows})
    fig, axes = plt.subplots(2, len(sets), figsize=(5.0 * len(sets), 7.0), squeeze=False)
    pairs = (("probe_recall", "heldout_recall", "recall", "held-out"),
             ("probe_retention", "general_retention", "retention", "general eval"))
    for col, name in enumerate(sets):
        for r, (probe_key, outside_key, what, outside) in enumerate(pairs):
            ax = axes[r][col]
            for row in [x for x in rows if x["set"] == name]:
                pts = [p for p in row["points"] if p.get(probe_key) is not None and p.get(outside_key) is not None]
                ep = [p["epoch"] for p in pts]
                tag = f"{'GPU' if row['gpu'] else 'CPU'} seed {row['seed']}"
                line, = ax.plot(ep, [p[probe_key] for p in pts], "o-", label=f"probes, {tag}")
                ax.plot(ep, [p[outside_key] for p in pts], "s--", color=line.get_color(), label=f"{outside}, {tag}")
            ax.set_title(f"{name}: probe vs {outside} {what}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            ax.set_ylim(-0.02, 1.02)
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--set", choices=sorted(SETS), default="invented")
    m.add_argument("--model", default="embedded")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--epochs", type=float, default=4.5)
    m.add_argument("--evals-per-epoch", type=int, default=2)
    m.add_argument("--knobs", default="{}", help="more config knobs as JSON, e.g. '{\"learning_rate\": 1e-3}'")
    m.add_argument("--out", default=None)
    m.add_argument("--keep-checkpoints", default=None, help="save the adapter at every evaluation point here")
    m.add_argument("--lever", default=None, help="a name for these knobs in the results (scripts/levers.py)")
    f = sub.add_parser("families", help="score candidate probe families on the adapters saved by measure")
    f.add_argument("--set", choices=sorted(SETS), default="invented")
    f.add_argument("--checkpoints", required=True)
    f.add_argument("--out", default=None)
    r = sub.add_parser("report")
    r.add_argument("--results", default=None, help="comma-separated files (default: every file in REPORTED)")
    r.add_argument("--extra", default=str(NOTES), help="a markdown file placed after the summary (notes)")
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    {"measure": cmd_measure, "report": cmd_report, "families": cmd_families}[args.cmd](args)


if __name__ == "__main__":
    main()
