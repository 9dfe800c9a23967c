"""Training: a FineTune session holds the model with its LoRA adapter in memory; every `train` call
continues from the current weights, extends one loss history and saves a new adapter version.

    ft = FineTune.start(cfg)            # base model + fresh adapter
    ft.train()                          # cfg.num_train_epochs, saves v001
    ft.train(epochs=2)                  # two more, continuing, saves v002
    ft = FineTune.resume(cfg, "v001")   # after a restart: base + v001, history up to v001
"""

from __future__ import annotations

import math
import os
import platform
import resource
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .config import Config, config_dict, save_config
from .fsutil import atomic_dir, atomic_write_json, read_json, sha256_file
from .runs import Run, Version, best_version

PACKAGES = ("unslothify", "unsloth", "unsloth_zoo", "torch", "transformers", "trl", "peft", "datasets",
            "accelerate", "bitsandbytes")


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


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


class OutOfMemory(RuntimeError):
    """The GPU ran out of memory; the message names the knobs that reduce it, with their current values."""

    def __init__(self, cfg: Config, error: BaseException):
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


def _free_cuda_memory():
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_gib() -> tuple[float, str]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_reserved() / 2**30, "GPU memory reserved (peak)"
    # ru_maxrss is KiB on Linux: the process's resident high-water mark, not reset between calls.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process RSS (peak)"


def _callbacks_module():
    from transformers import TrainerCallback

    class HistoryCallback(TrainerCallback):
        """Records losses on the cumulative step/epoch axis, times epochs, watches for overfitting."""

        def __init__(self, session: "FineTune", live):
            self.s = session
            self.live = live
            self.step0 = session.cumulative_steps
            self.epoch0 = session.cumulative_epochs
            self.epoch_started = None
            self.warned = False

        def on_train_begin(self, args, state, control, **kw):
            start = getattr(self.live, "start", None)
            if start is not None:
                start()  # each training call draws its own figure (under the cell that ran it)

        def on_epoch_begin(self, args, state, control, **kw):
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            if self.epoch_started is not None:
                self.s.epoch_seconds.append(round(time.perf_counter() - self.epoch_started, 2))

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return  # the end-of-training summary
            entry = {"step": self.step0 + state.global_step,
                     "epoch": round(self.epoch0 + (state.epoch or 0.0), 4)}
            for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
                if key in logs and logs[key] is not None and not (isinstance(logs[key], float) and math.isnan(logs[key])):
                    entry[key] = float(logs[key])
            self.s.history.append(entry)
            if self.live is not None:
                self.live(self.s.history)
            if "eval_loss" in logs and not self.warned:
                msg = overfitting_message(self.s.history, self.s.best_version_name())
                if msg:
                    self.warned = True
                    self.s.progress(msg)

    return HistoryCallback


def _compact_progress():
    """Trainer's terminal progress bar, printing one short line per validation instead of a dict per step
    (the notebook keeps Trainer's own per-step table)."""
    from transformers.trainer_callback import ProgressCallback

    class CompactProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and self.training_bar is not None and logs and "eval_loss" in logs:
                self.training_bar.write(f"epoch {state.epoch or 0:.2f}, step {state.global_step}: "
                                        f"validation loss {logs['eval_loss']:.4f}")

    return ProgressCallback, CompactProgress


