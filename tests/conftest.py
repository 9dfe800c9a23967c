"""Shared fixtures: the embedded model's tokenizer and one small trained run, built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INVENTED = ROOT / "examples" / "invented"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def embedded_cfg():
    from unslothify.config import load_config

    return load_config(None, model="embedded")


@pytest.fixture(scope="session")
def tokenizer(embedded_cfg):
    from unslothify.model.load import load_tokenizer

    return load_tokenizer(embedded_cfg)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """FineTune on the invented-facts set for 2 epochs: (cfg, session, version). Shared, read-only."""
    from unslothify.config import load_config
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune

    work = tmp_path_factory.mktemp("trained")
    data = work / "train.jsonl"
    shutil.copy2(INVENTED / "train.jsonl", data)
    # Plain training is enough for the export and chat tests that share this; augmentation has its own.
    cfg = load_config(None, model="embedded", data=str(data), eval_questions=str(INVENTED / "questions.jsonl"),
                      output_dir=str(work / "run"), num_train_epochs=2, augment={"enabled": False})
    prepare(cfg, plot=False)
    ft = FineTune.start(cfg)
    version = ft.train()
    return cfg, ft, version


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def copy_of(tmp_path):
    def _copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copy2(src, dst)
        return dst
    return _copy


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
