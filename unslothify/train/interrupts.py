"""An interrupted training call (Ctrl-C): a resumable Trainer checkpoint in the run folder's checkpoints/, with
what it needs to finish (the call's config and epochs, the history before it, the version it continued from).
Earlier versions are never touched; nothing is saved as a version."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

from ..config import config_dict
from ..fsutil import atomic_write_json
from ..runs import Run


def stop_on_interrupt(progress=print):
    """(a TrainerCallback, a context manager for the call): while the call runs, the first Ctrl-C (a kernel
    interrupt) ends it at the end of the current step, with a checkpoint Trainer writes itself (should_save and
    should_training_stop, as at its own save steps); a second Ctrl-C stops at once, without one."""
    import contextlib
    import signal
    import threading

    from transformers import TrainerCallback

    class StopOnInterrupt(TrainerCallback):
        requested = False

        def on_step_end(self, args, state, control, **kw):
            if self.requested:
                control.should_save = True
                control.should_training_stop = True

    stop = StopOnInterrupt()

    @contextlib.contextmanager
    def catching():
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only: Ctrl-C raises as usual
            return

        def first(signum, frame):
            stop.requested = True
            progress("Interrupted: stopping at the end of this step and keeping a checkpoint (interrupt again to "
                     "stop at once, without one).")
            signal.signal(signal.SIGINT, signal.default_int_handler)

        before = signal.signal(signal.SIGINT, first)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, before)

    return stop, catching()


def keep_checkpoint(trainer, run: Run, cfg, epochs: float, parent: str | None, history_before: list[dict],
                    facts: list[int] | None = None) -> str:
    """Record the checkpoint Trainer wrote when the call stopped on an interrupt (adapter, optimizer,
    scheduler, RNG, step) in interrupted.json, dropping older ones; returns the line that says where it is and
    how to continue."""
    step = trainer.state.global_step
    checkpoint = run.checkpoints / f"checkpoint-{step}"
    for old in run.checkpoints.glob("checkpoint-*"):
        if old != checkpoint:
            shutil.rmtree(old, ignore_errors=True)
    atomic_write_json(run.checkpoints / "interrupted.json", {
        "checkpoint": str(checkpoint), "step": step, "max_steps": trainer.state.max_steps, "epochs": epochs,
        "config": config_dict(cfg), "parent": parent, "history_before": history_before, "facts": facts,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return (f"Interrupted at step {step} of {trainer.state.max_steps}. Kept a resumable checkpoint in {checkpoint}; "
            f"earlier versions are untouched. Continue with train(resume=True) (CLI: train --resume).")


def clear(run: Run):
    """Drop an interrupted call's checkpoint (after it was finished, or when asked)."""
    marker = run.checkpoints / "interrupted.json"
    if marker.exists():
        marker.unlink()
        for old in run.checkpoints.glob("checkpoint-*"):
            shutil.rmtree(old, ignore_errors=True)


def announcement(run: Run) -> str | None:
    """The line a session says when it finds an interrupted call in its run folder."""
    info = run.interrupted()
    if not info:
        return None
    return (f"An interrupted training call was found (step {info['step']} of {info['max_steps']}, started from "
            f"{info['parent'] or 'the base model'}). Continue it with train(resume=True) (CLI: train --resume), or "
            f"drop it with discard_interrupted().")
