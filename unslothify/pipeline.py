"""`run`: prepare -> augment -> train -> export merged -> eval, the CLI's one-command path (`make run`).

    summary = run_all(cfg)      # the dict `python -m unslothify run` prints as its last line
"""

from __future__ import annotations

import time

from .config import Config, recipe_of


def run_all(cfg: Config, progress=print, export: bool = True) -> dict:
    """Each stage says when it starts and how long the run has taken. A merged export that fails its check
    leaves the adapter version as it is: the summary says so (merge_check.ok false) and scoring still runs."""
    from .data.augment import augment
    from .score.questions import base_vs_tuned
    from .export.stage import ExportError, export_merged
    from .model.load import for_inference
    from .data.prepare import prepare
    from .machine.device import machine
    from .machine.estimate import fit_time
    from .train.session import FineTune

    t0 = time.perf_counter()
    stages = 5 if export else 4

    def stage(i, text):
        progress(f"\n[{i}/{stages}] {text} ({time.perf_counter() - t0:.0f} s so far)")

    recipe, why = recipe_of(cfg)
    progress(f"Recipe: {recipe or 'none'} ({why}); config.yaml and flags override it.")
    stage(1, f"Preparing {cfg.data}")
    prepared = prepare(cfg, progress=progress)
    ft = FineTune.start(cfg, progress=progress)  # loaded once: it also writes the replay answers (its adapter is 0)
    progress(f"Running on {machine()} with {ft.model_path}; the time it will take follows once the data is "
             f"augmented.")
    stage(2, "Augmenting the training split" if cfg.augment.enabled else "Augmentation off (augment.enabled: false)")
    augmented = augment(cfg, prepared, progress, ft.model, ft.tokenizer).report if cfg.augment.enabled else None
    fit_time(ft, cfg, export, progress, elapsed=time.perf_counter() - t0)  # what the rest will take, measured
    stage(3, "Training")
    version = ft.train(cfg)
    summary: dict = {"version": version.name, "run": str(ft.run.root), "objective": version.manifest["objective"]}
    if version.manifest.get("final_probe_recall") is not None:  # what steered; the eval file below only scores
        summary.update(probe_recall=version.manifest["final_probe_recall"],
                       probe_retention=version.manifest["final_probe_retention"])
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
