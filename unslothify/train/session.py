"""Training: a FineTune session holds the model with its LoRA adapter in memory; every `train` call takes the
config it is given, continues from the current weights, extends one loss history and saves a new adapter
version that records what that call trained with. The call itself is train/call.py; this is what lives
around it: the model, the history, the versions and interrupted calls.

    ft = FineTune.start(cfg)                 # base model + fresh adapter
    ft.train()                               # cfg.num_train_epochs, saves v001
    ft.train(panel.config, 2)                # two more with the panel's knobs, continuing, saves v002
    ft = FineTune.resume(cfg, "v001")        # after a restart: base + v001, history up to v001
"""

from __future__ import annotations

from ..config import Config, from_dict, replace, save_config
from ..fsutil import atomic_dir, atomic_write_json
from .plan import time_plan
from ..runs import Run, Version, best_version
from . import interrupts
from .args import Call, check_trackers, sft_args, tracker_env
from .call import Watch, train_call
from .inputs import TrainingData, TrainingInputs
from .manifest import saved_line, version_manifest

# Knobs of the loaded model and its adapter: a training call cannot change them (a new adapter can). The chat
# template is the adapter's too: it was trained on prompts rendered with it.
ADAPTER_KNOBS = ("model", "load_in_4bit", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "lora_layers",
                 "chat_template")


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
        self.live_plot = None  # set by the notebook: a callable(history)
        self.callbacks: list = []  # extra transformers TrainerCallbacks for every training call
        self.last_trainer = None  # the last call's SFTTrainer
        self.inputs = TrainingInputs(tokenizer, progress)  # the tokenised data, kept while the config matches
        self.retention_probes = None  # the general questions the base answers, filtered once per session
        self.timings: dict = {}  # what a step costs on this machine, per training data (plan.py)
        self.retention_targets: dict = {}  # the base model's answers on replay rows (retention.py), per row
        self.said: set[str] = set()  # plans said already (run says its plan with the time estimate)
        if note := interrupts.announcement(self.run):
            progress(note)

    @classmethod
    def start(cls, cfg: Config, progress=print) -> "FineTune":
        from ..model.load import add_lora, load_base

        model, tokenizer, path = load_base(cfg, progress)
        return cls(cfg, add_lora(model, cfg), tokenizer, path, progress=progress)

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
        return cls(cfg, model, tokenizer, path, history=v.history(), parent=v.name, progress=progress)

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

    def training_data(self, cfg: Config | None = None, facts: list[int] | None = None) -> TrainingData:
        """The data a call with cfg trains on (train/inputs.py: made again only when the config behind it changed),
        of the facts on those source lines where given."""
        return self.inputs.for_config(cfg or self.cfg, facts)

    # --- one training call, step by step ------------------------------------------------------------------
    def train(self, cfg: Config | None = None, more_epochs: float | None = None, resume: bool = False) -> Version | None:
        """Train `more_epochs` more (default: the config's num_train_epochs) with `cfg` (default: the last call's
        config) and save a new version. Returns it, or None when interrupted (a resumable checkpoint is then
        kept: train(resume=True) finishes that call)."""
        from ..model.load import for_training

        # 1. The call: its config as given (the adapter's own knobs kept), its epochs, or the call it finishes.
        cfg, epochs, resume_from, resume_facts = self._call_of(cfg, more_epochs, resume)
        # 2. Data: the prepared split and its augmented records, tokenised (again only when they changed), of the
        #    facts that fit the time cap where it shortens the facts (plan.time_plan).
        facts = resume_facts
        if resume_from is None:
            epochs, facts = time_plan(self, cfg, epochs)
        data = self.training_data(cfg, facts)
        # 3. SFTConfig: the knobs as they are, and this call's facts (epochs, first step, seed, version name).
        call = Call.of(cfg, epochs, self.cumulative_steps, has_eval=data.validation is not None,
                       probed=data.probed, run_name=self.run.next_version_path().name)
        args = sft_args(cfg, call)
        # 4. Train the session's model: the probes at every evaluation, the retention term in the loss.
        for_training(self.model)
        watch = Watch(list(self.history), self.live_plot, self.callbacks, self.best_version_name, self.progress)
        with tracker_env(cfg, self.run, call.run_name):  # the trackers write under the run folder
            record = train_call(cfg, args, self.model, self.tokenizer, data, self.probe_for(cfg, data),
                                self.retention_term(cfg, data), watch, resume_from)
        self.model, self.last_trainer, self.cfg = record.model, record.trainer, cfg
        if record.interrupted:
            self.progress(interrupts.keep_checkpoint(record.trainer, self.run, cfg, epochs, self.parent,
                                                     watch.history_before, data.trained_lines))
            return None
        # 5. Save the version: adapter, tokenizer, history, the config and facts of the call, its manifest.
        epochs_before = self.cumulative_epochs
        self.history += record.history
        return self.save_version(cfg, call, record, data, epochs_before)

    def _call_of(self, cfg: Config | None, more_epochs: float | None, resume: bool):
        """(config, epochs, checkpoint to resume from or None, the facts it trained or None) of this call."""
        import datasets as hf_datasets

        hf_datasets.disable_progress_bars()
        interrupted = self.run.interrupted()
        if interrupted and not resume:
            self.progress(f"Note: an interrupted training call is kept in {self.run.checkpoints}; "
                          f"train(resume=True) finishes it, discard_interrupted() drops it.")
        if resume and not interrupted:
            raise FileNotFoundError(f"{self.run.checkpoints}: no interrupted training call to resume.")
        if resume:
            cfg, more_epochs = from_dict(interrupted["config"], "interrupted.json"), interrupted["epochs"]
            self.history = interrupted["history_before"]
        cfg = self._with_adapter_knobs(cfg or self.cfg)
        check_trackers(cfg)
        if Run(cfg.output_dir).root != self.run.root:
            self.run = Run(cfg.output_dir)
        epochs = more_epochs if more_epochs is not None else cfg.num_train_epochs
        if resume:
            return cfg, float(epochs), interrupted["checkpoint"], interrupted.get("facts")
        return cfg, float(epochs), None, None

    def _with_adapter_knobs(self, cfg: Config) -> Config:
        """cfg, with the loaded adapter's own knobs where it asks for others (named: they apply to a new one)."""
        fixed = self.adapter_knobs()
        changed = {k: getattr(cfg, k) for k, v in fixed.items() if getattr(cfg, k) != v}
        if not changed:
            return cfg
        self.progress("Kept for this adapter (they apply to a new one, FineTune.start): "
                      + ", ".join(f"{k} {fixed[k]} (asked {v})" for k, v in changed.items()) + ".")
        return replace(cfg, **{k: fixed[k] for k in changed})

    def timing(self, cfg: Config) -> dict:
        """What a training step and a generation step cost on this machine, timed once per training data."""
        from .plan import measure

        data = self.training_data(cfg)
        key = repr([cfg.per_device_train_batch_size, cfg.max_seq_length, cfg.packing, cfg.gradient_checkpointing,
                    bool(cfg.retention_weight), self.inputs.made_from])
        if key not in self.timings:
            self.timings[key] = measure(cfg, self.model, self.tokenizer, data.train, self.retention_term(cfg, data))
        return self.timings[key]

    def probe_for(self, cfg: Config, data: TrainingData):
        """Under the knowledge objective, what each evaluation scores: model -> probe recall and retention
        (score/probes.py); the retention probes are filtered for this model once per session. None otherwise."""
        from ..score.probes import measure, retention_probes

        if not data.probed:
            return None
        if self.retention_probes is None:
            self.retention_probes = retention_probes(self.model, self.tokenizer, cfg, self.model_path, self.progress)
        knowledge, retention = data.probes, self.retention_probes
        return lambda model, at_base=False: measure(model, self.tokenizer, knowledge, retention, cfg, at_base,
                                                     base_key=self.model_path)

    def retention_term(self, cfg: Config, data: TrainingData):
        """The retention term of this call (retention.py): the base model's answers on the replay rows, taken
        with the adapter off once per session; None at retention_weight 0 or without replay rows."""
        from .retention import RetentionTerm

        return RetentionTerm.build(self.model, data.replay_rows, cfg.retention_weight, self.progress,
                                   known=self.retention_targets)

    def discard_interrupted(self):
        interrupts.clear(self.run)

    # --- versions -----------------------------------------------------------------------------------------
    def save_version(self, cfg: Config, call: Call, record, data: TrainingData, epochs_before: float) -> Version:
        """A new version folder: adapter, tokenizer, history, the config of this call (with the epochs it trained)
        and a manifest, written under a temporary name and renamed when complete. Under data-parallel launches
        the main process writes and the others read it back."""
        accelerator = record.trainer.accelerator
        if accelerator.is_main_process:
            manifest = version_manifest(self, cfg, call, record, data, epochs_before)
            trained = replace(cfg, num_train_epochs=call.epochs)  # the record of the call: it reproduces it alone
            target = self.run.next_version_path()
            with atomic_dir(target) as tmp:
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                atomic_write_json(tmp / "history.json", self.history)
                save_config(trained, tmp / "config.yaml")
                atomic_write_json(tmp / "manifest.json", manifest)  # last: a folder without it is not a version
            save_config(trained, self.run.root / "config.yaml")
            interrupts.clear(self.run)
            self.progress(f"Saved {target.name}: " + saved_line(manifest))
        accelerator.wait_for_everyone()
        version = self.run.version("latest")
        self.parent = version.name
        return version
