"""What every training call watches, as Trainer callbacks: the loss history on the session's cumulative axis
(with the probes' scores, which ProbedSFTTrainer adds to each evaluation), the warnings in plain words, the
time cap, and a compact terminal progress line."""

from __future__ import annotations

import math
import time

from .probes import RETENTION_PROBES, standard_error
from .runs import RETENTION_FLOOR  # "best" and the warnings read retention against one floor


def overfitting_message(history: list[dict], best_version_name: str | None = None) -> str | None:
    """Plain words when validation loss has risen at the last two evaluations while training loss fell."""
    evals = [h for h in history if "eval_loss" in h]
    if len(evals) < 3:
        return None
    a, b, c = (e["eval_loss"] for e in evals[-3:])
    if not (c > b > a):
        return None
    lo, hi = evals[-3]["step"], evals[-1]["step"]
    train = [h["loss"] for h in history if "loss" in h and lo <= h["step"] <= hi]
    if len(train) < 2 or not (sum(train[-3:]) / len(train[-3:]) < sum(train[:3]) / len(train[:3])):
        return None
    where = f" or go back to {best_version_name} (lowest validation loss)" if best_version_name else ""
    return (f"Overfitting: validation loss rose from {a:.3f} to {c:.3f} over the last evaluations while training "
            f"loss kept falling, so the adapter is memorising the training items rather than learning what "
            f"generalises. Train fewer epochs, lower learning_rate, lower lora_r / lora_alpha, or raise "
            f"lora_dropout / weight_decay{where}.")


# What the loss history keeps of Trainer's logs (log key -> history key); the probes' scores arrive with the
# evaluation's loss (ProbedSFTTrainer below).
HISTORY_KEYS = {"loss": "loss", "eval_loss": "eval_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
                "eval_probe_recall": "probe_recall", "eval_probe_retention": "probe_retention",
                "eval_probe_seconds": "probe_seconds", "eval_probe_n": "probe_n", "eval_retention_n": "retention_n",
                "retention_kl": "retention_kl"}


def knowledge_message(history: list[dict], best_version_name: str | None = None) -> str | None:
    """Plain words when the probes say training has stopped helping: retention fell under the floor by more
    than its standard error (one miss in 48 questions is noise, not forgetting), or recall stalled over the last two evaluations while training loss kept falling."""
    evals = [h for h in history if "probe_recall" in h]
    if len(evals) < 2:
        return None
    back = f" Or go back to {best_version_name} (the best version so far)." if best_version_name else ""
    last, before = evals[-1], evals[:-1]
    kept = [e["probe_retention"] for e in before if "probe_retention" in e]
    if "probe_retention" in last and kept and max(kept) >= RETENTION_FLOOR:
        retention, n = last["probe_retention"], int(last.get("retention_n") or RETENTION_PROBES)
        error = standard_error(retention, n)
        if retention + error < RETENTION_FLOOR:  # under the floor by more than the measurement's noise
            return (f"Forgetting: the model now answers {retention:.0%} (+-{error:.0%}) of the {n} general questions "
                    f"the base model answers (it was {kept[-1]:.0%}), under the {RETENTION_FLOOR:.0%} floor. Lower "
                    f"learning_rate or the epochs, or raise augment.replay." + back)
    if len(evals) < 3:
        return None
    lo, hi = evals[-3]["step"], evals[-1]["step"]
    train = [h["loss"] for h in history if "loss" in h and lo <= h["step"] <= hi]
    stalled = max(e["probe_recall"] for e in evals[-2:]) <= evals[-3]["probe_recall"]
    if stalled and len(train) >= 2 and sum(train[-3:]) / len(train[-3:]) < sum(train[:3]) / len(train[:3]):
        return (f"Recall has stalled: the probes are answered at {evals[-1]['probe_recall']:.0%}, no better than "
                f"{evals[-3]['probe_recall']:.0%} two evaluations ago, while training loss kept falling. More epochs "
                f"now memorise the training wording rather than teach the facts: stop here, or teach them in more "
                f"words (augment.rephrasings)." + back)
    return None


def steering_message(history: list[dict], best_version_name: str | None = None) -> str | None:
    """The warning for this history: by the probes under the knowledge objective, else by validation loss."""
    if any("probe_recall" in h for h in history):
        return knowledge_message(history, best_version_name)
    return overfitting_message(history, best_version_name)


