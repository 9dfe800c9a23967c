"""`run`: prepare -> augment -> train -> export merged -> eval, the CLI's one-command path (`make run`).

    summary = run_all(cfg)      # the dict `python -m unslothify run` prints as its last line
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from .config import Config, recipe_of


def run_all(cfg: Config, progress=print, export: bool = True) -> dict:
    """Each stage says when it starts and how long the run has taken; the summary keeps each stage's seconds
    beside what the estimate said of it. A merged export that fails its check leaves the adapter version as it
    is: the summary says so (merge_check.ok false) and scoring still runs."""
    from .data.augment import augment
    from .data.prepare import prepare
    from .export.verify import ChecksAhead
    from .machine.device import has_cuda, machine
    from .train.plan import fit_time
    from .model.load import for_inference, use_adapter_scale
    from .score.questions import score_version
    from .train.session import FineTune

    clock = StageClock(5 if export else 4, progress)
    recipe, why = recipe_of(cfg)
    progress(f"Recipe: {recipe or 'none'} ({why}); config.yaml and flags override it.")
    clock.start("preparing", f"Preparing {cfg.data}")
    prepared = prepare(cfg, progress=progress)
    ft = FineTune.start(cfg, progress=progress)  # loaded once: it also writes the replay answers (its adapter is 0)
    progress(f"Running on {machine()} with {ft.model_path}; the time it will take follows once the data is "
             f"augmented.")
    clock.start("augmenting", "Augmenting the training split" if cfg.augment.enabled else
                "Augmentation off (augment.enabled: false)")
    augmented = augment(cfg, prepared, progress, ft.model, ft.tokenizer).report if cfg.augment.enabled else None
    clock.start("estimating", None)
    _, expected = fit_time(ft, cfg, export, progress, elapsed=clock.elapsed())  # what the rest will take, measured
    clock.start("training", "Training")
    # on a GPU the merge check's processes import torch and transformers while training runs (ChecksAhead)
    with ChecksAhead() if export and has_cuda() else nullcontext() as checks_ahead:
        version = ft.train(cfg)
        if version is None:  # interrupted: the checkpoint is kept, and the training call said how to go on
            clock.stop()
            return {"interrupted": True, "run": str(ft.run.root), "seconds": round(clock.elapsed(), 1),
                    "stage_seconds": clock.seconds}
        summary: dict = {"version": version.name, "run": str(ft.run.root),
                         "objective": version.manifest["objective"]}
        if version.manifest.get("final_probe_recall") is not None:  # what steered; the eval file below only scores
            summary.update(probe_recall=version.manifest["final_probe_recall"],
                           probe_retention=version.manifest["final_probe_retention"])
        if augmented is not None:
            summary["augmented"] = {**augmented["added"], "rejected": augmented["rejected_total"],
                                    "seconds": augmented["seconds"]}
        use_adapter_scale(ft.model, cfg.adapter_scale)  # the version as it is used from here on (training is over)
        if export:
            clock.start("export", "Exporting the merged 16-bit model")
            summary.update(_export(ft, version, progress, checks_ahead))
    clock.start("scoring", "Scoring base and tuned model")
    for_inference(ft.model)
    summary.update(score_version(ft.model, ft.tokenizer, cfg, version, progress)[0])
    clock.stop()
    summary["seconds"] = round(clock.elapsed(), 1)
    summary["stage_seconds"] = clock.seconds
    summary["expected_seconds"] = {k: round(v, 1) for k, v in expected.items() if k != "steps"}
    return summary


def _export(ft, version, progress, checks_ahead=None) -> dict:
    from .export.stage import ExportError, export_merged

    try:
        merged_dir, check = export_merged(ft.model, ft.tokenizer, ft.run.exports / "merged", progress=progress,
                                         version=version, checks_ahead=checks_ahead)
        return {"merged": str(merged_dir), "merge_check": check.as_dict()}
    except ExportError as e:
        progress(f"{e}\nThe adapter version {version.name} is saved and usable as it is: chat with it, score it, "
                 f"or export the adapter alone (python -m unslothify export --version {version.name.lstrip('v')} "
                 f"--formats adapter).")
        return {"merged": None,
                "merge_check": getattr(e, "check", None) or {"ok": False, "error": str(e).splitlines()[0]}}


class StageClock:
    """The run's stages: each says when it starts (numbered, with the time so far), and its seconds are kept."""

    def __init__(self, numbered: int, progress=print):
        self.numbered, self.progress = numbered, progress
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.current, self.since, self.number = None, self.t0, 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def start(self, name: str, text: str | None):
        self.stop()
        self.current, self.since = name, time.perf_counter()
        if text is not None:
            self.number += 1
            self.progress(f"\n[{self.number}/{self.numbered}] {text} ({self.elapsed():.0f} s so far)")

    def stop(self):
        if self.current is not None:
            self.seconds[self.current] = round(time.perf_counter() - self.since, 1)
            self.current = None
