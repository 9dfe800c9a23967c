"""report_to: experiment trackers through TRL, beside the live loss plot. TensorBoard (an optional extra,
requirements-trackers.txt) is read back with its own reader; W&B only offline, only where it installs."""

import json

import pytest

from conftest import INVENTED
from secrets_scan import FAKE_TOKEN, files_containing_token
from unslothify.config import load_config
from unslothify.knobs import ConfigError
from unslothify.train.args import Call, check_trackers, sft_args


def tiny_cfg(tmp_path, **knobs):
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join((INVENTED / "train.jsonl").read_text().splitlines(keepends=True)[:6]))
    return load_config(None, model="embedded", data=str(data), output_dir=str(tmp_path / "run"), num_train_epochs=1,
                       per_device_train_batch_size=2, validation_split=0.2, augment={"enabled": False}, **knobs)


def test_report_to_reaches_trl(tmp_path):
    cfg = tiny_cfg(tmp_path)
    assert sft_args(cfg, Call.of(cfg, 1.0)).report_to == []
    cfg = tiny_cfg(tmp_path, report_to="tensorboard")
    args = sft_args(cfg, Call.of(cfg, 1.0, run_name="v001"))
    assert args.report_to == ["tensorboard"] and args.run_name == "v001"
    assert tiny_cfg(tmp_path, report_to=["tensorboard", "wandb"]).report_to == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match="report_to = 'mlflow' is not valid; allowed: one of none, tensorboard"):
        tiny_cfg(tmp_path, report_to="mlflow")


def test_a_missing_tracker_package_is_named_before_training(tmp_path):
    from transformers.integrations import is_trackio_available

    if is_trackio_available():
        pytest.skip("trackio is installed here")
    with pytest.raises(ConfigError, match="report_to names trackio, which is not installed: pip install trackio"):
        check_trackers(tiny_cfg(tmp_path, report_to="trackio"))


def train_with(cfg):
    from unslothify.train.session import FineTune

    ft = FineTune.start(cfg)
    drawn = []
    ft.live_plot = lambda history: drawn.append(len(history))  # what the notebook's live figure receives
    version = ft.train()
    return ft, version, drawn


@pytest.mark.slow
def test_tensorboard_gets_the_losses_and_the_live_plot_still_draws(tmp_path):
    pytest.importorskip("tensorboard", reason="make test installs requirements-trackers.txt")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_cfg(tmp_path, report_to="tensorboard")
    ft, version, drawn = train_with(cfg)
    logs = tmp_path / "run" / "logs" / version.name
    events = list(logs.glob("events.out.tfevents.*"))
    assert len(events) == 1, list(logs.iterdir())
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/loss" in tags, tags
    train_losses = [e.value for e in acc.Scalars("train/loss")]
    history_losses = [h["loss"] for h in version.history() if "loss" in h]
    assert train_losses == pytest.approx(history_losses, rel=1e-5), "TensorBoard holds the losses we recorded"
    assert drawn and drawn[-1] == len(ft.history), "the live plot was drawn at every log, as without a tracker"
    assert version.manifest["config"]["report_to"] == ["tensorboard"]


@pytest.mark.slow
def test_wandb_offline_writes_its_run_and_no_key(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (it is tested only where it installs)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_TOKEN)  # as a user's shell might have it: it must not be written
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_cfg(tmp_path, report_to="wandb")
    _, version, drawn = train_with(cfg)
    runs = list((tmp_path / "run" / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), "an offline run that `wandb sync` can upload"
    assert drawn
    assert files_containing_token(tmp_path) == [], "the key is never written"
    assert json.loads((version.path / "manifest.json").read_text())["config"]["report_to"] == ["wandb"]