def trainer_class():
    """SFTTrainer whose evaluations also score the knowledge and retention probes, and whose loss carries the
    retention term (unslothify/retention.py) on the batches that hold replay rows.

    `probe`: a callable (model, at_base) -> {'probe_recall', 'probe_retention', 'probe_seconds'}; at_base: the
    evaluation before the first step of a run, eval_on_start. The scores are added to the evaluation's metrics
    in `log`, before any callback runs: Trainer.evaluate() hands this same dict to log() and then to
    on_evaluate(), so the trackers, the loss history, the progress line, early stopping and Trainer's
    best-metric bookkeeping all see probe recall beside eval_loss. Trainer has no hook for generation-based
    metrics in a causal-LM evaluation (compute_metrics sees logits only).

    `retention`: a RetentionTerm, or None (TRL's loss alone)."""
    from trl import SFTTrainer

    class UnslothifySFTTrainer(SFTTrainer):
        probe = None
        retention = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.retention is not None and model.training and not return_outputs:
                from .retention import sft_and_retention_loss

                result = sft_and_retention_loss(self, model, inputs, num_items_in_batch)
                if result is not None:
                    loss, kl = result
                    self._metrics["train"]["retention_kl"].append(kl)
                    return loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def log(self, logs, *args, **kwargs):
            if self.probe is not None and "eval_loss" in logs:
                at_base = self.state.global_step == 0 and self.args.eval_on_start
                logs.update({f"eval_{k}": v for k, v in self.probe(self.model, at_base).items()})
            return super().log(logs, *args, **kwargs)

    return UnslothifySFTTrainer


def history_callback(session, live):
    """Records losses on the session's cumulative step/epoch axis, times epochs, watches for overfitting."""
    from transformers import TrainerCallback

    class HistoryCallback(TrainerCallback):
        def __init__(self):
            self.step0 = session.cumulative_steps
            self.epoch0 = session.cumulative_epochs
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
                session.epoch_seconds.append(round(time.perf_counter() - self.epoch_started, 2))

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return  # the end-of-training summary
            entry = {"step": self.step0 + state.global_step, "epoch": round(self.epoch0 + (state.epoch or 0.0), 4)}
            for key, name in HISTORY_KEYS.items():
                value = logs.get(key)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    entry[name] = float(value)
            session.history.append(entry)
            if live is not None:
                live(session.history)
            if "eval_loss" in logs and not self.warned:
                msg = steering_message(session.history, session.best_version_name())
                if msg:
                    self.warned = True
                    session.progress(msg)

    return HistoryCallback()


def time_cap_callback(session, minutes: float):
    """Stops a training call at max_train_minutes (Trainer has no wall-clock limit); the version is then
    saved at the step reached, as for a call that ran its epochs."""
    from transformers import TrainerCallback

    class TimeCap(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() - self.started > 60 * minutes and state.global_step < state.max_steps:
                control.should_training_stop = True
                session.stopped_at_cap = True
                session.progress(f"Stopped at the max_train_minutes = {minutes:g} cap: step {state.global_step} of "
                                 f"{state.max_steps} (raise it on the panel, in config.yaml or with "
                                 f"--max-train-minutes; 0 for no cap).")

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


def use_compact_progress(trainer, session):
    """One progress bar with an estimate (a widget in a notebook, a line in a terminal) and one short line per
    evaluation, on the session's cumulative epoch and step axis, in place of Trainer's own: a dict per step in a
    terminal, and in a notebook a per-step table ("Training Loss: No log", TRL's "Num Tokens") that repeats
    what the live plot shows."""
    from transformers.trainer_callback import ProgressCallback

    try:  # Trainer's notebook table needs IPython (a notebook); a terminal has the plain callback
        from transformers.utils.notebook import NotebookProgressCallback
    except ImportError:
        NotebookProgressCallback = ProgressCallback

    step0, epoch0 = session.cumulative_steps, session.cumulative_epochs

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and self.training_bar is not None and logs and "eval_loss" in logs:
                self.training_bar.write(evaluation_line(epoch0 + (state.epoch or 0), step0 + state.global_step, logs))

    had = [trainer.pop_callback(ProgressCallback), trainer.pop_callback(NotebookProgressCallback)]
    if any(c is not None for c in had):
        trainer.add_callback(CompactProgress)
