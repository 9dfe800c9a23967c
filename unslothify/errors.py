"""Errors a user sees as one message (the CLI prints them without a traceback)."""


class ExportError(RuntimeError):
    """An export could not be made or did not verify; nothing was left behind.

    `check`, where set, is the merge check's figures (a dict), so a caller can report them."""

    def __init__(self, message: str, check: dict | None = None):
        super().__init__(message)
        self.check = check


class SetupError(RuntimeError):
    """Something is not installed or not set up; the message says what to run."""


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


class StepMissing(FileNotFoundError):
    """An earlier step has not run yet (nothing prepared, no version trained); the message names the notebook
    and the command that runs it."""
