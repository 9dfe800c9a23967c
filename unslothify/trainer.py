"""From a config to TRL's SFTConfig (one function, also used by scripts/benchmark.py), and the Trainer
callbacks every training call uses: the loss history on the cumulative axis, overfitting in plain words,
a compact terminal progress line.

    args = sft_args(cfg, epochs=2.0, has_eval=True, start_step=0)
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time

from .models import has_cuda, precision
from .runs import RETENTION_FLOOR, Run  # "best" and the warnings read retention against one floor

# Knobs of the loaded model and its adapter: a training call cannot change them (a new adapter can). The chat
# template is the adapter's too: it was trained on prompts rendered with it.
ADAPTER_KNOBS = ("model", "load_in_4bit", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "lora_layers",
                 "chat_template")


def trackers(cfg) -> list[str] | str:
    """report_to for TRL: the trackers named, or 'none'."""
    named = [t for t in cfg.report_to if t != "none"]
    return named or "none"


def check_trackers(cfg):
    """A clear error before training when a tracker's package is missing (transformers would fail later)."""
    from transformers.integrations import is_tensorboard_available, is_trackio_available, is_wandb_available

    from .knobs import ConfigError

    have = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available, "trackio": is_trackio_available}
    missing = [t for t in cfg.report_to if t in have and not have[t]()]
    if missing:
        hint = "pip install -r requirements-trackers.txt" if missing == ["tensorboard"] else \
            "pip install " + " ".join(missing)
        raise ConfigError(f"report_to names {', '.join(missing)}, which is not installed: {hint}, or set "
                          f"report_to: none.")


@contextlib.contextmanager
def tracker_env(cfg, run: Run, name: str):
    """Where the trackers write during one training call: TensorBoard to <run>/logs/<version>, W&B's local
    files under <run>/logs; each run is named after the version the call makes. transformers reads these
    variables (TENSORBOARD_LOGGING_DIR, WANDB_DIR) rather than arguments; a value the user set is kept, and
    the environment is restored afterwards. No key is read or written here: wandb and trackio use their own
    login (WANDB_API_KEY / `wandb login`, or WANDB_MODE=offline)."""
    wanted = {}
    if "tensorboard" in cfg.report_to:
        wanted["TENSORBOARD_LOGGING_DIR"] = str(run.root / "logs" / name)
    if "wandb" in cfg.report_to:
        wanted["WANDB_DIR"] = str(run.root / "logs")
        (run.root / "logs").mkdir(parents=True, exist_ok=True)
    before = {k: os.environ.get(k) for k in wanted}
    for k, v in wanted.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        _finish_runs(cfg)
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _finish_runs(cfg):
    """End the W&B / Trackio run a training call opened (transformers leaves it open for later evaluations),
    so that the next call, whose steps start at 0 again, logs to a run of its own."""
    for name in ("wandb", "trackio"):
        if name in cfg.report_to:
            try:
                module = __import__(name)
            except ImportError:
                continue
            if name == "wandb" and module.run is None:
                continue
            with contextlib.suppress(Exception):  # trackio without an open run; nothing to end then
                module.finish()


# The items a step holds that learning_rate is set for: Unsloth's notebooks' 2 x 4 for Mistral 7B, the embedded
# recipe's batch of 8.
LR_REFERENCE_ITEMS = 8


def packed(cfg) -> bool:
    return cfg.packing and has_cuda()


def learning_rate(cfg, mean_item_tokens: float | None) -> float:
    """cfg.learning_rate, scaled for packed steps by sqrt(items per step / 8) when packed_lr_scale is on
    (measured on the embedded model: recall after 4.5 epochs 0.54 -> 0.70, docs/benchmark.md)."""
    if not (packed(cfg) and cfg.packed_lr_scale and mean_item_tokens):
        return cfg.learning_rate
    items = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * cfg.max_seq_length / mean_item_tokens
    return min(1e-2, cfg.learning_rate * math.sqrt(max(1.0, items / LR_REFERENCE_ITEMS)))