class FineTune:
    """Base model + LoRA adapter in memory, with its run folder on disk."""

    def __init__(self, cfg: Config, model, tokenizer, model_path: str, history=None, parent: str | None = None,
                 progress=print):
        self.cfg = cfg
        self.model = model
        self.tokenizer = tokenizer
        self.model_path = model_path
        self.run = Run(cfg.output_dir)
        self.history: list[dict] = list(history or [])
        self.parent = parent
        self.progress = progress
        self.epoch_seconds: list[float] = []
        self.live_plot = None  # set by the notebook: a callable(history)
        self.callbacks: list = []  # extra transformers TrainerCallbacks for every training call
        self._data_cache = None
        self.last_trainer = None

    # --- construction -------------------------------------------------------------------------------------
    @classmethod
    def start(cls, cfg: Config, progress=print) -> "FineTune":
        from .models import add_lora, load_base

        model, tokenizer, path = load_base(cfg, progress)
        model = add_lora(model, cfg)
        ft = cls(cfg, model, tokenizer, path, progress=progress)
        ft._announce_interrupted()
        return ft

    @classmethod
    def resume(cls, cfg: Config, version: int | str | None = "latest", progress=print) -> "FineTune":
        """Base model + a saved version's adapter (trainable), with the history up to that version."""
        from .models import load_version

        v = Run(cfg.output_dir).version(version)
        model, tokenizer, path = load_version(cfg, v.path, progress)
        progress(f"Continuing from {v.name} ({v.manifest['cumulative_epochs']:g} epochs, "
                 f"validation loss {v.eval_loss if v.eval_loss is not None else 'n/a'}).")
        ft = cls(cfg, model, tokenizer, path, history=v.history(), parent=v.name, progress=progress)
        ft._announce_interrupted()
        return ft

    # --- state --------------------------------------------------------------------------------------------
    @property
    def cumulative_steps(self) -> int:
        return max((h["step"] for h in self.history), default=0)

    @property
    def cumulative_epochs(self) -> float:
        return max((h["epoch"] for h in self.history), default=0.0)

    def best_version_name(self) -> str | None:
        versions = self.run.versions()
        return best_version(versions).name if versions else None

    def datasets(self):
        """Tokenised train and validation sets from prepared/ (and the augmented file when enabled)."""
        if self._data_cache is None:
            from .augment import training_items
            from .data import to_dataset, tokenize_items
            from .prepare import load_prepared

            prepared = load_prepared(self.cfg)
            train_items = training_items(self.cfg, prepared, self.progress)
            train_rows, _, _, _ = tokenize_items(self.tokenizer, train_items, self.cfg.max_seq_length,
                                                 self.cfg.skip_overlong, self.cfg.system_prompt)
            val_rows, _, _, _ = tokenize_items(self.tokenizer, prepared.validation, self.cfg.max_seq_length,
                                               self.cfg.skip_overlong, self.cfg.system_prompt) \
                if prepared.validation else ([], [], [], [])
            self._data_cache = (to_dataset(train_rows), to_dataset(val_rows) if val_rows else None,
                                prepared, train_items)
        return self._data_cache

    # --- training -----------------------------------------------------------------------------------------
    def sft_config(self, epochs: float, n_train: int, has_eval: bool):
        import torch
        from trl import SFTConfig

        cfg = self.cfg
        # Items (rows when packing) per optimizer step, over all data-parallel processes (accelerate launch).
        per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", "1"))
        steps_per_epoch = max(1, math.ceil(n_train / per_step))
        eval_steps = max(1, steps_per_epoch // cfg.evals_per_epoch)
        cuda = torch.cuda.is_available()
        bf16 = cuda and torch.cuda.is_bf16_supported()
        return SFTConfig(
            output_dir=str(self.run.checkpoints),
            num_train_epochs=epochs,
            per_device_train_batch_size=cfg.per_device_train_batch_size,
            per_device_eval_batch_size=cfg.per_device_train_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            warmup_steps=cfg.warmup,
            lr_scheduler_type=cfg.lr_scheduler_type,
            optim=cfg.optim,
            seed=cfg.seed + len(self.run.versions()),  # a fresh data order for each continued call
            logging_steps=1,
            eval_strategy="steps" if has_eval else "no",
            eval_steps=eval_steps,
            eval_on_start=has_eval and self.cumulative_steps == 0,
            save_strategy="no",  # versions are saved by us, atomically; interrupts save a checkpoint
            report_to="none",
            max_length=cfg.max_seq_length,
            packing=cfg.packing and cuda,
            padding_free=cfg.packing and cuda,
            completion_only_loss=True,  # the mask built in data.tokenize_item
            gradient_checkpointing=cfg.gradient_checkpointing,
            bf16=bf16,
            fp16=cuda and not bf16,
            metric_for_best_model="eval_loss" if cfg.early_stopping_patience else None,
            greater_is_better=False if cfg.early_stopping_patience else None,
            dataset_num_proc=None,
            disable_tqdm=False,
        )

    def train(self, epochs: float | None = None, resume: bool = False) -> Version | None:
        """Train `epochs` more (default cfg.num_train_epochs) and save a new version.

        Returns the new Version, or None when interrupted (a resumable checkpoint is then kept; call
        train(resume=True) to finish that call)."""
        import datasets as hf_datasets
        from transformers import EarlyStoppingCallback
        from trl import SFTTrainer

        from .models import for_training, has_cuda
        from .plots import LiveFigure

        hf_datasets.disable_progress_bars()
        interrupted = self.interrupted()
        if interrupted and not resume:
            self.progress(f"Note: an interrupted training call is kept in {self.run.checkpoints}; "
                          f"train(resume=True) finishes it, discard_interrupted() drops it.")
        if resume:
            if not interrupted:
                raise FileNotFoundError(f"{self.run.checkpoints}: no interrupted training call to resume.")
            epochs = interrupted["epochs"]
            self.history = interrupted["history_before"]
        epochs = float(epochs if epochs is not None else self.cfg.num_train_epochs)
        train_ds, val_ds, prepared, train_items = self.datasets()
        n_rows = len(train_ds)
        if self.cfg.packing and has_cuda():  # packed rows of max_seq_length tokens, not items, make the steps
            n_rows = max(1, math.ceil(sum(map(len, train_ds["input_ids"])) / self.cfg.max_seq_length))
        args = self.sft_config(epochs, n_rows, val_ds is not None)
        callbacks = [_callbacks_module()(self, self.live_plot), *self.callbacks]
        if self.cfg.early_stopping_patience and val_ds is not None:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=self.cfg.early_stopping_patience))
        for_training(self.model)
        trainer = SFTTrainer(model=self.model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                             processing_class=self.tokenizer, callbacks=callbacks)
        self.last_trainer = trainer
        plain, compact = _compact_progress()
        if trainer.pop_callback(plain) is not None:
            trainer.add_callback(compact)
        self.epoch_seconds = []
        history_before = list(self.history)
        self._reset_peak_memory()
        started = time.perf_counter()
        try:
            if resume:
                trainer.train(resume_from_checkpoint=interrupted["checkpoint"])
            else:
                trainer.train()
        except KeyboardInterrupt:
            self._save_interrupted(trainer, epochs, history_before)
            self._unwrap(trainer)
            return None
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            self.history = history_before
            self._unwrap(trainer)
            _free_cuda_memory()
            raise OutOfMemory(self.cfg, e) from None
        seconds = time.perf_counter() - started
        if val_ds is not None and not any("eval_loss" in h for h in self.history[len(history_before):]
                                          if h["step"] == self.cumulative_steps):
            trainer.evaluate()  # the last validation loss at the final step, for the manifest and the plot
        self._unwrap(trainer)
        if trainer.accelerator.is_main_process:  # one writer under data-parallel launches
            version = self.save_version(seconds, prepared, train_items)
            self._clear_interrupted()
        trainer.accelerator.wait_for_everyone()
        if not trainer.accelerator.is_main_process:
            version = self.run.version("latest")
            self.parent = version.name
        return version

    def _unwrap(self, trainer):
        """Drop the mixed-precision autocast wrapper accelerate put on forward, so that inference, merge
        checks and exports after training see the model's own arithmetic."""
        self.model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)

    def _reset_peak_memory(self):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    # --- interrupts ---------------------------------------------------------------------------------------
    def interrupted(self) -> dict | None:
        marker = self.run.checkpoints / "interrupted.json"
        return read_json(marker) if marker.exists() else None

    def _announce_interrupted(self):
        info = self.interrupted()
        if info:
            self.progress(f"An interrupted training call was found (step {info['step']} of {info['max_steps']}, "
                          f"started from {info['parent'] or 'the base model'}). Continue it with "
                          f"train(resume=True) (CLI: train --resume), or drop it with discard_interrupted().")

    def _save_interrupted(self, trainer, epochs: float, history_before: list[dict]):
        """Keep a resumable Trainer checkpoint (adapter, optimizer, scheduler, RNG, step) of the progress
        so far. Earlier versions are untouched; nothing is saved as a version."""
        import shutil

        ckpt_root = self.run.checkpoints
        if ckpt_root.exists():
            for old in ckpt_root.glob("checkpoint-*"):
                shutil.rmtree(old, ignore_errors=True)
        # Trainer writes checkpoint-<step> itself; the private call is the one Trainer uses at save steps.
        trainer._save_checkpoint(trainer.model, trial=None)
        step = trainer.state.global_step
        checkpoint = ckpt_root / f"checkpoint-{step}"
        atomic_write_json(ckpt_root / "interrupted.json", {
            "checkpoint": str(checkpoint), "step": step, "max_steps": trainer.state.max_steps, "epochs": epochs,
            "parent": self.parent, "history_before": history_before,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        self.history = history_before + [h for h in self.history[len(history_before):]]
        self.progress(f"Interrupted at step {step} of {trainer.state.max_steps}. Kept a resumable checkpoint in "
                      f"{checkpoint}; earlier versions are untouched. Continue with train(resume=True) "
                      f"(CLI: train --resume).")

    def _clear_interrupted(self):
        import shutil

        marker = self.run.checkpoints / "interrupted.json"
        if marker.exists():
            marker.unlink()
            for old in self.run.checkpoints.glob("checkpoint-*"):
                shutil.rmtree(old, ignore_errors=True)

    def discard_interrupted(self):
        self._clear_interrupted()

    # --- versions -----------------------------------------------------------------------------------------
    def save_version(self, seconds: float, prepared, train_items) -> Version:
        train_losses = [h["loss"] for h in self.history if "loss" in h]
        eval_losses = [h["eval_loss"] for h in self.history if "eval_loss" in h]
        peak, peak_kind = peak_memory_gib()
        data_file = Path(self.cfg.data)
        manifest = {
            "base_model": self.cfg.model,
            "base_model_path": self.model_path,
            "base_model_revision": _revision(self.model),
            "parent": self.parent,
            "config": config_dict(self.cfg),
            "data_file": str(data_file),
            "data_sha256": sha256_file(data_file) if data_file.exists() else prepared.report.get("data_sha256"),
            "train_items": len(train_items),
            "validation_items": len(prepared.validation),
            "cumulative_epochs": round(self.cumulative_epochs, 4),
            "cumulative_steps": self.cumulative_steps,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "final_eval_loss": eval_losses[-1] if eval_losses else None,
            "train_seconds": round(seconds, 2),
            "epoch_seconds": self.epoch_seconds,
            "peak_memory_gib": round(peak, 3),
            "peak_memory_kind": peak_kind,
            "device": _device_name(),
            "packages": package_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        target = self.run.next_version_path()
        with atomic_dir(target) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "history.json", self.history)
            save_config(self.cfg, tmp / "config.yaml")
            atomic_write_json(tmp / "manifest.json", manifest)  # last: a folder without it is not a version
        save_config(self.cfg, self.run.root / "config.yaml")
        self.parent = target.name
        version = self.run.version(target.name)
        per_epoch = f", {sum(self.epoch_seconds) / len(self.epoch_seconds):.1f} s per epoch" if self.epoch_seconds else ""
        self.progress(f"Saved {version.name}: {manifest['cumulative_epochs']:g} epochs, train loss "
                      f"{_fmt(manifest['final_train_loss'])}, validation loss {_fmt(manifest['final_eval_loss'])}, "
                      f"{seconds:.0f} s{per_epoch}, peak memory {peak:.2f} GiB ({peak_kind}).")
        return version


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


def _revision(model) -> str | None:
    base = getattr(model, "get_base_model", lambda: model)()
    return getattr(getattr(base, "config", None), "_commit_hash", None)


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def load_history(version_dir: str | Path) -> list[dict]:
    return read_json(Path(version_dir) / "history.json")
