"""From a config and a training call to TRL's SFTConfig, in one pure function that every training road uses (the
notebooks' FineTune, the CLI, scripts/benchmark.py), and the trackers it reports to.

    args = sft_args(cfg, Call.of(cfg, epochs=2.0, start_step=0))
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from ..machine.device import has_cuda, precision
from ..runs import Run


def trackers(cfg) -> list[str] | str:
    """report_to for TRL: the trackers named, or 'none'."""
    named = [t for t in cfg.report_to if t != "none"]
    return named or "none"


def check_trackers(cfg):
    """A clear error before training when a tracker's package is missing (transformers would fail later)."""
    from transformers.integrations import is_tensorboard_available, is_trackio_available, is_wandb_available

    from ..knobs import ConfigError

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


@dataclass(frozen=True)
class Call:
    """What one training call adds to the knobs: the facts SFTConfig needs that no knob holds. Made once per
    call by the session (train/session.py) and recorded in the version's manifest."""

    epochs: float  # epochs this call trains: num_train_epochs, a call's more_epochs, or those that fit the time cap
    start_step: int = 0  # the session's cumulative step it starts from: 0 evaluates once before the first step
    seed: int = 3407  # the knob's seed plus start_step, so a continued call sees a fresh data order
    has_eval: bool = True  # validation data exists (the probes' rewordings, or held-out items)
    probed: bool = False  # evaluations score the knowledge probes: early stopping watches probe recall
    run_name: str | None = None  # the version the call makes (names the trackers' run)
    output_dir: str | None = None  # where Trainer writes a checkpoint (default: the run folder's checkpoints/)

    @classmethod
    def of(cls, cfg, epochs: float, start_step: int = 0, **facts) -> "Call":
        return cls(epochs=float(epochs), start_step=start_step, seed=cfg.seed + start_step, **facts)


def packed(cfg) -> bool:
    return cfg.packing and has_cuda()


def sft_args(cfg, call: Call):
    """SFTConfig for one training call: each knob mapped to its SFTConfig field as it is (what the panel shows
    is what TRL gets), and the call's own facts. Evaluation runs evals_per_epoch times per epoch, given to the
    Trainer as a share of the call's steps, so it holds for packed rows and data-parallel processes alike."""
    from trl import SFTConfig

    mode = precision()
    # At least one evaluation, at the end, for calls shorter than 1 / evals_per_epoch epochs (a share of 1.0
    # or more would be read as a number of steps).
    share = min(1.0 / (cfg.evals_per_epoch * call.epochs), 0.9999)
    return SFTConfig(
        output_dir=str(call.output_dir or Run(cfg.output_dir).checkpoints),
        num_train_epochs=call.epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup,  # below 1 a share of the steps
        lr_scheduler_type=cfg.lr_scheduler_type,
        optim=cfg.optim,
        seed=call.seed,
        logging_steps=1,
        eval_strategy="steps" if call.has_eval else "no",
        eval_steps=share,
        eval_on_start=call.has_eval and call.start_step == 0,
        save_strategy="no",  # versions are saved by us, atomically; interrupts save a checkpoint
        report_to=trackers(cfg),
        run_name=call.run_name,
        max_length=cfg.max_seq_length,
        packing=packed(cfg),
        padding_free=packed(cfg),
        # Unpacked rows are padded to the longest in their batch: batches of similar lengths waste less
        # (measured on 2 CPU cores, scripts/cpu_speed.py); the order stays random between batches.
        train_sampling_strategy="random" if packed(cfg) else "group_by_length",
        completion_only_loss=True,  # the mask built in data/tokens.py
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=mode == "bf16",
        fp16=mode == "fp16",
        metric_for_best_model=(("probe_recall" if call.probed else "eval_loss") if cfg.early_stopping_patience
                               else None),
        greater_is_better=call.probed if cfg.early_stopping_patience else None,
        dataset_num_proc=None,
        disable_tqdm=False,
    )
