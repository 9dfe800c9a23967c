"""Data the way users have it: JSON arrays, CSV, TSV, Parquet, saved datasets, Hub datasets (through a local
folder laid out like a Hub dataset repository: nothing here reaches the Hub), column mapping, bad input."""

import json
import os
import subprocess
import sys

import pytest

from bad_input_cases import SOURCE_CASES
from conftest import ROOT
from unslothify.data.items import DataError
from unslothify.data.sources import fingerprint, load_items, parse

ROWS = [{"question": "What is köttbullar?", "answer": "Swedish meatballs."},
        {"question": "What sauce goes with them?", "answer": "Gräddsås, a cream sauce."},
        {"question": "Which berries?", "answer": "Lingonberries."}]
EXPECTED = [[{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}] for r in ROWS]


def write_each_kind(folder):
    """The same three rows in every kind of source `data:` accepts; {spec: kind}."""
    import datasets
    import pandas as pd

    df = pd.DataFrame(ROWS)
    df.to_csv(folder / "d.csv", index=False)
    df.to_csv(folder / "d.tsv", index=False, sep="\t")
    (folder / "d.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    (folder / "d.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    df.to_parquet(folder / "d.parquet")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:1]),
                          "validation": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(folder / "saved_dict"))
    # A Hub dataset repository as the Hub stores one: data/<split>-*.parquet (what `git clone` of it gives).
    (folder / "hub_repo" / "data").mkdir(parents=True)
    df.to_parquet(folder / "hub_repo" / "data" / "train-00000-of-00001.parquet")
    df.iloc[:1].to_parquet(folder / "hub_repo" / "data" / "test-00000-of-00001.parquet")
    return {"d.csv": "csv", "d.tsv": "tsv", "d.json": "json", "d.jsonl": "jsonl", "d.parquet": "parquet",
            "saved": "disk", "saved_dict:validation": "disk", "hub_repo": "hub"}


def test_every_kind_of_source_gives_the_same_items(tmp_path):
    kinds = write_each_kind(tmp_path)
    for spec, kind in kinds.items():
        src = parse(str(tmp_path / spec))
        assert src.kind == kind, spec
        items, report = load_items(str(tmp_path / spec))
        assert report.format == "question_answer" and report.n_read == 3, spec
        assert [i.messages for i in items] == EXPECTED, spec
        assert [i.line for i in items] == [1, 2, 3], "rows are numbered from 1 in every kind"


def test_hub_dataset_path_with_a_split(tmp_path):
    """`owner/name:split` goes through datasets.load_dataset(id, split=...); a repo-like folder takes the same
    road, so this is the Hub code path without the network."""
    write_each_kind(tmp_path)
    items, report = load_items(f"{tmp_path / 'hub_repo'}:test")
    assert [i.messages for i in items] == EXPECTED[:1] and report.path.endswith("[test]")
    with pytest.raises(DataError, match="test"):
        load_items(f"{tmp_path / 'saved_dict'}:test")  # that one has train and validation only
    assert parse("someone/their-dataset:validation").kind == "hub"
    assert parse("someone/their-dataset:validation").split == "validation"
    assert parse("someone/their-dataset").split is None


def test_columns_knob_maps_their_columns(tmp_path):
    """A Dolly-style table: instruction/context/response/category mapped onto alpaca; unmapped ones ignored."""
    import pandas as pd

    pd.DataFrame([{"instruction": "Name the sauce.", "context": "Swedish meatballs", "response": "Gräddsås.",
                   "category": "qa"}]).to_parquet(tmp_path / "dolly.parquet")
    with pytest.raises(DataError, match="missing column 'output'.*map your columns"):
        load_items(str(tmp_path / "dolly.parquet"))
    items, report = load_items(str(tmp_path / "dolly.parquet"),
                               columns={"instruction": "instruction", "context": "input", "response": "output"})
    assert report.format == "alpaca"
    assert items[0].messages == [{"role": "user", "content": "Name the sauce.\n\nSwedish meatballs"},
                                 {"role": "assistant", "content": "Gräddsås."}]


@pytest.mark.parametrize("name,file_name,content,columns,expect", SOURCE_CASES, ids=[c[0] for c in SOURCE_CASES])
def test_bad_input_in_other_file_types_names_file_row_and_column(tmp_path, name, file_name, content, columns, expect):
    path = tmp_path / file_name
    content(path) if callable(content) else path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_items(str(path), columns=columns)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    for part in expect:
        assert part in message, (part, message)


def test_prepare_reads_a_csv_writes_nothing_when_it_is_bad_and_notices_a_change(tmp_path, tokenizer):
    from unslothify.config import load_config
    from unslothify.data.prepare import is_current, prepare

    bad = tmp_path / "bad.csv"
    bad.write_bytes(SOURCE_CASES[0][2])
    cfg = load_config(None, model="embedded", data=str(bad), output_dir=str(tmp_path / "bad_run"))
    with pytest.raises(DataError):
        prepare(cfg, tokenizer=tokenizer, plot=False)
    assert not (tmp_path / "bad_run").exists()

    write_each_kind(tmp_path)
    cfg = load_config(None, model="embedded", data=str(tmp_path / "d.csv"), output_dir=str(tmp_path / "run"),
                      validation_split=0.2, objective="skill")
    prepared = prepare(cfg, tokenizer=tokenizer, plot=False)
    assert (len(prepared.train), len(prepared.validation)) == (2, 1)
    assert prepared.report["items"] == 3 and prepared.report["data_sha256"] == fingerprint(cfg.data)
    assert is_current(cfg)
    (tmp_path / "d.csv").write_text("question,answer\nWhat?,That.\nWhy?,Because.\n")
    assert not is_current(cfg), "a changed file is prepared again"


def test_folder_fingerprint_follows_its_files(tmp_path):
    write_each_kind(tmp_path)
    before = fingerprint(str(tmp_path / "hub_repo"))
    assert fingerprint(f"{tmp_path / 'hub_repo'}:test") != before, "the split is part of what was read"
    (tmp_path / "hub_repo" / "README.md").write_text("---\nlicense: mit\n---\n")
    assert fingerprint(str(tmp_path / "hub_repo")) != before


def test_a_hub_id_without_network_says_so_in_one_line(tmp_path):
    """No network here: the Hub cannot be reached. The CLI says so in one line (no retry log, no traceback)
    and writes nothing."""
    # Without the variable Unsloth sets on import in this test process (huggingface_hub warns about it).
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_ENABLE_HF_TRANSFER"}
    proc = subprocess.run([sys.executable, "-m", "unslothify", "prepare", "--model", "embedded", "--data",
                           "someone/no-such-dataset:train", "--output", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: someone/no-such-dataset") and "Hub" in lines[0]
    assert not (tmp_path / "run").exists()
