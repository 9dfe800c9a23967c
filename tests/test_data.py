import json
import warnings

import pytest

from bad_input_cases import CASES, GOOD
from unslothify.data.items import DataError, Item, read_jsonl_items, read_jsonl, split_items
from unslothify.data.tokens import tokenize_item, tokenize_items

FORMATS = {
    "text": ['{"text": "Köttbullar are Swedish meatballs."}', '{"text": "Serve them with lingonberries."}'],
    "alpaca": ['{"instruction": "Name the sauce.", "input": "", "output": "Gräddsås."}',
               '{"instruction": "Translate", "input": "meatballs", "output": "köttbullar"}'],
    "prompt_completion": ['{"prompt": "What spice?", "completion": "Allspice."}',
                          '{"prompt": "What side?", "completion": "Pressgurka."}'],
    "messages": [GOOD[0], '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},'
                          ' {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Size?"},'
                          ' {"role": "assistant", "content": "Walnut-sized."}]}'],
    "sharegpt": ['{"conversations": [{"from": "human", "value": "What meat?"}, {"from": "gpt", "value": "Beef and pork."}]}',
                 '{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Why chill?"},'
                 ' {"from": "gpt", "value": "They hold together."}]}'],
}


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_is_detected_and_normalised(tmp_path, fmt):
    items, report = read_jsonl_items(write(tmp_path, f"{fmt}.jsonl", FORMATS[fmt]))
    assert report.format == fmt and len(items) == 2
    if fmt == "text":
        assert items[0].text.startswith("Köttbullar") and items[0].messages is None
    else:
        assert items[0].messages[-1]["role"] == "assistant"
        assert [m["role"] for m in items[1].messages if m["role"] != "system"][:2] == ["user", "assistant"]
    if fmt == "alpaca":
        assert items[1].messages[0]["content"] == "Translate\n\nmeatballs"


def test_prompt_completion_in_trls_conversational_form(tmp_path):
    line = json.dumps({"prompt": [{"role": "user", "content": "Q"}], "completion": [{"role": "assistant", "content": "A"}]})
    items, _ = read_jsonl_items(write(tmp_path, "pc.jsonl", [line]))
    assert items[0].messages == [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]


@pytest.mark.parametrize("name,content,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_message(tmp_path, name, content, expect):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_jsonl_items(path)
    message = str(e.value)
    assert str(path) in message
    for part in expect:
        assert part in message, (part, message)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_duplicates_are_dropped_with_a_warning_or_rejected(tmp_path):
    path = write(tmp_path, "dup.jsonl", [GOOD[0], GOOD[1], GOOD[0], GOOD[0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items, report = read_jsonl_items(path, skip_duplicates=True)
    assert len(items) == 2 and report.duplicates == [3, 4]
    assert any("dropped 2 duplicate item(s) at line(s) 3, 4" in str(w.message) for w in caught)
    with pytest.raises(DataError, match=r"line 3: duplicate of line 1.*skip_duplicates"):
        read_jsonl_items(path, skip_duplicates=False)


def test_overlong_items_are_dropped_or_rejected(tmp_path, tokenizer):
    long = json.dumps({"text": "meatball " * 400})
    short = [json.dumps({"text": "Köttbullar."}), json.dumps({"text": "Gräddsås."})]
    items, _ = read_jsonl_items(write(tmp_path, "long.jsonl", [short[0], long, short[1]]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows, kept, lengths, dropped = tokenize_items(tokenizer, items, max_seq_length=128)
    assert dropped == [2] and len(kept) == 2 and lengths[1] > 128
    assert any("longer than max_seq_length = 128" in str(w.message) and "line(s) 2" in str(w.message) for w in caught)
    with pytest.raises(DataError, match=r"line 2: \d+ tokens, longer than max_seq_length = 128"):
        tokenize_items(tokenizer, items, max_seq_length=128, skip_overlong=False)


def test_split_is_deterministic_and_disjoint():
    items = [Item(line=i, source="x", text=f"t{i}") for i in range(1, 51)]
    a_train, a_val = split_items(items, 0.1, seed=7)
    b_train, b_val = split_items(items, 0.1, seed=7)
    c_train, c_val = split_items(items, 0.1, seed=8)
    assert [i.line for i in a_val] == [i.line for i in b_val] and len(a_val) == 5
    assert {i.line for i in a_val} != {i.line for i in c_val}
    assert not {i.line for i in a_val} & {i.line for i in a_train}


def test_loss_mask_covers_answers_only(tokenizer, tmp_path):
    items, _ = read_jsonl_items(write(tmp_path, "m.jsonl", FORMATS["messages"]))
    row = tokenize_item(tokenizer, items[1])  # system, user, assistant, user, assistant
    masked = tokenizer.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if m])
    unmasked = tokenizer.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if not m])
    assert "Hello." in masked and "Walnut-sized." in masked and "<|im_end|>" in masked
    assert "Hi" in unmasked and "Size?" in unmasked and "Be brief." in unmasked
    assert "Size?" not in masked and "Hello." not in unmasked


def test_plain_text_is_trained_on_all_of_it_and_ends_with_eos(tokenizer):
    row = tokenize_item(tokenizer, Item(line=1, source="x", text="Köttbullar are meatballs."))
    assert all(row["completion_mask"]) and row["input_ids"][-1] == tokenizer.eos_token_id


def test_prepare_writes_nothing_when_the_file_is_bad(tmp_path, tokenizer):
    from unslothify.config import load_config
    from unslothify.data.prepare import prepare

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(CASES[0][1])
    cfg = load_config(None, model="embedded", data=str(bad), output_dir=str(tmp_path / "run"))
    with pytest.raises(DataError):
        prepare(cfg, tokenizer=tokenizer)
    assert not (tmp_path / "run").exists()


def test_prepare_reports_and_plots(tmp_path, tokenizer, root):
    from unslothify.config import load_config
    from unslothify.data.prepare import load_prepared, prepare

    cfg = load_config(None, model="embedded", data=str(root / "domain.jsonl"), output_dir=str(tmp_path / "run"))
    prepared = prepare(cfg, tokenizer=tokenizer)
    assert (len(prepared.train), len(prepared.validation)) == (500, len(prepared.probes))  # knowledge: all trained
    assert prepared.objective == "knowledge" and 30 <= len(prepared.probes) <= cfg.probes
    report = json.loads((tmp_path / "run" / "prepared" / "report.json").read_text())
    assert report["format"] == "messages" and report["token_lengths"]["max"] <= cfg.max_seq_length
    assert (tmp_path / "run" / "prepared" / "lengths.png").stat().st_size > 5000
    again = load_prepared(cfg)
    assert [i.messages for i in again.train] == [i.messages for i in prepared.train]
