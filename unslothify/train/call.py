"""One training call, top to bottom, the way TRL's examples/scripts/sft.py reads: from the config, SFTConfig, the
model and its data to a record of what the call did. The session (session.py) keeps versions and interrupts
around it; nothing here writes to the run folder.

    record = train_call(cfg, args, model, tokenizer, data, probe, retention, Watch(history_before=ft.history))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Watch:
    """What a call reports to while it runs: its place on the session's cumulative axis (the history before it),
    the live plot, extra TrainerCallbacks, the name of the best version so far (for the warnings), progress."""

    history_before: list[dict] = field(default_factory=list)
    live: Callable | None = None
    callbacks: list = field(default_factory=list)
    best_version_name: Callable[[], str | None] = lambda: None
    progress: Callable = print


@dataclass
class CallRecord:
    """What one training call did."""

    history: list[dict]  # this call's losses and probe scores, on the session's cumulative axis
    epoch_seconds: list[float]
    seconds: float | None  # None: interrupted (Ctrl-C): ended at a step with a checkpoint in output_dir
    stopped_at_cap: bool  # max_train_minutes stopped it
    trainer: object  # the SFTTrainer, for its state and accelerator (saving a version or a checkpoint)
    model: object  # the model as trained, without accelerate's mixed-precision wrapper

    @property
    def interrupted(self) -> bool:
        return self.seconds is None


def train_call(cfg, args, model, tokenizer, data, probe=None, retention=None, watch: Watch | None = None,
               resume_from: str | None = None) -> CallRecord:
    """Train `model` on `data` with SFTConfig `args` (train/args.py); under the knowledge objective every
    evaluation scores `probe`, and `retention` (train/retention.py) adds its term to the loss. The first Ctrl-C
    ends the call at the end of its step with a checkpoint (the record says interrupted); a GPU out of memory
    raises OutOfMemory, with the knobs to lower."""
    from transformers import EarlyStoppingCallback

    from ..errors import OutOfMemory
    from ..machine.device import free_cuda_memory, is_out_of_memory, reset_peak_memory
    from .callbacks import history_callback, time_cap_callback, use_compact_progress
    from .interrupts import stop_on_interrupt
    from .trainer import trainer_class

    watch = watch or Watch()
    # 1. Callbacks, each keeping its own record: the history (live plot, warnings), the time cap, early stopping,
    #    and the first Ctrl-C, which ends the call at the end of its step with a checkpoint.
    history = history_callback(watch.history_before, watch.live, watch.best_version_name, watch.progress)
    cap = time_cap_callback(cfg.max_train_minutes, watch.progress) if cfg.max_train_minutes else None
    stop, catching_interrupts = stop_on_interrupt(watch.progress)
    callbacks = [history, *watch.callbacks, *([cap] if cap else []), stop]
    if cfg.early_stopping_patience and data.validation is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    # 2. The trainer: TRL's SFTTrainer, scoring the probes at each evaluation, with the retention term in its loss.
    trainer = trainer_class()(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                              processing_class=tokenizer, callbacks=callbacks)
    trainer.probe, trainer.retention = probe, retention
    use_compact_progress(trainer, history.step0, history.epoch0)

    # 3. Train.
    reset_peak_memory()
    started = time.perf_counter()
    try:
        with catching_interrupts:
            trainer.train(resume_from_checkpoint=resume_from)
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        _unwrapped(trainer)
        free_cuda_memory()
        raise OutOfMemory(cfg, e) from None
    if stop.requested:
        return CallRecord(history.entries, history.epoch_seconds, None, False, trainer, _unwrapped(trainer))
    seconds = time.perf_counter() - started
    # 4. The last validation point at the final step, when the schedule did not end on one (manifest, plot).
    last = history.step0 + trainer.state.global_step
    if data.validation is not None and not any("eval_loss" in h and h["step"] == last for h in history.entries):
        trainer.evaluate()
    return CallRecord(history.entries, history.epoch_seconds, seconds, bool(cap and cap.stopped), trainer,
                      _unwrapped(trainer))


def _unwrapped(trainer):
    """The model without the mixed-precision autocast wrapper accelerate put on forward, so that inference,
    merge checks and exports after training see the model's own arithmetic."""
    return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
