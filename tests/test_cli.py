"""The CLI, headless twin of the notebooks, as a user calls it."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from conftest import INVENTED, ROOT
from unslothify.config import Config
from secrets_scan import FAKE_TOKEN, files_containing_token


def cli(*args, cwd=ROOT, timeout=1800):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_TOKEN": FAKE_TOKEN}
    return subprocess.run([sys.executable, "-m", "unslothify", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_run_with_defaults_learns_an_outside_chat_dataset(tmp_path):
    """80 chat items stating 40 invented facts, held-out paraphrased questions: the default recipe must
    make the embedded model recall most of them (the README records the measured figures)."""
    data = tmp_path / "facts.jsonl"
    shutil.copy2(INVENTED / "train.jsonl", data)
    proc = cli("run", "--data", data, "--eval-questions", INVENTED / "questions.jsonl", "--output", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["n"] == 40 and {"base_recall", "tuned_recall"} <= set(result)
    assert result["base_recall"] <= 0.1
    # Pinned as measured on 2 Xeon cores, 2026-12-06: all 80 items in the CPU recipe's 9 minutes, 0.825 on the 40
    # questions (this test). Where they do not all fit (a slower or busier machine), the run trains the facts that
    # do and scores the held-out questions about them (tests/test_plan.py): 0.897 on the 29 questions of 67 items
    # (docs/measurements/cpu-invented.jsonl); with the plan at 80 % of the cap, under other load, 0.773 and 0.75 on
    # the 22 and 20 questions of 48 and 43 items: a slice is pinned at their mean, 0.81 (with the CPU recipe's
    # adapter_scale 1.0 since 2026-12-07, 0.952 on the 21 questions of 45 items). How many fit varies with
    # the machine's speed and load, and with them the questions asked: the tolerance is two standard errors of
    # that many questions (0.18 for 20, 0.12 for 40), at least 0.1.
    sliced = "trained_facts" in result
    recall = result["trained_facts_recall"] if sliced else result["tuned_recall"]
    expected, asked = (0.81, result["trained_facts_n"]) if sliced else (0.825, result["n"])
    assert recall == pytest.approx(expected, abs=max(0.1, 2 * math.sqrt(expected * (1 - expected) / asked))), result
    # What steered training agrees with what the outside questions measure (docs/probes.md): the probes' recall
    # within 0.10 of the held-out questions', or two standard errors of the difference of two samples where a
    # slice asks fewer questions (0.925 against 0.825 on 40 and 40: 0.15; 0.80 against 0.952 on 40 and 21: 0.16;
    # the lexical probes' 1.00 against 0.85 on 40: 0.11, which fails), their retention within 0.15 of the general
    # eval's (two standard errors of the difference of 48 and 61 questions at 0.7 is 0.18).
    probes, n = Config().probes, result["trained_facts_n"] if sliced else result["n"]
    p_probe = result["probe_recall"]
    noise = 2 * math.sqrt(p_probe * (1 - p_probe) / probes + recall * (1 - recall) / n)
    assert abs(p_probe - recall) <= max(0.10, noise) + 1e-9, (result, noise)
    assert abs(result["probe_retention"] - result["retention"]) <= 0.15 + 1e-9, result
    assert (tmp_path / "run" / "exports" / "merged" / "model.safetensors").exists()
    assert "[3/5] Training" in proc.stdout, "stages are shown as they start"
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
    assert files_containing_token(tmp_path) == [], "the Hub token must not reach manifests, logs or exports"

    versions = cli("versions", "--output", tmp_path / "run")
    assert versions.returncode == 0 and "v001" in versions.stdout and "*" in versions.stdout


def test_bad_config_value_exits_with_the_knob_and_range(tmp_path):
    proc = cli("prepare", "--model", "embedded", "--lora-r", "0", "--output", tmp_path / "run")
    assert proc.returncode == 2 and "lora_r = 0 is not valid; allowed: a whole number from 1 to 256" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_bad_data_exits_with_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Hi", "output": ""}\n')
    proc = cli("prepare", "--model", "embedded", "--data", bad, "--output", tmp_path / "run")
    assert proc.returncode == 2
    assert f"{bad}, line 1: field 'output' is empty" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_help_lists_every_knob():
    proc = cli("train", "--help")
    assert proc.returncode == 0
    for flag in ("--learning-rate", "--lora-r", "--lora-dropout", "--warmup", "--gradient-accumulation-steps",
                 "--lr-scheduler-type", "--augment-rephrasings", "--resume", "--from-version"):
        assert flag in proc.stdout, flag


def test_push_failure_never_shows_the_token(tmp_path):
    """The Hub is unreachable here, so the push fails: the message names the repo, never the token."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    code = ("from unslothify.export.stage import push_to_hub, ExportError\n"
            "try:\n    push_to_hub(%r, 'someone/does-not-exist-xyz')\nexcept ExportError as e:\n    print(e)\n"
            % str(folder))
    push = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_TOKEN": FAKE_TOKEN, "HF_HUB_ETAG_TIMEOUT": "5"})
    assert "Push of" in push.stdout and "someone/does-not-exist-xyz" in push.stdout
    assert FAKE_TOKEN not in push.stdout + push.stderr