def sft_args(cfg, epochs: float, has_eval: bool = True, start_step: int = 0, output_dir: str | None = None,
             run_name: str | None = None, mean_item_tokens: float | None = None, probed: bool = False):
    """SFTConfig for one training call of `epochs` over the training data, from the config alone.

    mean_item_tokens (the data's size per item) scales the learning rate of packed steps (learning_rate()).
    start_step is the cumulative step the call starts from: 0 evaluates once before training (the curve's
    first point); otherwise it shifts the seed so a continued call sees a fresh data order. probed (the
    knowledge objective: evaluations score the probes) makes early stopping watch probe recall. Evaluation
    runs evals_per_epoch times per epoch, given to the Trainer as a share of the call's steps, so it holds
    for packed rows and data-parallel processes alike."""
    from trl import SFTConfig

    mode = precision()
    # At least one evaluation, at the end, for calls shorter than 1 / evals_per_epoch epochs (a share of 1.0
    # or more would be read as a number of steps).
    share = min(1.0 / (cfg.evals_per_epoch * epochs), 0.9999)
    return SFTConfig(
        output_dir=str(output_dir or Run(cfg.output_dir).checkpoints),
        num_train_epochs=epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=learning_rate(cfg, mean_item_tokens),
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,  # below 1 a share of the steps
        lr_scheduler_type=cfg.lr_scheduler_type,
        optim=cfg.optim,
        seed=cfg.seed + start_step,
        logging_steps=1,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=share,
        eval_on_start=has_eval and start_step == 0,
        save_strategy="no",  # versions are saved by us, atomically; interrupts save a checkpoint
        report_to=trackers(cfg),
        run_name=run_name,
        max_length=cfg.max_seq_length,
        packing=packed(cfg),
        padding_free=packed(cfg),
        # Unpacked rows are padded to the longest in their batch: batches of similar lengths waste less
        # (measured on 2 CPU cores, scripts/cpu_speed.py); the order stays random between batches.
        train_sampling_strategy="random" if packed(cfg) else "group_by_length",
        completion_only_loss=True,  # the mask built in data.tokenize_item
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=mode == "bf16",
        fp16=mode == "fp16",
        metric_for_best_model=(("probe_recall" if probed else "eval_loss") if cfg.early_stopping_patience else None),
        greater_is_better=probed if cfg.early_stopping_patience else None,
        dataset_num_proc=None,
        disable_tqdm=False,
    )


# ----------------------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------------------

class OutOfMemory(RuntimeError):
    """The GPU ran out of memory; the message names the knobs that reduce it, with their current values."""

    def __init__(self, cfg, error: BaseException):
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        super().__init__(
            "The GPU ran out of memory during training. Earlier versions are untouched. Lower "
            f"per_device_train_batch_size (now {cfg.per_device_train_batch_size}; raise gradient_accumulation_steps, "
            f"now {cfg.gradient_accumulation_steps}, to keep the effective batch), lower max_seq_length (now "
            f"{cfg.max_seq_length}), load the base in 4-bit (load_in_4bit, now {cfg.load_in_4bit}) and keep "
            f"gradient_checkpointing on (now {cfg.gradient_checkpointing}). [{first}]")


def is_out_of_memory(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def free_cuda_memory():
    import gc

    gc.collect()
    if has_cuda():
        import torch

        torch.cuda.empty_cache()


def reset_peak_memory():
    if has_cuda():
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> tuple[float, str]:
    if has_cuda():
        import torch

        return torch.cuda.max_memory_reserved() / 2**30, "GPU memory reserved (peak)"
    # ru_maxrss is KiB on Linux: the process's resident high-water mark, not reset between calls.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process RSS (peak)"


# ----------------------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------------------

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
                "eval_probe_seconds": "probe_seconds"}


def knowledge_message(history: list[dict], best_version_name: str | None = None) -> str | None:
    """Plain words when the probes say training has stopped helping: retention fell under the floor, or
    recall stalled over the last two evaluations while training loss kept falling."""
    evals = [h for h in history if "probe_recall" in h]
    if len(evals) < 2:
        return None
    back = f" Or go back to {best_version_name} (the best version so far)." if best_version_name else ""
    last, before = evals[-1], evals[:-1]
    kept = [e["probe_retention"] for e in before if "probe_retention" in e]
    if "probe_retention" in last and last["probe_retention"] < RETENTION_FLOOR and kept and max(kept) >= RETENTION_FLOOR:
        return (f"Forgetting: the model now answers {last['probe_retention']:.0%} of the general questions the base "
                f"model answered (it was {kept[-1]:.0%}), under the {RETENTION_FLOOR:.0%} floor. Lower learning_rate "
                f"or the epochs, or raise augment.replay." + back)
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


def probed_trainer_class():
    """SFTTrainer whose evaluations also score the knowledge and retention probes (set `probe`: a callable
    model -> {'probe_recall', 'probe_retention', 'probe_seconds'}).

    They are added to the evaluation's metrics in `log`, before any callback runs: Trainer.evaluate() hands
    this same dict to log() and then to on_evaluate(), so the trackers, the loss history, the progress line,
    early stopping and Trainer's best-metric bookkeeping all see probe recall beside eval_loss. Trainer has no
    hook for generation-based metrics in a causal-LM evaluation (compute_metrics sees logits only)."""
    from trl import SFTTrainer

    class ProbedSFTTrainer(SFTTrainer):
        probe = None

        def log(self, logs, *args, **kwargs):
            if self.probe is not None and "eval_loss" in logs:
                logs.update({f"eval_{k}": v for k, v in self.probe(self.model).items()})
            return super().log(logs, *args, **kwargs)

    return ProbedSFTTrainer


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
                                 f"{state.max_steps} (set it higher, or 0 for no cap).")

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


def use_compact_progress(trainer):
    """Trainer's terminal progress bar, printing one short line per validation instead of a dict per step
    (in a notebook, Trainer's own per-step table stays)."""
    from transformers.trainer_callback import ProgressCallback

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and self.training_bar is not None and logs and "eval_loss" in logs:
                self.training_bar.write(evaluation_line(state.epoch or 0, state.global_step, logs))

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(CompactProgress)
