"""What every training call watches, as Trainer callbacks that keep their own records: the loss history on the
session's cumulative axis (with the probes' scores, which the trainer adds to each evaluation, train/trainer.py),
the warnings in plain words, the time cap, and a compact progress line."""

from __future__ import annotations

import math
import time

from .signals import steering_message


# What the loss history keeps of Trainer's logs (log key -> history key); the probes' scores arrive with the
# evaluation's loss (train/trainer.py).
HISTORY_KEYS = {"loss": "loss", "eval_loss": "eval_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
                "eval_probe_recall": "probe_recall", "eval_probe_retention": "probe_retention",
                "eval_probe_seconds": "probe_seconds", "eval_probe_n": "probe_n", "eval_retention_n": "retention_n",
                "retention_kl": "retention_kl"}


def history_callback(history_before: list[dict], live=None, best_version_name=lambda: None, progress=print):
    """Records the call's losses and probe scores on the session's cumulative step/epoch axis (after
    history_before) in its own `entries`, times its epochs in `epoch_seconds`, draws the live plot and says
    once when the history shows overfitting or forgetting. The session reads these records after the call."""
    from transformers import TrainerCallback

    class HistoryCallback(TrainerCallback):
        def __init__(self):
            self.step0 = max((h["step"] for h in history_before), default=0)
            self.epoch0 = max((h["epoch"] for h in history_before), default=0.0)
            self.entries: list[dict] = []
            self.epoch_seconds: list[float] = []
            self.epoch_started = None
            self.warned = False

        def on_train_begin(self, args, state, control, **kw):
            start = getattr(live, "start", None)
            if start is not None:
                start()  # each training call draws its own figure (under the cell that ran it)

        def on_epoch_begin(self, args, state, control, **kw):
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            if self.epoch_started is not None:
                self.epoch_seconds.append(round(time.perf_counter() - self.epoch_started, 2))

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return  # the end-of-training summary
            entry = {"step": self.step0 + state.global_step, "epoch": round(self.epoch0 + (state.epoch or 0.0), 4)}
            for key, name in HISTORY_KEYS.items():
                value = logs.get(key)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    entry[name] = float(value)
            self.entries.append(entry)
            history = [*history_before, *self.entries]
            if live is not None:
                live(history)
            if "eval_loss" in logs and not self.warned:
                msg = steering_message(history, best_version_name())
                if msg:
                    self.warned = True
                    progress(msg)

    return HistoryCallback()


def time_cap_callback(minutes: float, progress=print):
    """Stops a training call at max_train_minutes (Trainer has no wall-clock limit) and records that it did in
    `stopped`; the version is then saved at the step reached, as for a call that ran its epochs."""
    from transformers import TrainerCallback

    class TimeCap(TrainerCallback):
        stopped = False

        def on_train_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() - self.started > 60 * minutes and state.global_step < state.max_steps:
                control.should_training_stop = True
                self.stopped = True
                progress(f"Stopped at the max_train_minutes = {minutes:g} cap: step {state.global_step} of "
                         f"{state.max_steps} (raise it on the panel, in config.yaml or with --max-train-minutes; "
                         f"0 for no cap).")

    return TimeCap()


def evaluation_line(epoch: float, step: int, logs: dict) -> str:
    """One line per evaluation: 'epoch 1.00, step 20: validation loss 2.3104; probes: recall 0.45, retention 0.97'."""
    line = f"epoch {epoch:.2f}, step {step}: validation loss {logs['eval_loss']:.4f}"
    if "eval_probe_recall" in logs:
        line += f"; probes: recall {logs['eval_probe_recall']:.2f}"
        if "eval_probe_retention" in logs:
            line += f", retention {logs['eval_probe_retention']:.2f}"
        line += f" ({logs.get('eval_probe_seconds', 0):.0f} s)"
    return line


def use_compact_progress(trainer, step0: int, epoch0: float):
    """One progress bar with an estimate (a widget in a notebook, a line in a terminal) and one short line per
    evaluation, on the session's cumulative epoch and step axis, in place of Trainer's own: a dict per step in a
    terminal, and in a notebook a per-step table ("Training Loss: No log", TRL's "Num Tokens") that repeats
    what the live plot shows."""
    from transformers.trainer_callback import ProgressCallback

    try:  # Trainer's notebook table needs IPython (a notebook); a terminal has the plain callback
        from transformers.utils.notebook import NotebookProgressCallback
    except ImportError:
        NotebookProgressCallback = ProgressCallback

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and self.training_bar is not None and logs and "eval_loss" in logs:
                self.training_bar.write(evaluation_line(epoch0 + (state.epoch or 0), step0 + state.global_step, logs))

    had = [trainer.pop_callback(ProgressCallback), trainer.pop_callback(NotebookProgressCallback)]
    if any(c is not None for c in had):
        trainer.add_callback(CompactProgress)
