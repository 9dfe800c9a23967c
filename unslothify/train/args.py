"""From a config to TRL's SFTConfig, in one pure function that every training road uses (the notebooks'
FineTune, the CLI, scripts/benchmark.py), and the trackers it reports to.

    args = sft_args(cfg, epochs=2.0, has_eval=True, start_step=0)
"""

from __future__ import annotations

import contextlib
import math
import os

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


# The items a step holds that learning_rate is set for: Unsloth's notebooks' 2 x 4 for Mistral 7B, the embedded
# recipe's batch of 8.
LR_REFERENCE_ITEMS = 8


def packed(cfg) -> bool:
    return cfg.packing and has_cuda()


def items_per_step(cfg, mean_item_tokens: float) -> float:
    """Items one optimizer step sees: a packed row holds max_seq_length / mean_item_tokens items; an unpacked
    row holds one. Times per_device_train_batch_size rows and gradient_accumulation_steps passes."""
    per_row = cfg.max_seq_length / mean_item_tokens if packed(cfg) else 1.0
    return cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * per_row


def learning_rate(cfg, mean_item_tokens: float | None) -> float:
    """cfg.learning_rate, scaled for packed steps by sqrt(items per step / 8) when packed_lr_scale is on
    (measured on the embedded model: recall after 4.5 epochs 0.54 -> 0.70, docs/benchmark.md), capped at 1e-2."""
    if not (packed(cfg) and cfg.packed_lr_scale and mean_item_tokens):
        return cfg.learning_rate
    items = items_per_step(cfg, mean_item_tokens)
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
