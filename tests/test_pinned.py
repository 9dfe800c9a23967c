"""Numbers that must not move silently: the embedded model's first training losses at a fixed seed.

The stored values (tests/pinned/losses.json) were measured with the package versions written beside them. The
tolerance is 1e-2 relative per step: the same versions on one 2-core CPU reproduce them to about 1e-5, and
another CPU's kernels move them by up to 4e-3 (an AMD EPYC stored them; an Intel Xeon with AMX gives
2.3602, 2.5057, 2.2119, 1.6662, 1.8340, 1.5786, 2026-12-05); a change in the data, the chat template, the
masking, the LoRA setup or the learning rate moves them by far more. When a library moves on purpose, rewrite the
file and commit it with the versions named in the message:

    UPDATE_PINNED=1 python -m pytest tests/test_pinned.py
"""

import json
import os

import pytest

from conftest import INVENTED, ROOT

PINNED = ROOT / "tests" / "pinned" / "losses.json"
RELATIVE_TOLERANCE = 1e-2


def first_losses(tmp_path) -> tuple[list[float], dict]:
    from unslothify.config import load_config
    from unslothify.data.prepare import prepare
    from unslothify.train.manifest import package_versions
    from unslothify.train.session import FineTune

    data = tmp_path / "train.jsonl"
    data.write_text("".join((INVENTED / "train.jsonl").read_text().splitlines(keepends=True)[:24]))
    cfg = load_config(None, model="embedded", data=str(data), output_dir=str(tmp_path / "run"), objective="skill",
                      validation_split=0.0, num_train_epochs=2, seed=3407, augment={"enabled": False})
    prepare(cfg, plot=False, progress=lambda *_: None)
    version = FineTune.start(cfg, progress=lambda *_: None).train()
    losses = [round(h["loss"], 6) for h in version.history() if "loss" in h]
    versions = {k: v for k, v in package_versions().items() if k in ("torch", "transformers", "trl", "peft", "unsloth")}
    return losses, versions


@pytest.mark.slow
def test_first_training_losses_match_the_stored_values(tmp_path):
    losses, versions = first_losses(tmp_path)
    assert len(losses) == 6, "24 items, batches of 8, 2 epochs"
    if os.environ.get("UPDATE_PINNED"):
        PINNED.write_text(json.dumps({"losses": losses, "versions": versions}, indent=1) + "\n")
    stored = json.loads(PINNED.read_text())
    for step, (got, want) in enumerate(zip(losses, stored["losses"], strict=True), start=1):
        assert got == pytest.approx(want, rel=RELATIVE_TOLERANCE), \
            f"step {step}: loss {got} vs stored {want} (stored with {stored['versions']}, now {versions})"
    assert losses[-1] < losses[0], "it learns"
