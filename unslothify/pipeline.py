"""Stages the CLI and the notebooks share: load a model by name for eval or chat, score it, run all."""

from __future__ import annotations

import time
from pathlib import Path

from .config import EMBEDDED, Config
from .evaluation import evaluate, load_questions
from .fsutil import atomic_write_json
from .runs import VERSION_RE, Run


def load_for_inference(spec: str, cfg: Config, progress=print):
    """(model, tokenizer, description) for 'embedded', a hub id, a merged/model folder, an adapter
    version folder (runs/x/v003), or a run folder (its best version)."""
    from .models import for_inference, load_base, load_version

    path = Path(spec)
    if path.is_dir() and not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        versions = Run(path).versions()
        if versions:
            return load_for_inference(str(Run(path).version("best").path), cfg, progress)
    if (path / "adapter_config.json").exists():
        model, tokenizer, base = load_version(cfg, path, progress)
        return for_inference(model), tokenizer, f"{base} + adapter {path}"
    if spec in (EMBEDDED, "auto"):
        from .config import replace

        model, tokenizer, name = load_base(replace(cfg, model=spec), progress)
        return for_inference(model), tokenizer, name
    model, tokenizer, name = load_base(cfg, progress, model_path=spec)
    return for_inference(model), tokenizer, name


def score_file(model, tokenizer, cfg: Config, path: str | Path, label: str, progress=print) -> tuple[dict, list]:
    questions = load_questions(path)
    started = time.perf_counter()
    result, answers = evaluate(model, tokenizer, questions, max_new_tokens=cfg.max_new_tokens,
                               system_prompt=cfg.system_prompt)
    progress(f"{label}: recall {result['recall']:.3f} on {result['n']} questions from {path} "
             f"({time.perf_counter() - started:.0f} s).")
    rows = [{"question": q.question, "expected": q.expected, "kind": q.kind, "answer": a, "recalled": h}
            for q, a, h in zip(questions, answers, result["hits"])]
    return result, rows


def base_vs_tuned(model, tokenizer, cfg: Config, progress=print, version_name: str = "") -> dict:
    """Score the adapter on and off (same weights, same batches) on the held-out and general sets."""
    summary: dict = {}
    details: dict = {}
    sets = [("recall", cfg.eval_questions)]
    if cfg.general_questions and Path(cfg.general_questions).exists():
        sets.append(("general", cfg.general_questions))
    for key, path in sets:
        tuned, tuned_rows = score_file(model, tokenizer, cfg, path, f"tuned {version_name}".strip(), progress)
        with model.disable_adapter():
            base, base_rows = score_file(model, tokenizer, cfg, path, "base", progress)
        summary[f"base_{key}"] = base["recall"]
        summary[f"tuned_{key}"] = tuned["recall"]
        if key == "recall":
            summary["n"] = tuned["n"]
            for k, v in tuned.items():
                if k.endswith("_recall") and k != "recall":
                    summary[f"tuned_{k}"] = v
                    summary[f"base_{k}"] = base[k]
        else:
            summary["n_general"] = tuned["n"]
        details[key] = [{**t, "base_answer": b["answer"], "base_recalled": b["recalled"]}
                        for t, b in zip(tuned_rows, base_rows)]
    run = Run(cfg.output_dir)
    atomic_write_json(run.root / "eval" / f"{version_name or 'latest'}.json", {"summary": summary, "details": details})
    return summary


def run_all(cfg: Config, progress=print, export: bool = True) -> dict:
    """prepare -> augment -> train -> export merged -> eval; returns the summary printed as JSON."""
    from .augment import run_augment
    from .export import export_merged
    from .models import for_inference
    from .prepare import prepare
    from .training import FineTune

    t0 = time.perf_counter()
    stages = 5 if export else 4

    def stage(i, text):
        progress(f"\n[{i}/{stages}] {text} ({time.perf_counter() - t0:.0f} s so far)")

    stage(1, f"Preparing {cfg.data}")
    prepared = prepare(cfg, progress=progress)
    stage(2, "Augmenting the training split" if cfg.augment.enabled else "Augmentation off (augment.enabled: false)")
    augmented = run_augment(cfg, prepared, progress=progress).report if cfg.augment.enabled else None
    stage(3, "Training")
    ft = FineTune.start(cfg, progress=progress)
    version = ft.train()
    summary: dict = {"version": version.name, "run": str(ft.run.root)}
    if augmented is not None:
        summary["augmented"] = {**augmented["added"], "rejected": augmented["rejected_total"],
                                "seconds": augmented["seconds"]}
    if export:
        stage(4, "Exporting the merged 16-bit model")
        merged_dir, check = export_merged(ft.model, ft.tokenizer, ft.run.exports / "merged", progress=progress)
        summary["merged"] = str(merged_dir)
        summary["merge_max_abs_diff"] = round(check.max_abs_diff, 6)
    stage(stages, "Scoring base and tuned model")
    for_inference(ft.model)
    summary.update(base_vs_tuned(ft.model, ft.tokenizer, cfg, progress, version.name))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary
