"""`run`: prepare -> augment -> train -> export merged -> eval, the CLI's one-command path (`make run`).

    summary = run_all(cfg)      # the dict `python -m unslothify run` prints as its last line
"""

from __future__ import annotations

import time

from .config import Config


def run_all(cfg: Config, progress=print, export: bool = True) -> dict:
    """Each stage says when it starts and how long the run has taken. A merged export that fails its check
    leaves the adapter version as it is: the summary says so (merge_check.ok false) and scoring still runs."""
    from .augment import run_augment
    from .evaluation import base_vs_tuned
    from .export import ExportError, export_merged
    from .models import for_inference
    from .prepare import prepare
    from .estimate import machine
    from .training import FineTune

    t0 = time.perf_counter()
    stages = 5 if export else 4

    def stage(i, text):
        progress(f"\n[{i}/{stages}] {text} ({time.perf_counter() - t0:.0f} s so far)")

    stage(1, f"Preparing {cfg.data}")
    prepared = prepare(cfg, progress=progress)
    ft = FineTune.start(cfg, progress=progress)  # loaded once: it also writes the replay answers (its adapter is 0)
    progress(f"Running on {machine()} with {ft.model_path}; the time it will take follows once the data is "
             f"augmented.")
    stage(2, "Augmenting the training split" if cfg.augment.enabled else "Augmentation off (augment.enabled: false)")
    augmented = run_augment(cfg, prepared, progress, ft.model, ft.tokenizer).report if cfg.augment.enabled else None
    cfg = fit_time(ft, cfg, export, progress)
    stage(3, "Training")
    version = ft.train(cfg)
    summary: dict = {"version": version.name, "run": str(ft.run.root)}
    if augmented is not None:
        summary["augmented"] = {**augmented["added"], "rejected": augmented["rejected_total"],
                                "seconds": augmented["seconds"]}
    if export:
        stage(4, "Exporting the merged 16-bit model")
        try:
            merged_dir, check = export_merged(ft.model, ft.tokenizer, ft.run.exports / "merged", progress=progress,
                                             version=version)
            summary["merged"] = str(merged_dir)
            summary["merge_check"] = check.as_dict()
        except ExportError as e:
            progress(f"{e}\nThe adapter version {version.name} is saved and usable as it is: chat with it, score it, "
                     f"or export the adapter alone (python -m unslothify export --version {version.name.lstrip('v')} "
                     f"--formats adapter).")
            summary["merged"] = None
            summary["merge_check"] = getattr(e, "check", None) or {"ok": False, "error": str(e).splitlines()[0]}
    stage(stages, "Scoring base and tuned model")
    for_inference(ft.model)
    summary.update(base_vs_tuned(ft.model, ft.tokenizer, cfg, progress, version.name)[0])
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def fit_time(ft, cfg: Config, export: bool, progress=print) -> Config:
    """Say what the rest of the run will take, timed on this machine (a forward and backward pass and a
    generation step over the training rows as they will be trained), and, where max_train_minutes caps the
    training, the config with the epochs that fit."""
    from .config import replace
    from .estimate import describe, measure, plan
    from .evaluation import load_questions

    train, _, _, _ = ft.datasets(cfg)  # tokenised once: the training call reuses them
    rows = train["input_ids"]
    timing = measure(ft.model, ft.tokenizer, rows, cfg.per_device_train_batch_size)
    general = len(load_questions(cfg.general_questions)) if cfg.general_questions else 0
    counts = ([len(r) for r in rows], 0, len(load_questions(cfg.eval_questions)), general, export)
    stages = plan(cfg, timing, *counts)
    budget = 60 * cfg.max_train_minutes
    if budget and stages["training"] > budget:
        epochs = max(0.1, int(10 * cfg.num_train_epochs * budget / stages["training"]) / 10)
        progress(f"Training {epochs:g} of num_train_epochs = {cfg.num_train_epochs:g} epochs: that many fit the "
                 f"max_train_minutes = {cfg.max_train_minutes:g} cap on this machine (set it to 0 for no cap).")
        cfg = replace(cfg, num_train_epochs=epochs)
        stages = plan(cfg, timing, *counts)
    progress(describe(cfg, stages, len(rows), ft.model_path))
    return cfg
