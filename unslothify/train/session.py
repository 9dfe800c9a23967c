"""Training: a FineTune session holds the model with its LoRA adapter in memory; every `train` call takes
the current config, continues from the current weights, extends one loss history and saves a new
adapter version that records what that call trained with.

    ft = FineTune.start(cfg)                 # base model + fresh adapter
    ft.train()                               # cfg.num_train_epochs, saves v001
    ft.train(panel.config, 2)                # two more with the panel's knobs, continuing, saves v002
    ft = FineTune.resume(cfg, "v001")        # after a restart: base + v001, history up to v001
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .callbacks import history_callback, time_cap_callback, use_compact_progress
from ..config import Config, config_dict, from_dict, replace, save_config
from ..machine.device import free_cuda_memory, is_out_of_memory, reset_peak_memory
from ..errors import OutOfMemory
from ..fsutil import atomic_dir, atomic_write_json
from .manifest import saved_line, version_manifest
from ..runs import Run, Version, best_version
from .args import LR_REFERENCE_ITEMS, check_trackers, items_per_step, sft_args, tracker_env

# Knobs of the loaded model and its adapter: a training call cannot change them (a new adapter can). The chat
# template is the adapter's too: it was trained on prompts rendered with it.
ADAPTER_KNOBS = ("model", "load_in_4bit", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "lora_layers",
                 "chat_template")

@dataclass
class TrainingData:
    """What one training call trains on: TRL-ready datasets and where they came from."""

    train: object  # datasets.Dataset of input_ids + completion_mask
    validation: object | None  # probe rewordings (knowledge) or held-out items (skill); None: no validation
    prepared: object  # prepare.Prepared: the split, its report, the probes
    items: list  # the training Items: the prepared split plus the augmented records
    replay_rows: list  # the tokenised replay rows (input_ids, completion_mask): what the retention term keeps

    @property
    def mean_item_tokens(self) -> float:
        lengths = [len(r) for r in self.train["input_ids"]]
        return sum(lengths) / max(1, len(lengths))


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class FineTune:
    """Base model + LoRA adapter in memory, with its run folder on disk."""

    def __init__(self, cfg: Config, model, tokenizer, model_path: str, history=None, parent: str | None = None,
                 progress=print):
        self.cfg = cfg  # the config of the last training call (at first, the one the session was loaded with)
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
        self.last_trainer = None
        self.stopped_at_cap = False  # the last call stopped at max_train_minutes
        self._data = (None, None)  # (what the tokenised data was made from, the data)
        self._retention = None  # the retention probes for this model (objective knowledge), filtered once
        self._call_history_start = 0  # where the last training call's entries begin in history
        self._timing = (None, None)  # (the training data it was timed on, estimate.measure's figures)

    # --- construction -------------------------------------------------------------------------------------
    @classmethod
    def start(cls, cfg: Config, progress=print) -> "FineTune":
        from ..model.load import add_lora, load_base

        model, tokenizer, path = load_base(cfg, progress)
        model = add_lora(model, cfg)
        ft = cls(cfg, model, tokenizer, path, progress=progress)
        ft._announce_interrupted()
        return ft

    @classmethod
    def resume(cls, cfg: Config, version: int | str | None = "latest", progress=print) -> "FineTune":
        """Base model + a saved version's adapter (trainable), with the history up to that version."""
        from ..model.load import load_version

        v = Run(cfg.output_dir).version(version)
        # The adapter keeps the chat template it was trained with (its tokenizer is saved with it).
        cfg = replace(cfg, chat_template=v.manifest["config"].get("chat_template", "auto"))
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

    def adapter_knobs(self) -> dict:
        """The knobs the loaded model and adapter were made with (a training call cannot change them)."""
        knobs = {k: getattr(self.cfg, k) for k in ADAPTER_KNOBS}
        peft = getattr(self.model, "peft_config", {}).get("default")
        if peft is not None:
            knobs.update(lora_r=peft.r, lora_alpha=peft.lora_alpha, lora_dropout=peft.lora_dropout,
                         lora_layers=len(peft.layers_to_transform or []))
            if set(peft.target_modules) != set(knobs["target_modules"]):
                knobs["target_modules"] = sorted(peft.target_modules)
        return knobs

    def _call_config(self, cfg: Config | None, epochs: float | None) -> Config:
        """The config this call trains with: the one given (else the last call's), with the adapter's own
        knobs (a changed one is named, and applies to a new adapter) and this call's epochs."""
        cfg = cfg or self.cfg
        fixed = self.adapter_knobs()
        changed = {k: getattr(cfg, k) for k, v in fixed.items() if getattr(cfg, k) != v}
        if changed:
            self.progress("Kept for this adapter (they apply to a new one, FineTune.start): "
                          + ", ".join(f"{k} {fixed[k]} (asked {v})" for k, v in changed.items()) + ".")
        if cfg.output_dir != self.cfg.output_dir:
            self.run = Run(cfg.output_dir)
        return replace(cfg, **fixed, num_train_epochs=float(epochs if epochs is not None else cfg.num_train_epochs))

    def training_data(self, cfg: Config | None = None) -> "TrainingData":
        """The data a call trains on, for cfg: prepared/ made again when it does not match the config, the
        augmented records read back (written again when stale), and both tokenised. Tokenised again only when
        any of that changed, and then it says what changed."""
        from accelerate import PartialState

        from ..data.augment import describe_items, training_items
        from ..data.tokens import to_dataset, tokenize_items
        from ..data.prepare import is_current, load_prepared, prepare

        cfg = cfg or self.cfg
        with PartialState().main_process_first():  # under `accelerate launch`, one process prepares
            if is_current(cfg):
                prepared = load_prepared(cfg)
            else:
                self.progress(f"The prepared data in {Run(cfg.output_dir).prepared} does not match the config; "
                              f"preparing {cfg.data} again.")
                prepared = prepare(cfg, self.tokenizer, self.progress, plot=False)
        items = training_items(cfg, prepared, self.progress)
        made_from = {"training items": _digest([i.to_record() for i in items]),
                     "validation items": _digest([i.to_record() for i in prepared.validation]),
                     **{k: getattr(cfg, k) for k in ("max_seq_length", "skip_overlong", "system_prompt")}}
        before = self._data[0]
        if before != made_from:
            changed = [k for k in made_from if before is not None and before[k] != made_from[k]]
            steer = (f"objective knowledge: every item is trained, {len(prepared.probes)} probes steer"
                     if prepared.objective == "knowledge" else
                     f"objective skill: {len(prepared.validation)} held-out items steer")
            self.progress(("Tokenising again (changed: " + ", ".join(changed) + "). " if changed else "")
                          + f"Training on {describe_items(items)}; {steer}.")
            rows = {name: tokenize_items(self.tokenizer, part, cfg.max_seq_length, cfg.skip_overlong,
                                         cfg.system_prompt)[0] if part else []
                    for name, part in (("train", items), ("validation", prepared.validation))}
            self._data = (made_from, (to_dataset(rows["train"]),
                                      to_dataset(rows["validation"]) if rows["validation"] else None,
                                      [r for r in rows["train"] if r["kind"] == "replay"]))
        train, validation, replay_rows = self._data[1]
        return TrainingData(train, validation, prepared, items, replay_rows)

    # --- training: one call, step by step ------------------------------------------------------------------
    def train(self, cfg: Config | None = None, more_epochs: float | None = None, resume: bool = False) -> Version | None:
        """Train `more_epochs` more (default: the config's num_train_epochs) with `cfg` (default: the last
        call's config) and save a new version.

        Returns the new Version, or None when interrupted (a resumable checkpoint is then kept; call
        train(resume=True) to finish that call)."""
        from ..model.load import for_training

        # 1. The config of this call: the one given (else the last call's), the adapter's own knobs, its epochs.
        call, interrupted = self._this_call(cfg, more_epochs, resume)
        # 2. Data: the prepared split and its augmented records, tokenised (again only when they changed).
        data = self.training_data(call)
        if not interrupted:
            call = self.within_cap(call)  # the epochs that fit max_train_minutes, planned and said up front
        self.cfg = call
        # 3. Tokenizer and model: the session's own (loaded once by start() or resume()), set to train.
        for_training(self.model)
        # 4. SFTConfig, from the config alone (sft_config.sft_args).
        name = self.run.next_version_path().name  # the version this call makes names its tracker run
        probe = self.probe_for(call, data.prepared) if data.validation is not None else None
        args = sft_args(call, call.num_train_epochs, data.validation is not None, self.cumulative_steps,
                        run_name=name, mean_item_tokens=data.mean_item_tokens, probed=probe is not None)
        self._say_learning_rate(call, args, data)
        with tracker_env(call, self.run, name):  # the trackers write under the run folder, named after the version
            # 5. SFTTrainer: TRL's, with our callbacks; under the knowledge objective evaluations score the probes.
            trainer = self._sft_trainer(call, args, data, probe, self.retention_term(call, data))
            # 6. Train (Ctrl-C keeps a resumable checkpoint).
            seconds = self._fit(trainer, call, data, interrupted)
        if seconds is None:
            return None
        # 7. Save the version: adapter, tokenizer, history, config and manifest, written atomically.
        return self._save(trainer, seconds, data)

    def _this_call(self, cfg: Config | None, more_epochs: float | None, resume: bool):
        """(the config of this call, the interrupted call it finishes or None)."""
        import datasets as hf_datasets

        hf_datasets.disable_progress_bars()
        interrupted = self.run.interrupted()
        if interrupted and not resume:
            self.progress(f"Note: an interrupted training call is kept in {self.run.checkpoints}; "
                          f"train(resume=True) finishes it, discard_interrupted() drops it.")
        if resume:
            if not interrupted:
                raise FileNotFoundError(f"{self.run.checkpoints}: no interrupted training call to resume.")
            cfg, more_epochs = from_dict(interrupted["config"], "interrupted.json"), interrupted["epochs"]
            self.history = interrupted["history_before"]
        call = self._call_config(cfg, more_epochs)
        check_trackers(call)
        return call, interrupted if resume else None

    def timing(self, cfg: Config) -> dict:
        """What a training step and a generation step cost on this machine, timed once per training data
        (estimate.measure: a few seconds)."""
        from ..machine.estimate import measure

        data = self.training_data(cfg)
        key = json.dumps(self._data[0], sort_keys=True)
        if self._timing[0] != key:
            self._timing = (key, measure(self.model, self.tokenizer, data.train["input_ids"],
                                         cfg.per_device_train_batch_size))
        return self._timing[1]

    def within_cap(self, cfg: Config, say: bool = True) -> Config:
        """cfg, with num_train_epochs cut to what fits max_train_minutes on this machine (the progress bar then
        counts the steps the call will take; the cap itself still stops a call that runs long)."""
        from ..machine.estimate import epochs_within_cap, stage_counts

        if not cfg.max_train_minutes:
            return cfg
        epochs = epochs_within_cap(cfg, self.timing(cfg), stage_counts(cfg, self.training_data(cfg), False))
        if epochs is None:
            return cfg
        if say:
            self.progress(f"Training {epochs:g} of the {cfg.num_train_epochs:g} epochs asked: that many fit the "
                          f"max_train_minutes = {cfg.max_train_minutes:g} cap on this machine (the panel's "
                          f"max train minutes, or --max-train-minutes; 0 for no cap).")
        return replace(cfg, num_train_epochs=epochs)

    def _say_learning_rate(self, call: Config, args, data: "TrainingData"):
        if args.learning_rate != call.learning_rate:
            self.progress(f"Packed steps of about {items_per_step(call, data.mean_item_tokens):.0f} items: learning "
                          f"rate {call.learning_rate:g} x sqrt(items / {LR_REFERENCE_ITEMS}) = {args.learning_rate:.3g} "
                          f"(packed_lr_scale).")

    def probe_for(self, cfg: Config, prepared):
        """Under the knowledge objective, what each evaluation scores: model -> probe recall and retention
        (unslothify/data/probes.py). The retention probes are filtered for this model once per session (and kept
        in the run folder); None under the skill objective."""
        from ..score.probes import measure, retention_probes

        if prepared.objective != "knowledge" or not prepared.probes:
            return None
        if self._retention is None:
            self._retention = retention_probes(self.model, self.tokenizer, cfg, self.model_path, self.progress)
        knowledge, retention = prepared.probes, self._retention
        return lambda model, at_base=False: measure(model, self.tokenizer, knowledge, retention, cfg, at_base,
                                                     base_key=self.model_path)

    def retention_term(self, call: Config, data: "TrainingData"):
        """The retention term of this call (retention.py): the base model's answers on the replay rows, taken
        with the adapter off; None at retention_weight 0 or without replay rows."""
        from .retention import RetentionTerm

        return RetentionTerm.build(self.model, data.replay_rows, call.retention_weight, self.progress)

    def _sft_trainer(self, call: Config, args, data: "TrainingData", probe, retention):
        from transformers import EarlyStoppingCallback

        from .trainer import trainer_class

        callbacks = [history_callback(self, self.live_plot), *self.callbacks]
        if call.max_train_minutes:
            callbacks.append(time_cap_callback(self, call.max_train_minutes))
        if call.early_stopping_patience and data.validation is not None:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=call.early_stopping_patience))
        trainer = trainer_class()(model=self.model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                                  processing_class=self.tokenizer, callbacks=callbacks)
        trainer.probe = probe
        trainer.retention = retention
        use_compact_progress(trainer, self)
        self.last_trainer = trainer
        return trainer

    def _fit(self, trainer, call: Config, data: "TrainingData", interrupted) -> float | None:
        """Seconds trained, or None when interrupted (a resumable checkpoint is kept). The last step gets a
        validation point when the schedule did not end on one."""
        self.stopped_at_cap = False
        self.epoch_seconds = []
        history_before = list(self.history)
        self._call_history_start = len(history_before)
        reset_peak_memory()
        started = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=interrupted["checkpoint"] if interrupted else None)
        except KeyboardInterrupt:
            self._save_interrupted(trainer, call, history_before)
            self._unwrap(trainer)
            return None
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            self.history = history_before
            self._unwrap(trainer)
            free_cuda_memory()
            raise OutOfMemory(call, e) from None
        seconds = time.perf_counter() - started
        if data.validation is not None and not any("eval_loss" in h for h in self.history[len(history_before):]
                                                   if h["step"] == self.cumulative_steps):
            trainer.evaluate()  # the last validation loss at the final step, for the manifest and the plot
        self._unwrap(trainer)
        return seconds

    def _save(self, trainer, seconds: float, data: "TrainingData") -> Version:
        if trainer.accelerator.is_main_process:  # one writer under data-parallel launches
            version = self.save_version(seconds, data.prepared, data.items)
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

    # --- interrupts ---------------------------------------------------------------------------------------
    def _announce_interrupted(self):
        info = self.run.interrupted()
        if info:
            self.progress(f"An interrupted training call was found (step {info['step']} of {info['max_steps']}, "
                          f"started from {info['parent'] or 'the base model'}). Continue it with "
                          f"train(resume=True) (CLI: train --resume), or drop it with discard_interrupted().")

    def _save_interrupted(self, trainer, call: Config, history_before: list[dict]):
        """Keep a resumable Trainer checkpoint (adapter, optimizer, scheduler, RNG, step) of the progress
        so far, with the config of the call. Earlier versions are untouched; nothing is saved as a version."""
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
            "checkpoint": str(checkpoint), "step": step, "max_steps": trainer.state.max_steps,
            "epochs": call.num_train_epochs, "config": config_dict(call), "parent": self.parent,
            "history_before": history_before, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
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
        """A new version folder: adapter, tokenizer, history, the config of this call (its epochs are the
        epochs it trained) and a manifest, written under a temporary name and renamed when complete."""
        manifest = version_manifest(self, seconds, prepared, train_items)
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
        self.progress(f"Saved {version.name}: " + saved_line(manifest))
        return version
